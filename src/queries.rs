//! Saved queries: SQL files with a header that names them, says what they answer and lists their parameters.
//!
//! ```sql
//! -- name: access_key_activity
//! -- description: Everything one access key did
//! -- param: key -- the access key ID (required: no default)
//! -- param: since = 1970-01-01T00:00:00Z -- start of the window
//! SELECT ... WHERE useridentity.accesskeyid = $key ...
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A parameter of a saved query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub default: Option<String>,
    pub description: String,
}

/// A SQL file with its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedQuery {
    pub name: String,
    pub description: String,
    pub params: Vec<Param>,
    pub sql: String,
    /// Where it came from: a file, or "builtin" for the queries carried in the binary.
    pub origin: String,
}

impl SavedQuery {
    /// The parameters as listings show them: `name=default`, or `name (required)`.
    pub fn params_summary(&self) -> String {
        self.params
            .iter()
            .map(|p| match &p.default {
                Some(d) => format!("{}={d}", p.name),
                None => format!("{} (required)", p.name),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// How errors name it: its file, or `saved query NAME`.
    pub fn origin_name(&self) -> String {
        if self.origin == "builtin" { format!("saved query {}", self.name) } else { self.origin.clone() }
    }

    /// Reads the header of a SQL text. A text without a `name:` line takes `fallback_name`.
    pub fn parse(text: &str, fallback_name: &str, origin: &str) -> SavedQuery {
        let mut q = SavedQuery {
            name: fallback_name.to_string(),
            description: String::new(),
            params: Vec::new(),
            sql: text.to_string(),
            origin: origin.to_string(),
        };
        for line in text.lines() {
            let Some(comment) = line.trim().strip_prefix("--") else {
                if line.trim().is_empty() {
                    continue;
                }
                break;
            };
            let comment = comment.trim();
            if let Some(v) = comment.strip_prefix("name:") {
                q.name = v.trim().to_string();
            } else if let Some(v) = comment.strip_prefix("description:") {
                q.description = v.trim().to_string();
            } else if let Some(v) = comment.strip_prefix("param:") {
                let (spec, description) = v.split_once(" -- ").unwrap_or((v, ""));
                let (name, default) = match spec.split_once('=') {
                    Some((n, d)) => (n.trim(), Some(d.trim().to_string())),
                    None => (spec.trim(), None),
                };
                q.params.push(Param {
                    name: name.trim_start_matches('$').to_string(),
                    default,
                    description: description.trim().to_string(),
                });
            }
        }
        q
    }
}

/// The queries carried in the binary (`queries/` of the repository).
pub fn builtin() -> Vec<SavedQuery> {
    crate::embedded::QUERIES.iter().map(|(stem, text)| SavedQuery::parse(text, stem, "builtin")).collect()
}

/// Every saved query: the builtin ones, then those of the user's directories (which override by name).
pub fn all(dirs: &[PathBuf]) -> Result<Vec<SavedQuery>> {
    let mut by_name: BTreeMap<String, SavedQuery> = builtin().into_iter().map(|q| (q.name.clone(), q)).collect();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "sql"))
            .collect();
        files.sort();
        for f in files {
            let q = load_file(&f)?;
            by_name.insert(q.name.clone(), q);
        }
    }
    Ok(by_name.into_values().collect())
}

pub fn load_file(path: &Path) -> Result<SavedQuery> {
    let text = crate::textfile::read(path)?;
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(SavedQuery::parse(&text, &stem, &path.display().to_string()))
}

/// A file path if it exists, else a saved query by name.
pub fn resolve(target: &str, dirs: &[PathBuf]) -> Result<SavedQuery> {
    let path = Path::new(target);
    if path.is_file() {
        return load_file(path);
    }
    let all = all(dirs)?;
    let name = target.trim_end_matches(".sql");
    all.iter().find(|q| q.name == name).cloned().ok_or_else(|| {
        let names: Vec<&str> = all.iter().map(|q| q.name.as_str()).collect();
        Error::Usage(format!("{target}: no such file or saved query (saved queries: {})", names.join(", ")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_parsed() {
        let q = SavedQuery::parse(
            "-- name: k\n-- description: What one key did\n-- param: key -- the key\n-- param: since = 2024-01-01 -- start\n\nSELECT $key",
            "file",
            "x.sql",
        );
        assert_eq!(q.name, "k");
        assert_eq!(q.description, "What one key did");
        assert_eq!(
            q.params,
            vec![
                Param { name: "key".into(), default: None, description: "the key".into() },
                Param { name: "since".into(), default: Some("2024-01-01".into()), description: "start".into() },
            ]
        );
    }

    #[test]
    fn builtin_queries_are_named_described_and_declare_their_parameters() {
        let all = builtin();
        assert!(all.len() >= 10, "{} saved queries", all.len());
        for q in all {
            assert!(!q.description.is_empty(), "{} has no description", q.name);
            let used = crate::sqltext::placeholders(&q.sql);
            let declared: std::collections::BTreeSet<String> = q.params.iter().map(|p| p.name.clone()).collect();
            assert_eq!(used, declared, "{}: parameters used and declared differ", q.name);
        }
    }
}
