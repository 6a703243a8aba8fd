//! The error type of the trailsql library: queries, the REPL and output, and the lake's errors as they are.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),

    /// A file that could not be read or written: its path and the system's reason.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    Lake(#[from] trailsql_lake::Error),

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

    /// Whether the error is, at any depth, a write to a closed pipe (`trailsql … | head`): a normal end, not a
    /// failure. The writers of arrow's formats keep only the text of an I/O error (a CSV error is a string), so
    /// the text is read too.
    pub fn is_broken_pipe(&self) -> bool {
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = next {
            if let Some(io) = e.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::BrokenPipe
            {
                return true;
            }
            let text = e.to_string();
            if text.contains("Broken pipe (os error 32)") || text.ends_with("Broken pipe") {
                return true;
            }
            next = e.source();
        }
        false
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What to do about an error, read from its text (a statement's error reaches the REPL and `run` as text, with its
/// file and line): a query that ran out of its memory pool, or one whose data file was replaced while it read.
pub fn hint(message: &str) -> Option<&'static str> {
    if message.contains("Resources exhausted") {
        return Some(
            "the query needs more memory than --memory-limit gives it: sorts and aggregations spill to the temporary \
             directory (TMPDIR), joins and window functions cannot; raise --memory-limit, or narrow the query",
        );
    }
    // A conversion commits by moving its files into place, then deleting the small files it merged: a query that
    // listed those before the deletion finds them gone, and their events are in the merged file.
    (message.contains(".parquet") && (message.contains("not found") || message.contains("No such file"))).then_some(
        "a conversion replaced data files of the lake (merging small files) while the query read them; nothing is \
         lost: run it again",
    )
}

pub use trailsql_lake::error::redact_credentials;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_pipes_are_found_at_any_depth() {
        let pipe = Error::io("output", std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(pipe.is_broken_pipe());
        let csv = Error::Arrow(datafusion::arrow::error::ArrowError::CsvError("Broken pipe (os error 32)".into()));
        assert!(csv.is_broken_pipe());
        assert!(!Error::Other("a query failed".into()).is_broken_pipe());
    }

    #[test]
    fn a_data_file_gone_while_a_query_read_it_is_explained() {
        let gone = "Parquet error: Failed to fetch metadata for file lake/account_id=1/event_date=2024-03-01/part-x.parquet: \
                    Object Store error: Object at location /lake/part-x.parquet not found: No such file or directory";
        assert!(hint(gone).is_some_and(|h| h.contains("run it again")));
        assert!(hint("Resources exhausted: sort").is_some_and(|h| h.contains("--memory-limit")));
        assert_eq!(hint("table 'x' not found"), None);
    }
}
