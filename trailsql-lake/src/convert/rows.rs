//! One event object to one row: the typed columns of the schema tree, and `unmapped` for everything they cannot
//! hold exactly.
//!
//! The rule that makes every event rebuildable from its row (see `rebuild.rs` for the inverse): a member goes to
//! `unmapped` verbatim when its key is unknown, when two keys claim the same column (`accountId` beside
//! `accountid`), when its value is `null`, or when the typed column cannot give back the same text (a boolean
//! written as a string, a time in another format, a number where text is expected). A known key spelled in another
//! case fills its column and leaves a marker under its own spelling. An object member whose inside has such cases
//! leaves a partial object with only those.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use crate::time::{is_cloudtrail_time_text, parse_cloudtrail_time};
use arrow::array::{
    ArrayRef, BooleanBuilder, ListArray, NullBufferBuilder, StringBuilder, StructArray, TimestampMicrosecondBuilder,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, FieldRef, Fields};
use rustc_hash::FxBuildHasher;
use serde_json::value::RawValue;

use super::json::{Entries, elements, entries, payload, push_json_string, string_value};
use crate::schema::{self, BoolForm, Field, Kind};

/// A member of `unmapped`: the verbatim value, or a partial object for a known object member.
#[derive(Debug)]
pub enum UVal<'a> {
    Raw(&'a RawValue),
    Obj(Unmapped<'a>),
}

pub type Unmapped<'a> = Vec<(Cow<'a, str>, UVal<'a>)>;

/// Writes a level of `unmapped` as a compact JSON object.
pub fn write_unmapped(out: &mut String, u: &Unmapped) {
    out.push('{');
    for (i, (k, v)) in u.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_string(out, k);
        out.push(':');
        match v {
            UVal::Raw(raw) => out.push_str(&payload(raw.get())),
            UVal::Obj(inner) => write_unmapped(out, inner),
        }
    }
    out.push('}');
}

const MAX_MEMBERS: usize = 48;
const NONE: usize = usize::MAX;

/// A level of the schema tree with its key lookups, built once.
#[derive(Debug)]
pub struct Level {
    pub members: &'static [Field],
    exact: HashMap<&'static str, usize, FxBuildHasher>,
    lower: HashMap<String, usize, FxBuildHasher>,
    children: Vec<Option<Level>>,
}

impl Level {
    pub fn new(members: &'static [Field]) -> Level {
        assert!(members.len() <= MAX_MEMBERS, "a schema level has at most {MAX_MEMBERS} members");
        Level {
            members,
            exact: members.iter().enumerate().map(|(i, m)| (m.key, i)).collect(),
            lower: members.iter().enumerate().map(|(i, m)| (m.key.to_ascii_lowercase(), i)).collect(),
            children: members
                .iter()
                .map(|m| match m.kind {
                    Kind::Struct(inner) | Kind::List(inner) => Some(Level::new(inner)),
                    _ => None,
                })
                .collect(),
        }
    }

    /// The member a key fills: its exact spelling, else the same letters in another case.
    pub fn find(&self, key: &str) -> Option<usize> {
        if let Some(&i) = self.exact.get(key) {
            return Some(i);
        }
        if key.len() > 64 || !key.bytes().any(|b| b.is_ascii_alphabetic()) {
            return None;
        }
        self.lower.get(key.to_ascii_lowercase().as_str()).copied()
    }

    pub fn index_of(&self, key: &str) -> usize {
        self.exact[key]
    }
}

/// A column being built, mirroring a member of the schema tree.
pub enum Col {
    Text(StringBuilder),
    Bool(BooleanBuilder),
    Time(TimestampMicrosecondBuilder),
    Struct(StructCol),
    List { offsets: Vec<i32>, nulls: NullBufferBuilder, item_field: FieldRef, item: StructCol },
}

pub struct StructCol {
    fields: Fields,
    children: Vec<Col>,
    nulls: NullBufferBuilder,
    len: usize,
}

