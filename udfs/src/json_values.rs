//! `json_values(json, key, …)`: every value at a path of object keys, looked for through arrays at every level.
//!
//! `json_as_text` follows a path to one value, and finds nothing where an array stands on the path:
//! `requestParameters.containerDefinitions.command` of an ECS task definition is a list of definitions, each with
//! a list of words. A Sigma rule over that path means any of them (as search engines flatten lists), so a rule
//! compiled to `json_as_text` would never match, silently. Here each array met on the path, or at its end, is
//! walked element by element; the values found are listed as text: strings as they read, numbers and booleans as
//! written, an object as its JSON text; JSON nulls are left out. Text that is not JSON gives an empty list, a NULL
//! text a NULL list.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{ArrayRef, ListBuilder, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use jiter::{Jiter, JiterResult, Peek};

use crate::common::{Strings, doc, finish, text_list};

/// How deep in arrays and objects values are looked for. Deeper structures are skipped by jiter, which has its
/// own limit: attacker-written text nested a million times deep cannot exhaust the stack.
const DEPTH: usize = 64;

/// The values at `keys` of one JSON text, appended to `out`; an error where the text is not JSON.
pub fn values_at(json: &str, keys: &[&str], out: &mut Vec<String>) -> JiterResult<()> {
    let mut j = Jiter::new(json.as_bytes());
    let peek = j.peek()?;
    walk(&mut j, json, peek, keys, out, 0)
}

