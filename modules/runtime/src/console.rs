//! Console output: `print!`/`println!` and the `log` backend.

use core::fmt::{self, Write};

use hal::ConsoleWriter;
use spin::Mutex;

use crate::board::Current;

/// Serialises console output (one hart prints at a time).
static LOCK: Mutex<()> = Mutex::new(());

/// Prints formatted text to the console.
pub fn print_fmt(args: fmt::Arguments<'_>) {
    let _guard = LOCK.lock();
    print_unlocked(args);
}

/// Prints to the console without taking the lock: for the panic and fault
/// reports, which may run while the lock is held.
pub fn print_unlocked(args: fmt::Arguments<'_>) {
    // The console cannot fail (see `hal::ConsoleWriter`): the result carries nothing.
    let _ = ConsoleWriter::<Current>::new().write_fmt(args);
}

/// Prints to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::print_fmt(format_args!($($arg)*)) };
}

/// Prints a line to the console.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::console::print_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        print_fmt(format_args!(
            "[{:>5} {}] {}\n",
            record.level(),
            record.target(),
            record.args()
        ));
    }

    fn flush(&self) {}
}

/// Installs the logger with the level chosen by `LOG=`.
pub fn init_logger() {
    static LOGGER: Logger = Logger;
    let level = match config::LOG_LEVEL {
        "off" => log::LevelFilter::Off,
        "error" => log::LevelFilter::Error,
        "info" => log::LevelFilter::Info,
        "debug" => log::LevelFilter::Debug,
        "trace" => log::LevelFilter::Trace,
        _ => log::LevelFilter::Warn,
    };
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}

/// Prints a line without taking the console lock (reports from the fault and
/// panic paths).
#[macro_export]
macro_rules! println_unlocked {
    ($($arg:tt)*) => { $crate::console::print_unlocked(format_args!("{}\n", format_args!($($arg)*))) };
}
