//! Pagers: what backs a memory object (its size and its pages' contents).
//!
//! A [`Pager`] is asked for one 4 KiB page at a time: [`Pager::read`] when the
//! object makes a page resident (or copies a page it does not hold), and
//! [`Pager::write`] when the object writes a dirty page back
//! ([`MemObject::sync`](super::MemObject::sync)).
//!
//! # The contract of a pager
//! - [`Pager::size`] never changes during the pager's life.
//! - Arguments are checked, never trusted: a call with an `offset` that is
//!   unaligned or not below the size, or a buffer that is not exactly
//!   [`PAGE_SIZE`] bytes, fails with [`PagerError`]; no input panics.
//! - Calls come from several CPUs at once (`Send + Sync`), also for the same
//!   page (two `sync`s of one page write it twice, with the same bytes).
//! - Calls may run while the caller holds the address space's table lock (a
//!   page fault makes a page resident under it), though never under the
//!   object's own lock. So a pager must not take any lock of the memory
//!   module, must not touch user memory (it could fault), and should finish
//!   quickly: it runs where a spin lock may be held. A pager that needs
//!   real I/O (a disk) must do it elsewhere and answer from a buffer; both
//!   pagers here work on memory only.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

pub use memory_addr::PAGE_SIZE_4K as PAGE_SIZE;
use spin::Mutex;

/// An I/O error of a pager (reported to the app as `AxError::Io`).
///
/// Also what a pager answers to a call that breaks its argument contract
/// (an unaligned or out-of-range `offset`, a buffer that is not one page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagerError;

impl fmt::Display for PagerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("pager I/O error")
    }
}

/// What backs a memory object: its size and its pages' contents.
///
/// The module docs state the contract every implementation keeps.
pub trait Pager: Send + Sync {
    /// Size of the object in bytes (fixed for the object's life).
    fn size(&self) -> usize;

    /// Fills `page` (exactly [`PAGE_SIZE`] bytes) with the object's bytes at
    /// `offset` (4K aligned, below [`Pager::size`]); the bytes of the page
    /// that lie past the size are zero.
    ///
    /// On an error the content of `page` is unspecified (the caller discards
    /// it).
    fn read(&self, offset: usize, page: &mut [u8]) -> Result<(), PagerError>;

    /// Writes `page` ([`PAGE_SIZE`] bytes) back at `offset` (4K aligned,
    /// below [`Pager::size`]); only the bytes below the size matter, the rest
    /// are ignored.
    fn write(&self, offset: usize, page: &[u8]) -> Result<(), PagerError>;
}

/// A shared pager is a pager: several objects, or an object and its owner
/// (tests read a [`BytesPager`]'s store this way), can use one.
impl<P: Pager + ?Sized> Pager for Arc<P> {
    fn size(&self) -> usize {
        (**self).size()
    }

    fn read(&self, offset: usize, page: &mut [u8]) -> Result<(), PagerError> {
        (**self).read(offset, page)
    }

    fn write(&self, offset: usize, page: &[u8]) -> Result<(), PagerError> {
        (**self).write(offset, page)
    }
}

/// Checks the arguments of a [`Pager`] call: `offset` 4K aligned and below
/// `size`, and a buffer of exactly one page. Returns how many bytes of the
/// page lie below `size` (1 to [`PAGE_SIZE`]).
fn check(size: usize, offset: usize, len: usize) -> Result<usize, PagerError> {
    if len != PAGE_SIZE || !offset.is_multiple_of(PAGE_SIZE) || offset >= size {
        return Err(PagerError);
    }
    Ok((size - offset).min(PAGE_SIZE))
}

/// Anonymous shared memory: reads zeros, write-back keeps nothing.
///
/// Nothing is lost by that: the object keeps every page it made resident
/// for its whole life, so a page that was written is never read from the
/// pager again.
#[derive(Debug)]
pub struct AnonPager {
    size: usize,
}

impl AnonPager {
    /// An anonymous pager of `size` bytes.
    pub const fn new(size: usize) -> Self {
        Self { size }
    }
}

impl Pager for AnonPager {
    fn size(&self) -> usize {
        self.size
    }

    fn read(&self, offset: usize, page: &mut [u8]) -> Result<(), PagerError> {
        check(self.size, offset, page.len())?;
        page.fill(0);
        Ok(())
    }

    fn write(&self, offset: usize, page: &[u8]) -> Result<(), PagerError> {
        check(self.size, offset, page.len())?;
        Ok(())
    }
}

/// The store of a [`BytesPager`]: its private copy, once there is one.
struct Store {
    /// A copy of the original bytes with the written pages, made by the first
    /// write (the original bytes are read-only). `None` until then.
    copy: Option<Vec<u8>>,
    /// Pages written back since the pager was made.
    written: usize,
}

/// An object over bytes built into the image (a "file" with known content).
///
/// Reads come from the bytes. The image is read-only, so the first write
/// makes a private copy of the bytes (on the heap) and writes go there; later
/// reads come from the copy and so see them. [`BytesPager::pages_written`]
/// counts the pages written back and [`BytesPager::contents`] returns what
/// the store holds now (both for tests and diagnostics).
pub struct BytesPager {
    bytes: &'static [u8],
    store: Mutex<Store>,
}