/// Builders for every column of an event row, empty.
pub fn event_cols() -> Vec<Col> {
    schema::EVENT.iter().zip(schema::file_schema().fields()).map(|(m, f)| Col::new(m.kind, f.data_type())).collect()
}

impl StructCol {
    fn new(members: &[Field], fields: &Fields) -> StructCol {
        StructCol {
            fields: fields.clone(),
            children: members.iter().zip(fields).map(|(m, f)| Col::new(m.kind, f.data_type())).collect(),
            nulls: NullBufferBuilder::new(0),
            len: 0,
        }
    }

    fn append_null(&mut self) {
        for c in &mut self.children {
            c.append_null();
        }
        self.nulls.append_null();
        self.len += 1;
    }

    fn finish(&mut self) -> StructArray {
        let children: Vec<ArrayRef> = self.children.iter_mut().map(Col::finish).collect();
        let nulls = self.nulls.finish();
        let len = std::mem::take(&mut self.len);
        if self.fields.is_empty() {
            return StructArray::new_empty_fields(len, nulls);
        }
        StructArray::new(self.fields.clone(), children, nulls)
    }
}

impl Col {
    /// An empty builder of a column of `kind`, whose Arrow type (from the file schema, so that the type trees are
    /// shared, not built again for every file) is `data_type`.
    fn new(kind: Kind, data_type: &DataType) -> Col {
        match (kind, data_type) {
            // Builders start empty and grow as rows come: the default capacities (1,024 rows of each of ~70
            // columns) cost ~370 KB per partition of every file, gigabytes when a run touches thousands.
            (Kind::Text | Kind::Json, _) => Col::Text(StringBuilder::with_capacity(0, 0)),
            (Kind::Bool(_), _) => Col::Bool(BooleanBuilder::with_capacity(0)),
            (Kind::Time, _) => Col::Time(TimestampMicrosecondBuilder::with_capacity(0)),
            (Kind::Struct(members), DataType::Struct(fields)) => Col::Struct(StructCol::new(members, fields)),
            (Kind::List(members), DataType::List(item_field)) => {
                let DataType::Struct(fields) = item_field.data_type() else {
                    unreachable!("the schema makes a list's items structs")
                };
                Col::List {
                    offsets: vec![0],
                    nulls: NullBufferBuilder::new(0),
                    item_field: item_field.clone(),
                    item: StructCol::new(members, fields),
                }
            }
            (kind, data_type) => unreachable!("the schema gives {kind:?} the type {data_type}"),
        }
    }

    pub fn append_null(&mut self) {
        match self {
            Col::Text(b) => b.append_null(),
            Col::Bool(b) => b.append_null(),
            Col::Time(b) => b.append_null(),
            Col::Struct(s) => s.append_null(),
            Col::List { offsets, nulls, .. } => {
                offsets.push(*offsets.last().expect("offsets start with 0"));
                nulls.append_null();
            }
        }
    }

    pub fn finish(&mut self) -> ArrayRef {
        match self {
            Col::Text(b) => Arc::new(b.finish()),
            Col::Bool(b) => Arc::new(b.finish()),
            Col::Time(b) => Arc::new(b.finish().with_timezone("UTC")),
            Col::Struct(s) => Arc::new(s.finish()),
            Col::List { offsets, nulls, item_field, item } => {
                let values = item.finish();
                let offsets = OffsetBuffer::new(std::mem::replace(offsets, vec![0]).into());
                Arc::new(ListArray::new(item_field.clone(), offsets, Arc::new(values), nulls.finish()))
            }
        }
    }
}

