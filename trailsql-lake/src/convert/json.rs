//! Small JSON helpers over borrowed text: shallow objects, compact text, string values.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// The members of one JSON object, keys unescaped and values left as raw JSON text.
pub type Entries<'a> = Vec<(Cow<'a, str>, &'a RawValue)>;

/// Why a value could not be read as an object.
#[derive(Debug)]
pub enum ObjectError {
    NotAnObject(&'static str),
    Invalid(serde_json::Error),
}

impl fmt::Display for ObjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectError::NotAnObject(what) => write!(f, "not a JSON object but {what}"),
            ObjectError::Invalid(e) => write!(f, "invalid JSON: {e}"),
        }
    }
}

/// What kind of JSON value a raw text is, from its first byte.
pub fn kind_name(raw: &str) -> &'static str {
    match raw.trim_start().as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        Some(_) => "a number",
        None => "nothing",
    }
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

struct EntriesVisitor;

impl<'de> Visitor<'de> for EntriesVisitor {
    type Value = Entries<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(map.size_hint().unwrap_or(24));
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let value: &'de RawValue = map.next_value()?;
            out.push((key, value));
        }
        Ok(out)
    }
}

/// Reads a JSON object's members without parsing their values.
pub fn entries(raw: &str) -> Result<Entries<'_>, ObjectError> {
    if !raw.trim_start().starts_with('{') {
        return Err(ObjectError::NotAnObject(kind_name(raw)));
    }
    let mut de = serde_json::Deserializer::from_str(raw);
    let out = de.deserialize_map(EntriesVisitor).map_err(ObjectError::Invalid)?;
    de.end().map_err(ObjectError::Invalid)?;
    Ok(out)
}

/// Reads a JSON array's elements without parsing them.
pub fn elements(raw: &str) -> Result<Vec<&RawValue>, serde_json::Error> {
    serde_json::from_str(raw)
}

/// The value of a raw JSON string, borrowed when it has no escapes; `None` when the raw text is not a string.
pub fn string_value(raw: &str) -> Option<Cow<'_, str>> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
}

/// Where the bytes of a JSON text fall, fed one by one: inside a string literal, quotes included, or outside.
#[derive(Debug, Default, Clone, Copy)]
pub struct Strings {
    inside: bool,
    escaped: bool,
}

impl Strings {
    /// Takes the next byte; true when it belongs to a string literal (its opening and closing quotes too).
    pub fn feed(&mut self, c: u8) -> bool {
        if !self.inside {
            self.inside = c == b'"';
            return self.inside;
        }
        if self.escaped {
            self.escaped = false;
        } else if c == b'\\' {
            self.escaped = true;
        } else if c == b'"' {
            self.inside = false;
        }
        true
    }

    /// Whether the bytes fed so far end inside a string literal.
    pub fn inside(&self) -> bool {
        self.inside
    }
}

/// The JSON text without whitespace outside strings; borrowed when it already is compact.
pub fn compact(raw: &str) -> Cow<'_, str> {
    let is_space = |c: u8| matches!(c, b' ' | b'\n' | b'\r' | b'\t');
    let b = raw.as_bytes();
    let mut strings = Strings::default();
    let Some(first) = b.iter().position(|&c| !strings.feed(c) && is_space(c)) else { return Cow::Borrowed(raw) };
    let mut out = b[..first].to_vec();
    out.extend(b[first + 1..].iter().filter(|&&c| strings.feed(c) || !is_space(c)));
    // Only ASCII whitespace outside strings was removed, so the bytes are still UTF-8.
    Cow::Owned(String::from_utf8(out).expect("removing ASCII whitespace keeps UTF-8 valid"))
}

/// How deep a payload's arrays and objects are kept as structure. JSON readers limit nesting (serde_json at 128
/// levels; jiter, under DataFusion's JSON functions and ours, at 200) and give nothing for a text past their limit:
/// not for the deep part alone, for every member beside it. A payload an attacker nested 300 levels deep ahead of
/// `bucketName` hid `bucketName` from every query, view and Sigma rule. Deeper structures are kept whole, as
/// JSON strings holding their text: still searched as text, never parsed by a reader that gives up on them.
pub const MAX_NESTING: usize = 100;