impl BytesPager {
    /// A pager whose content is `bytes` (its size is `bytes.len()`).
    pub const fn new(bytes: &'static [u8]) -> Self {
        Self {
            bytes,
            store: Mutex::new(Store {
                copy: None,
                written: 0,
            }),
        }
    }

    /// Pages written back so far (every successful [`Pager::write`]).
    pub fn pages_written(&self) -> usize {
        self.store.lock().written
    }

    /// What the store holds now: the original bytes with every page written
    /// back so far.
    pub fn contents(&self) -> Vec<u8> {
        let store = self.store.lock();
        store.copy.as_deref().unwrap_or(self.bytes).to_vec()
    }
}

impl fmt::Debug for BytesPager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BytesPager")
            .field("size", &self.bytes.len())
            .field("pages_written", &self.pages_written())
            .finish()
    }
}

impl Pager for BytesPager {
    fn size(&self) -> usize {
        self.bytes.len()
    }

    fn read(&self, offset: usize, page: &mut [u8]) -> Result<(), PagerError> {
        let n = check(self.bytes.len(), offset, page.len())?;
        let store = self.store.lock();
        let src = store.copy.as_deref().unwrap_or(self.bytes);
        page[..n].copy_from_slice(&src[offset..offset + n]);
        page[n..].fill(0);
        Ok(())
    }

    fn write(&self, offset: usize, page: &[u8]) -> Result<(), PagerError> {
        let n = check(self.bytes.len(), offset, page.len())?;
        let mut store = self.store.lock();
        if store.copy.is_none() {
            // Out of heap is an I/O error of this store, not a panic.
            let mut copy = Vec::new();
            copy.try_reserve_exact(self.bytes.len())
                .map_err(|_| PagerError)?;
            copy.extend_from_slice(self.bytes);
            store.copy = Some(copy);
        }
        if let Some(copy) = store.copy.as_mut() {
            copy[offset..offset + n].copy_from_slice(&page[..n]);
        }
        store.written += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    static TEXT: [u8; 5000] = {
        let mut b = [0u8; 5000];
        let mut i = 0;
        while i < b.len() {
            b[i] = (i % 251) as u8 + 1;
            i += 1;
        }
        b
    };

    #[test]
    fn anon_reads_zeros_and_checks_arguments() {
        let p = AnonPager::new(3 * PAGE_SIZE);
        let mut page = vec![0xA5u8; PAGE_SIZE];
        p.read(2 * PAGE_SIZE, &mut page).unwrap();
        assert!(page.iter().all(|&b| b == 0));
        assert_eq!(p.read(3 * PAGE_SIZE, &mut page), Err(PagerError));
        assert_eq!(p.read(1, &mut page), Err(PagerError));
        assert_eq!(p.read(0, &mut page[..100]), Err(PagerError));
        assert_eq!(p.write(usize::MAX & !0xfff, &page), Err(PagerError));
        p.write(0, &page).unwrap();
    }

    #[test]
    fn bytes_read_write_and_copy_on_first_write() {
        let p = BytesPager::new(&TEXT);
        assert_eq!(p.size(), 5000);
        let mut page = vec![0xA5u8; PAGE_SIZE];
        p.read(PAGE_SIZE, &mut page).unwrap();
        assert_eq!(&page[..5000 - PAGE_SIZE], &TEXT[PAGE_SIZE..]);
        assert!(page[5000 - PAGE_SIZE..].iter().all(|&b| b == 0));
        assert_eq!(p.pages_written(), 0);
        assert_eq!(p.contents(), TEXT);

        let new = vec![7u8; PAGE_SIZE];
        p.write(PAGE_SIZE, &new).unwrap();
        assert_eq!(p.pages_written(), 1);
        let c = p.contents();
        assert_eq!(c.len(), 5000);
        assert_eq!(&c[..PAGE_SIZE], &TEXT[..PAGE_SIZE]);
        assert!(c[PAGE_SIZE..].iter().all(|&b| b == 7));
        // The image itself is untouched; reads see the write.
        assert_eq!(TEXT[PAGE_SIZE], (PAGE_SIZE % 251) as u8 + 1);
        p.read(PAGE_SIZE, &mut page).unwrap();
        assert!(page[..5000 - PAGE_SIZE].iter().all(|&b| b == 7));
        assert!(page[5000 - PAGE_SIZE..].iter().all(|&b| b == 0));

        assert_eq!(p.write(2 * PAGE_SIZE, &new), Err(PagerError));
        assert_eq!(p.write(0, &new[..1]), Err(PagerError));
        assert_eq!(p.pages_written(), 1);
    }

    #[test]
    fn empty_bytes_refuse_everything() {
        let p = BytesPager::new(&[]);
        let mut page = vec![0u8; PAGE_SIZE];
        assert_eq!(p.read(0, &mut page), Err(PagerError));
        assert_eq!(p.write(0, &page), Err(PagerError));
    }
}