/// Fills one row of the columns of `level` from an object's members; what they cannot hold goes to `u`.
pub fn append_object<'a>(level: &Level, cols: &mut [Col], members: &Entries<'a>, u: &mut Unmapped<'a>) {
    let n = level.members.len();
    let mut claim = [NONE; MAX_MEMBERS];
    let mut collided = [false; MAX_MEMBERS];
    for (ei, (key, raw)) in members.iter().enumerate() {
        match level.find(key) {
            None => u.push((key.clone(), UVal::Raw(raw))),
            Some(fi) if claim[fi] == NONE => claim[fi] = ei,
            Some(fi) => {
                collided[fi] = true;
                // The exact spelling gets the typed column; every claimant is kept verbatim.
                if key.as_ref() == level.members[fi].key {
                    let prev = claim[fi];
                    u.push((members[prev].0.clone(), UVal::Raw(members[prev].1)));
                    claim[fi] = ei;
                } else {
                    u.push((key.clone(), UVal::Raw(raw)));
                }
            }
        }
    }
    for fi in 0..n {
        let col = &mut cols[fi];
        if claim[fi] == NONE {
            col.append_null();
            continue;
        }
        let (key, raw) = &members[claim[fi]];
        let member = &level.members[fi];
        let child = level.children[fi].as_ref();
        if collided[fi] {
            let mut discard = Vec::new();
            append_value(member, child, col, key, raw, &mut discard);
            u.push((key.clone(), UVal::Raw(raw)));
        } else {
            append_value(member, child, col, key, raw, u);
        }
    }
}

fn first_byte(raw: &RawValue) -> u8 {
    raw.get().as_bytes()[0]
}

#[expect(clippy::ptr_arg, reason = "the key is kept as it came, borrowed from the input when it can be")]
fn append_value<'a>(
    member: &Field,
    child: Option<&Level>,
    col: &mut Col,
    key: &Cow<'a, str>,
    raw: &'a RawValue,
    u: &mut Unmapped<'a>,
) {
    let text = raw.get();
    // Whether the column holds the value exactly as written; if not, the text is also kept in `unmapped`.
    let exact = if first_byte(raw) == b'n' {
        col.append_null();
        false
    } else {
        match (member.kind, col) {
            (Kind::Text, Col::Text(b)) => append_text(b, text),
            (Kind::Json, Col::Text(b)) => {
                b.append_value(payload(text));
                true
            }
            (Kind::Bool(form), Col::Bool(b)) => append_bool(b, form, text),
            (Kind::Time, Col::Time(b)) => append_time(b, text),
            (Kind::Struct(_), Col::Struct(sc)) => match entries(text) {
                Ok(inner) => {
                    let mut inner_u = Vec::new();
                    append_object(child.expect("a struct member has a level"), &mut sc.children, &inner, &mut inner_u);
                    sc.nulls.append_non_null();
                    sc.len += 1;
                    // What the struct's own columns do not hold is kept member by member.
                    if !inner_u.is_empty() || key.as_ref() != member.key {
                        u.push((key.clone(), UVal::Obj(inner_u)));
                    }
                    return;
                }
                Err(_) => {
                    sc.append_null();
                    false
                }
            },
            (Kind::List(_), Col::List { offsets, nulls, item, .. }) => {
                append_list(child.expect("a list member has a level"), offsets, nulls, item, text)
            }
            _ => unreachable!("columns are built from the same schema kinds"),
        }
    };
    if !exact || key.as_ref() != member.key {
        u.push((key.clone(), UVal::Raw(raw)));
    }
}

fn append_text(b: &mut StringBuilder, text: &str) -> bool {
    if !text.starts_with('"') {
        b.append_value(payload(text));
        return false;
    }
    match string_value(text) {
        Some(v) => {
            b.append_value(v);
            true
        }
        // A string no Rust string can hold (a lone UTF-16 surrogate escape, `"\udfff"`): its text is kept verbatim
        // in `unmapped`, the column is null.
        None => {
            b.append_null();
            false
        }
    }
}

