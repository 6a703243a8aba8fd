//! `matches_regex(text, pattern[, flags])`: whether a regular expression matches somewhere in a text.
//!
//! `regexp_like` and `~` mean the same, but arrow compiles the pattern again for every batch it is given. Over a
//! lake of small files a batch holds a file's few dozen events, so compiling `.+:assumed-role/aws:.+` took more
//! time than searching with it (a tenth of a Sigma rule directory's run). Here each pattern is compiled once per
//! process and kept.
//!
//! A text without a literal that every match holds cannot match: `.+:assumed-role/aws:.+` needs
//! `:assumed-role/aws:`. The regex crate scans such a text with its automaton from each position (its inner
//! literal search is for finding, not for deciding); a substring search first is five times quicker over ARNs,
//! where most texts lack the literal.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, exec_datafusion_err, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use memchr::memmem::Finder;
use regex::Regex;
use regex_syntax::hir::{Hir, HirKind};

use datafusion::arrow::array::BooleanArray;

use crate::common::{Strings, doc, finish, map_to_bool};

/// The patterns compiled so far, by their text with the flags in front. Patterns taken from a column could be
/// many: past this many, the cache starts again rather than grow.
const KEPT: usize = 256;

static COMPILED: LazyLock<Mutex<HashMap<String, Arc<Pattern>>>> = LazyLock::new(Default::default);

/// A compiled pattern, and the longest literal every match of it holds, if it has one.
#[derive(Debug)]
pub struct Pattern {
    regex: Regex,
    required: Option<Finder<'static>>,
}

impl Pattern {
    fn new(text: &str) -> Result<Pattern> {
        let regex = Regex::new(text).map_err(|e| exec_datafusion_err!("matches_regex: {e}"))?;
        // The regex crate parsed it just now: it parses.
        let required = regex_syntax::parse(text)
            .ok()
            .and_then(|hir| required_literal(&hir))
            .map(|literal| Finder::new(&literal).into_owned());
        Ok(Pattern { regex, required })
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.required.as_ref().is_none_or(|f| f.find(text.as_bytes()).is_some()) && self.regex.is_match(text)
    }

    pub fn as_str(&self) -> &str {
        self.regex.as_str()
    }
}

/// The longest literal among the parts of a pattern that is a sequence (or the pattern, when it is a literal):
/// every match holds each of them. Ignoring case makes the letters classes, not literals: such a pattern gets
/// none, unless a part has no letters.
fn required_literal(hir: &Hir) -> Option<Vec<u8>> {
    let literal = |h: &Hir| match h.kind() {
        HirKind::Literal(l) => Some(l.0.to_vec()),
        _ => None,
    };
    match hir.kind() {
        HirKind::Concat(parts) => parts.iter().filter_map(literal).max_by_key(Vec::len),
        _ => literal(hir),
    }
}

