//! A tiny deterministic random generator for apps' seeded test streams.
//!
//! xorshift64* (Vigna): enough for choosing operations and ranges in a
//! reproducible run; not for anything that needs unpredictability. Written
//! here rather than taken from a crate because apps need nothing more than
//! these few lines and the kernel links no `rand`.

/// xorshift64*: a seeded, reproducible stream of `u64`s.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A stream from `seed` (a zero seed is replaced: xorshift stays at 0).
    pub const fn new(seed: u64) -> Self {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}