fn walk(j: &mut Jiter, json: &str, peek: Peek, keys: &[&str], out: &mut Vec<String>, depth: usize) -> JiterResult<()> {
    match peek {
        Peek::Array | Peek::Object if depth == DEPTH => j.known_skip(peek)?,
        Peek::Array => {
            let mut next = j.known_array()?;
            while let Some(p) = next {
                walk(j, json, p, keys, out, depth + 1)?;
                next = j.array_step()?;
            }
        }
        Peek::Object if !keys.is_empty() => {
            let mut key = j.known_object()?.map(|k| k == keys[0]);
            while let Some(hit) = key {
                let p = j.peek()?;
                if hit {
                    walk(j, json, p, &keys[1..], out, depth + 1)?
                } else {
                    j.known_skip(p)?
                }
                key = j.next_key()?.map(|k| k == keys[0]);
            }
        }
        // A value where the path goes on: nothing there.
        _ if !keys.is_empty() => j.known_skip(peek)?,
        Peek::Object => {
            let start = j.current_index();
            j.known_skip(peek)?;
            out.push(json[start..j.current_index()].to_string());
        }
        Peek::String => out.push(j.known_str()?.to_string()),
        Peek::Null => j.known_null()?,
        Peek::True | Peek::False => out.push(j.known_bool(peek)?.to_string()),
        _ => {
            let number = j.known_number_bytes(peek)?;
            out.push(String::from_utf8_lossy(number).into_owned());
        }
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct JsonValues {
    signature: Signature,
}

impl Default for JsonValues {
    fn default() -> Self {
        JsonValues { signature: Signature::user_defined(Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for JsonValues {
    fn name(&self) -> &str {
        "json_values"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(text_list())
    }
    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        if args.len() < 2 {
            return plan_err!("json_values takes a JSON text and at least one key");
        }
        let text = |t: &DataType| if t.is_string() { t.clone() } else { DataType::Utf8 };
        Ok(args.iter().map(text).collect())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let texts = Strings::new(&args.args, args.number_rows)?;
        let mut lists = ListBuilder::new(StringBuilder::new());
        let (mut keys, mut found) = (Vec::new(), Vec::new());
        for row in 0..args.number_rows {
            keys.clear();
            keys.extend((1..args.args.len()).map_while(|i| texts.get(i, row)));
            match texts.get(0, row) {
                Some(json) if keys.len() == args.args.len() - 1 => {
                    found.clear();
                    // Not JSON, or JSON that ends early: what was found before the fault is dropped with it.
                    if values_at(json, &keys, &mut found).is_ok() {
                        lists.values().extend(found.iter().map(Some));
                    }
                    lists.append(true);
                }
                _ => lists.append_null(),
            }
        }
        finish(Arc::new(lists.finish()) as ArrayRef, texts.all_scalar())
    }
    fn documentation(&self) -> Option<&Documentation> {
        static DOC: LazyLock<Documentation> = LazyLock::new(|| {
            doc(
                "Every value at a path of keys in a JSON text, looking through arrays at every level (as search \
                 engines flatten lists): strings as text, numbers and booleans as written, objects as JSON; JSON \
                 nulls are left out. Text that is not JSON gives an empty list.",
                "json_values(json, key[, key…])",
                "SELECT eventname FROM cloudtrail WHERE array_has(json_values(requestparameters, \
                 'containerDefinitions', 'image'), 'alpine')",
            )
            .with_argument("json", "A JSON text")
            .with_argument("key", "Object keys, outermost first")
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

    fn at(json: &str, keys: &[&str]) -> Option<Vec<String>> {
        let mut out = Vec::new();
        values_at(json, keys, &mut out).ok().map(|_| out)
    }

    #[test]
    fn arrays_are_looked_through_on_the_path_and_at_its_end() {
        let task = r#"{"family":"x","containerDefinitions":[
            {"name":"a","command":["sh","-c","curl 169.254.170.2$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"]},
            {"name":"b"},
            {"name":"c","command":"echo"}]}"#;
        assert_eq!(
            at(task, &["containerDefinitions", "command"]).unwrap(),
            ["sh", "-c", "curl 169.254.170.2$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "echo"]
        );
        assert_eq!(at(task, &["containerDefinitions", "name"]).unwrap(), ["a", "b", "c"]);
        assert_eq!(at(task, &["family"]).unwrap(), ["x"]);
        assert_eq!(at(r#"[[{"k":1}],{"k":[2,[3]]}]"#, &["k"]).unwrap(), ["1", "2", "3"]);
    }

    #[test]
    fn values_read_as_json_as_text_reads_them() {
        let j = r#"{"s":"a \"q\" \u00e9","n":-1.5e3,"t":true,"f":false,"z":null,"o":{"a": [1, "x"]}}"#;
        assert_eq!(at(j, &["s"]).unwrap(), ["a \"q\" é"]);
        assert_eq!(at(j, &["n"]).unwrap(), ["-1.5e3"]);
        assert_eq!(at(j, &["t"]).unwrap(), ["true"]);
        assert_eq!(at(j, &["f"]).unwrap(), ["false"]);
        assert!(at(j, &["z"]).unwrap().is_empty());
        assert_eq!(at(j, &["o"]).unwrap(), [r#"{"a": [1, "x"]}"#]);
        // Keys are matched exactly; a path through a value that is not an object finds nothing.
        assert!(at(j, &["S"]).unwrap().is_empty());
        assert!(at(j, &["s", "x"]).unwrap().is_empty());
        assert!(at(j, &["missing", "x"]).unwrap().is_empty());
        // A key given twice is found twice.
        assert_eq!(at(r#"{"a":1,"a":2}"#, &["a"]).unwrap(), ["1", "2"]);
    }

    #[test]
    fn text_that_is_not_json_is_an_error_not_a_panic() {
        for bad in ["", "{", r#"{"a":"#, r#"{"a":[1,"#, "nope", r#"{"a":"\ud800"}"#, "\u{0}"] {
            let _ = at(bad, &["a"]);
        }
        assert!(at("{", &["a"]).is_none());
        assert_eq!(at("7", &[]).unwrap(), ["7"]);
        // Nested past any stack, as an attacker can write it: no overflow; what is deeper than DEPTH is not found.
        for deep in ["[".repeat(1_000_000), format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000))] {
            let _ = at(&deep, &[]);
        }
        let nested = |n: usize| format!("{}\"x\"{}", "[".repeat(n), "]".repeat(n));
        assert_eq!(at(&nested(DEPTH), &[]).unwrap(), ["x"]);
        assert!(at(&nested(DEPTH + 1), &[]).unwrap().is_empty());
    }

    #[test]
    fn over_every_encoding_null_text_is_a_null_list_and_bad_json_an_empty_one() {
        let texts = [Some(r#"{"k":["a","b"]}"#), None, Some("{oops"), Some(r#"{"k":"c"}"#)];
        for texts in encodings(&texts) {
            let key = Arc::new(StringArray::from(vec!["k"; 4]));
            let out = call(&JsonValues::default(), vec![texts, key]);
            let lists = out.as_list::<i32>();
            assert!(lists.is_null(1));
            let row = |i: usize| -> Vec<String> {
                let v = lists.value(i);
                v.as_string::<i32>().iter().map(|s| s.unwrap().to_string()).collect()
            };
            assert_eq!(row(0), ["a", "b"]);
            assert!(row(2).is_empty());
            assert_eq!(row(3), ["c"]);
        }
    }
}