/// The compiled pattern, from the cache when it was compiled before. `flags` are those of `regexp_like`: `i`
/// (ignore case), `m` (`^` and `$` at lines), `s` (`.` matches a new line).
pub fn compiled(pattern: &str, flags: &str) -> Result<Arc<Pattern>> {
    if let Some(bad) = flags.chars().find(|c| !matches!(c, 'i' | 'm' | 's')) {
        return exec_err!("matches_regex: unknown flag {bad:?} (the flags are i, m and s)");
    }
    let key = if flags.is_empty() { pattern.to_string() } else { format!("(?{flags}){pattern}") };
    let mut cache = COMPILED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(re) = cache.get(&key) {
        return Ok(re.clone());
    }
    let re = Arc::new(Pattern::new(&key)?);
    if cache.len() >= KEPT {
        cache.clear();
    }
    cache.insert(key, re.clone());
    Ok(re)
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct MatchesRegex {
    signature: Signature,
}

impl Default for MatchesRegex {
    fn default() -> Self {
        let forms = vec![TypeSignature::String(2), TypeSignature::String(3)];
        MatchesRegex { signature: Signature::one_of(forms, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for MatchesRegex {
    fn name(&self) -> &str {
        "matches_regex"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let with_flags = args.args.len() == 3;
        let s = Strings::new(&args.args, args.number_rows)?;
        let flags = |r: usize| if with_flags { s.get(2, r) } else { Some("") };
        // One pattern for the column (a rule's, a query's literal) is taken from the cache once, not per row; a
        // pattern that does not compile is an error even when every text is NULL: the query is wrong.
        if s.is_scalar(1) && (!with_flags || s.is_scalar(2)) {
            let (Some(pattern), Some(flags)) = (s.get(1, 0), flags(0)) else {
                return map_to_bool(&args.args, args.number_rows, |_, _| None);
            };
            let re = compiled(pattern, flags)?;
            return map_to_bool(&args.args[..1], args.number_rows, |s, r| Some(re.is_match(s.get(0, r)?)));
        }
        let mut out = Vec::with_capacity(s.rows());
        for r in 0..s.rows() {
            out.push(match (s.get(0, r), s.get(1, r), flags(r)) {
                (Some(text), Some(pattern), Some(flags)) => Some(compiled(pattern, flags)?.is_match(text)),
                _ => None,
            });
        }
        finish(Arc::new(BooleanArray::from(out)), s.all_scalar())
    }
    fn documentation(&self) -> Option<&Documentation> {
        static DOC: LazyLock<Documentation> = LazyLock::new(|| {
            doc(
                "Whether a regular expression (Rust regex syntax) matches anywhere in a text; regexp_like, with \
                 each pattern compiled once rather than for every batch. Flags: i (ignore case), m (^ and $ match \
                 at lines), s (. matches a new line).",
                "matches_regex(text, pattern[, flags])",
                "SELECT eventname FROM cloudtrail WHERE matches_regex(useridentity.arn, ':assumed-role/aws:', 'i')",
            )
            .with_argument("text", "The text to search")
            .with_argument("pattern", "The regular expression")
            .with_argument("flags", "Optional: any of i, m, s")
            .build()
        });
        Some(&DOC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::testing::{call, encodings};
    use datafusion::arrow::array::{Array, AsArray, StringArray};

    #[test]
    fn matches_like_regexp_like_with_its_flags() {
        let texts = [Some("arn:aws:sts::1:assumed-role/aws:ec2/x"), None, Some("ARN:AWS:STS::1:ASSUMED-ROLE/AWS:X")];
        for texts in encodings(&texts) {
            let pattern = Arc::new(StringArray::from(vec![".+:assumed-role/aws:.+"; 3]));
            let out = call(&MatchesRegex::default(), vec![texts.clone(), pattern.clone()]);
            let out = out.as_boolean();
            assert!(out.value(0) && out.is_null(1) && !out.value(2));
            let flags = Arc::new(StringArray::from(vec!["i"; 3]));
            let out = call(&MatchesRegex::default(), vec![texts, pattern, flags]);
            let out = out.as_boolean();
            assert!(out.value(0) && out.is_null(1) && out.value(2));
        }
        let lines = Arc::new(StringArray::from(vec!["a\nb"]));
        let with = |p: &str, f: &str| {
            let args = vec![
                lines.clone() as _,
                Arc::new(StringArray::from(vec![p])) as _,
                Arc::new(StringArray::from(vec![f])) as _,
            ];
            call(&MatchesRegex::default(), args).as_boolean().value(0)
        };
        assert!(!with("^b$", "") && with("^b$", "m"));
        assert!(!with("a.b", "") && with("a.b", "s"));
    }

    #[test]
    fn the_literal_every_match_holds_is_looked_for_first() {
        let required =
            |p: &str| required_literal(&regex_syntax::parse(p).unwrap()).map(|l| String::from_utf8(l).unwrap());
        assert_eq!(required(".+:assumed-role/aws:.+").as_deref(), Some(":assumed-role/aws:"));
        assert_eq!(required("^[0-9]+-abc(d|e)$").as_deref(), Some("-abc"));
        assert_eq!(required("literal").as_deref(), Some("literal"));
        assert_eq!(required("(?i)abc"), None);
        assert_eq!(required("(?i)abc-123").as_deref(), Some("-123"));
        assert_eq!(required("a|b"), None);
        assert_eq!(required("(abc)?x"), Some("x".into()));
        // With or without the literal's search first, the same answers.
        let texts = [
            "arn:aws:sts::1:assumed-role/aws:ec2/x",
            "arn:aws:sts::1:assumed-role/Admin/x",
            ":assumed-role/aws:",
            "x:assumed-role/aws:\ny",
            "ARN:AWS:STS::1:ASSUMED-ROLE/AWS:X",
            "",
        ];
        for pattern in
            [".+:assumed-role/aws:.+", "(?i).+:assumed-role/aws:.+", "(?s).+:assumed-role/aws:.+", "^:assumed", "x$"]
        {
            let p = Pattern::new(pattern).unwrap();
            let plain = Regex::new(pattern).unwrap();
            for t in texts {
                assert_eq!(p.is_match(t), plain.is_match(t), "{pattern} on {t:?}");
            }
        }
    }

    #[test]
    fn patterns_are_compiled_once_and_bad_ones_are_errors() {
        let a = compiled("x+y", "i").unwrap();
        let b = compiled("x+y", "i").unwrap();
        assert_eq!(a.as_str(), b.as_str());
        assert!(a.is_match("XXY") && !compiled("x+y", "").unwrap().is_match("XXY"));
        assert!(compiled("(", "").is_err());
        assert!(compiled("x", "g").is_err());
    }
}
