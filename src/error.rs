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

    #[error(
        "the lake {lake} is locked by another convert ({holder}), which is still running: try again when it ends \
         ({lock} is released with its holder; never delete it by hand)"
    )]
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

/// The text with the user name and password of every URL in it replaced by `***`
/// (`http://user:secret@host` -> `http://***@host`): an endpoint given with credentials is never printed back.
pub fn redact_credentials(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains("://") || !text.contains('@') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let authority_end =
            tail.find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace()).unwrap_or(tail.len());
        match tail[..authority_end].rfind('@') {
            Some(at) => {
                out.push_str("***");
                rest = &tail[at..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_redacted() {
        let cases = [
            ("cannot reach http://user:secret@127.0.0.1:9000: down", "cannot reach http://***@127.0.0.1:9000: down"),
            ("(url http://k:s@h/b/o?x=1), and https://h2/p", "(url http://***@h/b/o?x=1), and https://h2/p"),
            ("http://a@b@c/x", "http://***@c/x"),
            ("mail me@example.com at http://h/", "mail me@example.com at http://h/"),
            ("no url", "no url"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_credentials(input), want, "{input}");
        }
    }

    #[test]
    fn broken_pipes_are_found_at_any_depth() {
        let pipe = Error::io("output", std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(pipe.is_broken_pipe());
        let csv = Error::Arrow(datafusion::arrow::error::ArrowError::CsvError("Broken pipe (os error 32)".into()));
        assert!(csv.is_broken_pipe());
        assert!(!Error::Other("a query failed".into()).is_broken_pipe());
    }
}
