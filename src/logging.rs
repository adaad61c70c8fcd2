//! Diagnostics go to a daily-rotated file under the data dir, never to the terminal: the
//! console owns the screen, and headless output on stdout is data.

use std::path::{Path, PathBuf};

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

/// Keeps the background log writer alive; logs are flushed when it drops.
pub struct LogGuard {
    _worker: Option<WorkerGuard>,
    /// The folder holding `flightdeck.log.YYYY-MM-DD` files.
    pub dir: PathBuf,
}

impl LogGuard {
    /// Today's log file (the appender names files by UTC date).
    pub fn current_file(&self) -> PathBuf {
        let today = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        self.dir.join(format!("flightdeck.{}.log", &today[..10]))
    }
}

/// Start logging into `<data_dir>/logs/`. The level comes from `FLIGHTDECK_LOG`, else
/// `RUST_LOG`, else `info`. If the folder cannot be created, logging is off rather than
/// falling back to the terminal.
pub fn init(data_dir: &Path) -> LogGuard {
    let dir = data_dir.join("logs");
    if std::fs::create_dir_all(&dir).is_err() {
        return LogGuard { _worker: None, dir };
    }
    let filter = std::env::var("FLIGHTDECK_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let appender = tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix("flightdeck")
        .filename_suffix("log")
        .max_log_files(7)
        .build(&dir);
    let Ok(appender) = appender else {
        return LogGuard { _worker: None, dir };
    };
    // The log file is shown to people and attached to bug reports: no secret goes in. The
    // settings are not read yet, so this knows the well-known key variables and the shapes.
    let redactor =
        crate::redact::Redactor::from_settings(&crate::config::Settings::default(), |name| {
            std::env::var(name).ok()
        })
        .unwrap_or_else(|_| crate::redact::Redactor::shapes_only());
    // Lines wait for the writer thread in a queue made whole at start: 16,384 of them (the
    // crate's default, 128,000, is 4 MB held by every process for a log that is mostly quiet);
    // past that, lines are dropped rather than block the console.
    let (writer, worker) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .lossy(true)
        .finish(Redacting { inner: appender, redactor });
    let installed = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        .try_init()
        .is_ok();
    LogGuard { _worker: installed.then_some(worker), dir }
}

/// Log lines queued for the writer thread.
const LOG_QUEUE_LINES: usize = 16_384;

/// A writer that redacts each formatted log line before it reaches the file.
struct Redacting<W> {
    inner: W,
    redactor: crate::redact::Redactor,
}

impl<W: std::io::Write> std::io::Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) if self.redactor.has_secret(text) => {
                self.inner.write_all(self.redactor.redact(text).as_bytes())?;
                Ok(buf.len())
            }
            _ => self.inner.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