/// A payload as the lake stores it: [`compact`], its strings written as serde_json writes them
/// ([`canonical_strings`]), and each array or object that opens deeper than [`MAX_NESTING`] levels replaced by a
/// JSON string of its text.
pub fn payload(raw: &str) -> Cow<'_, str> {
    let compacted = compact(raw);
    let rewritten = match canonical_strings(&compacted) {
        Cow::Owned(s) => Some(s),
        Cow::Borrowed(_) => None,
    };
    let text = rewritten.map_or(compacted, Cow::Owned);
    let b = text.as_bytes();
    // Every payload of every event passes here: fewer brackets than the limit (nearly all) need no walk with the
    // string state, a count the compiler vectorises.
    if b.iter().filter(|&&c| c == b'[' || c == b'{').count() <= MAX_NESTING {
        return text;
    }
    let (mut strings, mut depth) = (Strings::default(), 0usize);
    let mut out: Option<String> = None;
    // Where the bytes not yet copied to `out` start.
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        i += 1;
        if strings.feed(c) {
            continue;
        }
        match c {
            b'[' | b'{' if depth == MAX_NESTING => {
                let start = i - 1;
                let end = structure_end(b, start);
                let o = out.get_or_insert_with(|| String::with_capacity(text.len() + 16));
                o.push_str(&text[copied..start]);
                push_json_string(o, &text[start..end]);
                (copied, i) = (end, end);
            }
            b'[' | b'{' => depth += 1,
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    match out {
        None => text,
        Some(mut o) => {
            o.push_str(&text[copied..]);
            Cow::Owned(o)
        }
    }
}

