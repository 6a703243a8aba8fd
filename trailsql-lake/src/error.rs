//! The error type of the lake: converting, storing and reading back CloudTrail events.

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

    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),

    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),

    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { path: path.into(), source }
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
}
