//! The `log` sink for `start` and `delete`.
//!
//! containerd 1.6 reads a shim's `start` stdout *and* stderr together (`CombinedOutput`) and takes
//! the trimmed text as the shim's address, so `start` must write nothing to either on success.
//! containerd keeps the bundle's `log` FIFO open read-write and copies it into its own log; that
//! FIFO is the channel for `start`'s warnings. `delete`'s stderr is logged by containerd as
//! "cleanup warnings", so `delete` logs to stderr.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Mutex;

use log::{LevelFilter, Log, Metadata, Record};

/// Where log records go.
pub enum Sink {
    /// Standard error (delete, daemon before it has its own log).
    Stderr,
    /// The bundle's `log` FIFO (start).
    Fifo(Mutex<File>),
    /// Nowhere (start without a FIFO, e.g. run by hand without containerd).
    Discard,
}

struct Logger {
    sink: Sink,
    level: LevelFilter,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format!(
            "time=\"{}\" level={} msg=\"containerd-shim-router-v2: {}\" pid={}\n",
            crate::timefmt::now_rfc3339(),
            record.level().as_str().to_ascii_lowercase(),
            record.args().to_string().replace('"', "\\\""),
            std::process::id()
        );
        match &self.sink {
            Sink::Stderr => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
            Sink::Fifo(f) => {
                if let Ok(mut f) = f.lock() {
                    let _ = f.write_all(line.as_bytes());
                }
            }
            Sink::Discard => {}
        }
    }

    fn flush(&self) {}
}

/// Open `<bundle>/log` for writing if it is a FIFO with a reader (containerd's); never blocks,
/// never follows a symlink, closed on exec.
pub fn open_bundle_fifo(bundle: &Path) -> Option<File> {
    let f = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(bundle.join("log"))
        .ok()?;
    let meta = f.metadata().ok()?;
    if meta.file_type().is_fifo() {
        Some(f)
    } else {
        None
    }
}

/// Install the process logger. Calling it twice keeps the first logger.
pub fn init(sink: Sink, debug: bool) {
    let level = if debug {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    };
    if log::set_boxed_logger(Box::new(Logger { sink, level })).is_ok() {
        log::set_max_level(level);
    }
}

/// Logs to the `log` FIFO of the working directory (the bundle) if there is one, else nowhere:
/// what `start` and the long-lived daemons spawned from it use.
pub fn init_in_bundle(debug: bool) {
    let sink = std::env::current_dir()
        .ok()
        .and_then(|d| open_bundle_fifo(&d))
        .map(|f| Sink::Fifo(std::sync::Mutex::new(f)))
        .unwrap_or(Sink::Discard);
    init(sink, debug);
}