/// The text with each string literal that holds a `\u` or `\/` escape written as serde_json writes it: only quotes,
/// backslashes and control characters escaped. AWS writes some payloads with escapes of its own (`\u0026` for `&`,
/// `\u003c` for `<`, as Go's encoder does): a search of the payload's text (`LIKE`, `icontains`, a Sigma rule's
/// `requestParameters|contains: '<sensitiveDataRemoved>'`) would not find what the event says. A literal that is
/// not a valid string (a lone surrogate) is left as it came.
fn canonical_strings(text: &str) -> Cow<'_, str> {
    if !text.contains("\\u") && !text.contains("\\/") {
        return Cow::Borrowed(text);
    }
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let (mut copied, mut i) = (0, 0);
    while i < b.len() {
        if b[i] != b'"' {
            i += 1;
            continue;
        }
        let start = i;
        let (mut escaped, mut unusual) = (false, false);
        i += 1;
        while i < b.len() {
            match (escaped, b[i]) {
                (true, c) => {
                    escaped = false;
                    unusual |= c == b'u' || c == b'/';
                }
                (false, b'\\') => escaped = true,
                (false, b'"') => break,
                _ => {}
            }
            i += 1;
        }
        i = (i + 1).min(b.len());
        let literal = &text[start..i];
        if let Some(canonical) = unusual.then(|| serde_json::from_str::<String>(literal).ok()).flatten() {
            out.push_str(&text[copied..start]);
            push_json_string(&mut out, &canonical);
            copied = i;
        }
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// The end (exclusive) of the array or object that opens at `start`, found without recursion; the end of the text
/// where it is not closed.
fn structure_end(b: &[u8], start: usize) -> usize {
    let (mut strings, mut depth) = (Strings::default(), 0usize);
    for (j, &c) in b.iter().enumerate().skip(start) {
        if strings.feed(c) {
            continue;
        }
        match c {
            b'[' | b'{' => depth += 1,
            b']' | b'}' => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
    }
    b.len()
}

/// Appends `s` to `out` as a JSON string literal.
pub fn push_json_string(out: &mut String, s: &str) {
    // serde_json's escaping is the reference; writing into a String cannot fail.
    out.push_str(&serde_json::to_string(s).expect("a str always serialises"));
}

/// A hash of a JSON text that is equal for equal JSON values: neither whitespace nor the order of object members
/// changes it, and string escapes are resolved. It decides whether two copies of an event are the same event.
pub fn value_hash(raw: &str) -> Result<u64, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(raw);
    let h = de.deserialize_any(HashVisitor)?;
    de.end()?;
    Ok(h)
}

fn mix(a: u64, b: u64) -> u64 {
    // The SplitMix64 finaliser over the pair: cheap, and spreads every input bit.
    let mut z = a.rotate_left(23) ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const TAG_NULL: u64 = 1;
const TAG_BOOL: u64 = 2;
const TAG_INT: u64 = 3;
const TAG_FLOAT: u64 = 4;
const TAG_STR: u64 = 5;
const TAG_ARRAY: u64 = 6;
const TAG_OBJECT: u64 = 7;

fn str_hash(s: &str) -> u64 {
    mix(TAG_STR, xxhash_rust::xxh3::xxh3_64(s.as_bytes()))
}

struct HashVisitor;

impl<'de> DeserializeSeed<'de> for HashVisitor {
    type Value = u64;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_any(HashVisitor)
    }
}

impl<'de> Visitor<'de> for HashVisitor {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<u64, E> {
        Ok(mix(TAG_NULL, 0))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<u64, E> {
        Ok(mix(TAG_BOOL, u64::from(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(mix(TAG_INT, v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        Ok(mix(TAG_INT ^ 0x100, v as u64))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
        Ok(mix(TAG_FLOAT, v.to_bits()))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        Ok(str_hash(v))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
        let mut h = TAG_ARRAY;
        while let Some(e) = seq.next_element_seed(HashVisitor)? {
            h = mix(h, e);
        }
        Ok(h)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<u64, A::Error> {
        // Members combine by addition, so their order does not matter.
        let (mut sum, mut n) = (0u64, 0u64);
        while let Some(k) = map.next_key_seed(KeySeed)? {
            let v = map.next_value_seed(HashVisitor)?;
            sum = sum.wrapping_add(mix(str_hash(&k), v));
            n += 1;
        }
        Ok(mix(mix(TAG_OBJECT, n), sum))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_keep_raw_values_and_unescape_keys() {
        let e = entries(r#"{"a": 1, "b\u0020c": {"x": [1, 2]}, "d": "s"}"#).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].0, "a");
        assert_eq!(e[1].0, "b c");
        assert_eq!(e[1].1.get(), r#"{"x": [1, 2]}"#);
        assert!(matches!(entries("[1]"), Err(ObjectError::NotAnObject("an array"))));
        assert!(matches!(entries(r#"{"a" 1}"#), Err(ObjectError::Invalid(_))));
    }

    #[test]
    fn strings_tell_string_bytes_from_the_rest() {
        let text = br#"{"a\"b": "x\\", "c": 1}"#;
        let mut s = Strings::default();
        let inside: String = text.iter().map(|&c| if s.feed(c) { 's' } else { '.' }).collect();
        assert_eq!(inside, ".ssssss..sssss..sss....");
        assert!(!s.inside());
    }

    #[test]
    fn compact_removes_whitespace_outside_strings_only() {
        assert!(matches!(compact(r#"{"a":"b c"}"#), Cow::Borrowed(_)));
        assert_eq!(compact("{\n  \"a\": \"b c\",\n  \"d\": [1, 2]\n}"), r#"{"a":"b c","d":[1,2]}"#);
        assert_eq!(compact(r#"{"a": "x\" y" }"#), r#"{"a":"x\" y"}"#);
        assert_eq!(compact(r#"{"é": "ü ü"}"#), r#"{"é":"ü ü"}"#);
    }

    #[test]
    fn payload_strings_are_written_as_serde_json_writes_them() {
        // As AWS writes some payloads, and a Sigma rule's value is searched for.
        let aws = r#"{"streamUrl":"wss://x?role=publish_subscribe\u0026cell=1","userData":"\u003csensitiveDataRemoved\u003e"}"#;
        assert_eq!(
            payload(aws),
            r#"{"streamUrl":"wss://x?role=publish_subscribe&cell=1","userData":"<sensitiveDataRemoved>"}"#
        );
        assert_eq!(payload(r#"{"p": "a\/b", "\u00e9": ["\u00e9\n\"q\"\\u"]}"#), r#"{"p":"a/b","é":["é\n\"q\"\\u"]}"#);
        // Control characters stay escaped; a lone surrogate stays as it came; nothing to do, nothing copied.
        assert_eq!(payload(r#"["\u0001\u001f","\udfff x"]"#), r#"["\u0001\u001f","\udfff x"]"#);
        assert!(matches!(payload(r#"{"a":"b\\uc\"d"}"#), Cow::Borrowed(_)));
        assert!(matches!(payload(r#"{"a":"\ud83d\ude00"}"#), Cow::Owned(s) if s == r#"{"a":"😀"}"#));
    }

    #[test]
    fn payloads_nested_past_the_readers_limits_keep_their_deep_part_as_text() {
        let nested = |n: usize, inner: &str| format!("{}{inner}{}", "[".repeat(n), "]".repeat(n));
        let string = |s: &str| {
            let mut out = String::new();
            push_json_string(&mut out, s);
            out
        };
        // At the limit: unchanged, and borrowed.
        let at_limit = format!(r#"{{"x":{}}}"#, nested(MAX_NESTING - 1, "1"));
        assert!(matches!(payload(&at_limit), Cow::Borrowed(_)));
        // Past it, the structure that opens too deep is a string of its compact text; what stands beside it, and
        // brackets inside strings, are kept.
        let deep =
            format!(r#"{{"x":{}, "bucketName":"evil","s":"[{{\"q"}}"#, nested(MAX_NESTING + 200, r#"{"k": "v\"]"}"#));
        let kept = string(&nested(201, r#"{"k":"v\"]"}"#));
        let want = format!(r#"{{"x":{},"bucketName":"evil","s":"[{{\"q"}}"#, nested(MAX_NESTING - 1, &kept));
        assert_eq!(payload(&deep), want);
        let v: serde_json::Value = serde_json::from_str(&want).expect("within serde_json's limit");
        assert_eq!(v["bucketName"], "evil");
        // Two deep parts.
        let two = format!("[{} , {}]", nested(MAX_NESTING, "1"), nested(MAX_NESTING, "2"));
        let want = format!("[{},{}]", nested(MAX_NESTING - 1, &string("[1]")), nested(MAX_NESTING - 1, &string("[2]")));
        assert_eq!(payload(&two), want);
        // A text that ends inside the deep part keeps its bytes.
        let open = "[".repeat(MAX_NESTING + 6);
        assert_eq!(payload(&open), format!("{}{}", "[".repeat(MAX_NESTING), string("[[[[[[")));
    }

    #[test]
    fn value_hash_ignores_member_order_and_whitespace_only() {
        let h = |s: &str| value_hash(s).unwrap();
        assert_eq!(h(r#"{"a":1,"b":{"c":[1,"x"]}}"#), h("{ \"b\": {\"c\": [1, \"\\u0078\"]},\n \"a\": 1 }"));
        assert_ne!(h(r#"{"a":1}"#), h(r#"{"a":2}"#));
        assert_ne!(h(r#"[1,2]"#), h(r#"[2,1]"#));
        assert_ne!(h(r#"{"a":"1"}"#), h(r#"{"a":1}"#));
        assert_ne!(h(r#"{"a":null}"#), h(r#"{}"#));
        assert_ne!(h(r#"{"a":{"b":1}}"#), h(r#"{"a":{},"b":1}"#));
        assert!(value_hash("{").is_err());
    }

    #[test]
    fn string_values() {
        assert_eq!(string_value(r#""abc""#).unwrap(), "abc");
        assert_eq!(string_value(r#""a\"b""#).unwrap(), "a\"b");
        assert_eq!(string_value("12"), None);
    }
}