fn append_bool(b: &mut BooleanBuilder, form: BoolForm, text: &str) -> bool {
    let (value, as_written) = match text {
        "true" => (Some(true), form == BoolForm::Json),
        "false" => (Some(false), form == BoolForm::Json),
        _ => match string_value(text).as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("true") => (Some(true), form == BoolForm::Text && text == "\"true\""),
            Some("false") => (Some(false), form == BoolForm::Text && text == "\"false\""),
            _ => (None, false),
        },
    };
    b.append_option(value);
    as_written
}

fn append_time(b: &mut TimestampMicrosecondBuilder, text: &str) -> bool {
    let s = string_value(text);
    let t = s.as_deref().and_then(parse_cloudtrail_time);
    b.append_option(t);
    match (t, s) {
        (Some(t), Some(s)) => is_cloudtrail_time_text(t, &s),
        _ => false,
    }
}

/// A list of objects; exact when every element is an object its columns hold whole (per-element differences are
/// not tracked: otherwise the whole array is kept verbatim).
fn append_list(
    level: &Level,
    offsets: &mut Vec<i32>,
    nulls: &mut NullBufferBuilder,
    item: &mut StructCol,
    text: &str,
) -> bool {
    let last = *offsets.last().expect("offsets start with 0");
    let Ok(items) = elements(text) else {
        offsets.push(last);
        nulls.append_null();
        return false;
    };
    let mut exact = true;
    for it in &items {
        match entries(it.get()) {
            Ok(inner) => {
                let mut inner_u = Vec::new();
                append_object(level, &mut item.children, &inner, &mut inner_u);
                item.nulls.append_non_null();
                item.len += 1;
                exact &= inner_u.is_empty();
            }
            Err(_) => {
                item.append_null();
                exact = false;
            }
        }
    }
    offsets.push(last + i32::try_from(items.len()).expect("list fits in i32"));
    nulls.append_non_null();
    exact
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(json: &str) -> (Vec<Col>, String) {
        let level = Level::new(schema::EVENT);
        let mut cols = event_cols();
        let members = entries(json).unwrap();
        let mut u = Vec::new();
        append_object(&level, &mut cols, &members, &mut u);
        let mut s = String::new();
        if !u.is_empty() {
            write_unmapped(&mut s, &u);
        }
        (cols, s)
    }

    #[test]
    fn canonical_event_leaves_nothing_unmapped() {
        let (_, u) = convert(
            r#"{"eventVersion":"1.08","eventTime":"2024-10-25T20:52:11Z","readOnly":false,
               "userIdentity":{"type":"Root","sessionContext":{"attributes":{"creationDate":"2024-10-25T20:52:11Z","mfaAuthenticated":"false"}}},
               "resources":[{"ARN":"arn:aws:s3:::b","accountId":"222222222222","type":"AWS::S3::Bucket"}],
               "requestParameters":{"a":[1,2]}}"#,
        );
        assert_eq!(u, "");
    }

    #[test]
    fn unknown_keys_nulls_and_odd_forms_are_kept() {
        let (_, u) = convert(
            r#"{"eventTime":"2024-10-25 20:52:11","readOnly":"true","responseElements":null,"p_row_id":"x",
               "userIdentity":{"type":"IAMUser","accesKeyId":"AKIA"},"recipientAccountId":123456789012}"#,
        );
        assert_eq!(
            u,
            r#"{"p_row_id":"x","userIdentity":{"accesKeyId":"AKIA"},"eventTime":"2024-10-25 20:52:11","responseElements":null,"readOnly":"true","recipientAccountId":123456789012}"#
        );
    }

    #[test]
    fn other_case_fills_the_column_and_collisions_keep_both() {
        let (cols, u) = convert(r#"{"eventname":"X","userIdentity":{"accountId":"1","accountid":"2"}}"#);
        assert_eq!(u, r#"{"userIdentity":{"accountid":"2","accountId":"1"},"eventname":"X"}"#);
        let Col::Text(_) = &cols[4] else { panic!() };
    }
}
