//! The daemon's log: stderr (journald, under systemd) or a file, as text or
//! one JSON object a line (`--log-format json`, for log shippers), through a
//! filter that can be replaced while the daemon runs. A log file is opened
//! for appending and opened again on request: logrotate moves it away, then
//! sends SIGHUP, and the next line goes to a new file of the old name.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{reload, EnvFilter, Layer as _, Registry};

/// How each line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot open the log file {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("bad log filter {directives:?}: {source}")]
    Filter {
        directives: String,
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("cannot replace the log filter: {0}")]
    Reload(#[from] reload::Error),
    #[error("a logger is already installed: {0}")]
    Installed(#[from] tracing_subscriber::util::TryInitError),
}

/// An append-only log file that can be opened again under its name.
struct LogFile {
    path: PathBuf,
    file: Mutex<File>,
}

impl LogFile {
    fn open(path: &Path) -> Result<File, LogError> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| LogError::Open {
                path: path.to_path_buf(),
                source,
            })
    }
}

/// What the running daemon may change about its log.
pub struct LogHandle {
    file: Option<Arc<LogFile>>,
    filter: reload::Handle<EnvFilter, Registry>,
}

impl LogHandle {
    /// Open the log file again under its name (after rotation); stderr
    /// needs nothing.
    pub fn reopen(&self) -> Result<(), LogError> {
        if let Some(f) = &self.file {
            let new = LogFile::open(&f.path)?;
            *f.file.lock().unwrap_or_else(PoisonError::into_inner) = new;
        }
        Ok(())
    }

    /// Replace the filter (tracing's directives, `info`, `xcatd=debug`).
    pub fn set_filter(&self, directives: &str) -> Result<(), LogError> {
        self.filter.reload(filter(directives)?)?;
        Ok(())
    }
}

fn filter(directives: &str) -> Result<EnvFilter, LogError> {
    EnvFilter::try_new(directives).map_err(|source| LogError::Filter {
        directives: directives.to_string(),
        source,
    })
}

/// Install the process's logger: to `file` (appending) or stderr.
pub fn init(
    format: LogFormat,
    file: Option<&Path>,
    directives: &str,
) -> Result<LogHandle, LogError> {
    let file = file
        .map(|p| {
            Ok::<_, LogError>(Arc::new(LogFile {
                path: p.to_path_buf(),
                file: Mutex::new(LogFile::open(p)?),
            }))
        })
        .transpose()?;
    let writer = match &file {
        Some(f) => {
            let f = f.clone();
            BoxMakeWriter::new(move || LogFileWriter(f.clone()))
        }
        None => BoxMakeWriter::new(io::stderr),
    };
    let (filter, handle) = reload::Layer::new(filter(directives)?);
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(false);
    let lines = match format {
        LogFormat::Text => lines.boxed(),
        LogFormat::Json => lines.json().boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(lines)
        .try_init()?;
    Ok(LogHandle {
        file,
        filter: handle,
    })
}

/// The writer one event gets: the shared file. An event is formatted whole
/// and written with one call under the lock, so lines from several
/// threads never interleave.
struct LogFileWriter(Arc<LogFile>);

impl Write for LogFileWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .file
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
