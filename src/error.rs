//! The error type of the trailsql library.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),

    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("lake {lake}: {message}")]
    Lake { lake: String, message: String },

    #[error("the lake {lake} is locked by another convert ({holder}); if that run has ended, delete {lock}")]
    Locked { lake: String, holder: String, lock: String },

    #[error("object store: {0}")]
    Store(#[from] object_store::Error),

    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),

    #[error("parquet: {0}")]
    Parquet(#[from] datafusion::parquet::errors::ParquetError),

    #[error("arrow: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),

    #[error("{file}, line {line}: {message}")]
    Query { file: String, line: usize, message: String },

    #[error("line editor: {0}")]
    Readline(#[from] rustyline::error::ReadlineError),

    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { path: path.into(), source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
