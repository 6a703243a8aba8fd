//! From the records a file holds to placed rows: envelopes unwrapped, events placed in their partition, the rest
//! rejected with a reason.

use std::collections::HashMap;
use std::io::Read;

use arrow::array::{ArrayRef, RecordBatch, StringBuilder};
use xxhash_rust::xxh3::xxh3_64;

use super::json::{self, Entries, ObjectError, string_value};
use super::rows::{Col, Level, append_object, event_cols, write_unmapped};
use super::scan::{Container, Item, Locator, Scanner};
use crate::index::EventId;
use crate::layout::PartitionKey;
use crate::schema::{self, EVENT};

/// Rows of one partition from one file.
#[derive(Debug)]
pub struct PartBatch {
    pub key: PartitionKey,
    pub batch: RecordBatch,
    /// One per row; `None` for an event without an eventID, which is never a duplicate.
    pub ids: Vec<Option<EventId>>,
}

/// A line of `_rejects/`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reject {
    pub source: String,
    pub reason: String,
    pub raw: Option<String>,
}

/// What one file (or one piece of a very large file) gave.
#[derive(Debug, Default)]
pub struct FileOutput {
    pub parts: Vec<PartBatch>,
    pub rejects: Vec<Reject>,
    pub events: u64,
    /// A CloudTrail digest file: skipped, not an error.
    pub digest: bool,
    /// A piece of a very large file handed on before the file's end: the file may still fail, and then none of
    /// its pieces may enter the lake. The last piece of a file is not partial, and comes only when it was read.
    pub partial: bool,
}

/// A file that could not be read as a whole.
#[derive(Debug, Clone)]
pub struct FileFailure {
    pub reason: String,
}

/// Bytes of rejects a reader holds before handing them on.
const REJECT_BYTES: usize = 4 << 20;

/// Limits and the schema lookups shared by all files.
pub struct Converter {
    level: Level,
    event_time: usize,
    recipient: usize,
    event_id: usize,
    pub max_record: usize,
    /// Above this many bytes of records, a file's rows are handed on before the file ends.
    pub chunk_bytes: usize,
}

impl Converter {
    pub fn new(max_record: usize) -> Converter {
        let level = Level::new(EVENT);
        Converter {
            event_time: level.index_of("eventTime"),
            recipient: level.index_of("recipientAccountId"),
            event_id: level.index_of("eventID"),
            level,
            max_record,
            chunk_bytes: 256 << 20,
        }
    }

    /// Reads every record of one decompressed stream. `key_account` is the account in the object key, used when an
    /// event has no recipientAccountId. Output goes to `emit`, once at the end, or in pieces for a very large file.
    pub fn convert_stream<R: Read>(
        &self,
        reader: R,
        source: &str,
        key_account: Option<&str>,
        emit: &mut dyn FnMut(FileOutput),
    ) -> Result<(), FileFailure> {
        let mut sink = Sink::new(self, source, key_account);
        let mut scanner = Scanner::new(reader, self.max_record);
        let mut records = 0u64;
        loop {
            let item = match scanner.next_item() {
                Ok(Some(item)) => item,
                Ok(None) => break,
                Err(e) => return Err(FileFailure { reason: e.reason }),
            };
            match item {
                Item::Record { bytes, container, at } => {
                    records += 1;
                    sink.record(bytes, container, at)?;
                }
                Item::BadLine { bytes, reason, at } => {
                    sink.reject(at, reason, Some(String::from_utf8_lossy(bytes).into_owned()));
                }
                Item::TooLarge { head, size, at } => {
                    let mut raw = String::from_utf8_lossy(&head).into_owned();
                    raw.push('…');
                    sink.reject(
                        at,
                        format!(
                            "record of {size} bytes is larger than the limit of {} bytes (--max-record-size); its \
                             first {} bytes are kept",
                            self.max_record,
                            head.len()
                        ),
                        Some(raw),
                    );
                }
            }
            // Rejects are handed on early too (they go straight to disk): ten million bad lines must not wait
            // in memory for the file's end.
            if sink.bytes > self.chunk_bytes || sink.reject_bytes > REJECT_BYTES {
                let mut piece = sink.take();
                piece.partial = true;
                emit(piece);
            }
        }
        let (top, bad) = scanner.top_level_counts();
        if records == 0 && bad > 0 && bad == top && !sink.emitted {
            return Err(FileFailure { reason: "not JSON: no line of it is a JSON object or array".into() });
        }
        emit(sink.take());
        Ok(())
    }
}

/// Rows being built for one file, per partition.
struct Sink<'c> {
    conv: &'c Converter,
    source: &'c str,
    key_account: Option<&'c str>,
    building: HashMap<PartitionKey, PartBuilder>,
    out: FileOutput,
    bytes: usize,
    /// Bytes of the rejects in `out`.
    reject_bytes: usize,
    emitted: bool,
}

struct PartBuilder {
    cols: Vec<Col>,
    unmapped: StringBuilder,
    ids: Vec<Option<EventId>>,
}

impl PartBuilder {
    fn new() -> PartBuilder {
        PartBuilder { cols: event_cols(), unmapped: StringBuilder::with_capacity(0, 0), ids: Vec::new() }
    }

    fn finish(mut self) -> (RecordBatch, Vec<Option<EventId>>) {
        let mut columns: Vec<ArrayRef> = self.cols.iter_mut().map(Col::finish).collect();
        columns.push(std::sync::Arc::new(self.unmapped.finish()));
        let batch = RecordBatch::try_new(schema::file_schema(), columns).expect("columns follow the file schema");
        (batch, self.ids)
    }
}

/// Why a record is not an event row.
enum NotAnEvent {
    Reject(String),
    /// The record is not valid JSON: in a container, this fails the file.
    Invalid(String),
}

impl<'c> Sink<'c> {
    fn new(conv: &'c Converter, source: &'c str, key_account: Option<&'c str>) -> Sink<'c> {
        Sink {
            conv,
            source,
            key_account,
            building: HashMap::new(),
            out: FileOutput::default(),
            bytes: 0,
            reject_bytes: 0,
            emitted: false,
        }
    }

    fn take(&mut self) -> FileOutput {
        let mut out = std::mem::take(&mut self.out);
        let mut keys: Vec<PartitionKey> = self.building.keys().cloned().collect();
        keys.sort();
        for key in keys {
            let builder = self.building.remove(&key).expect("key was listed");
            let (batch, ids) = builder.finish();
            out.parts.push(PartBatch { key, batch, ids });
        }
        self.bytes = 0;
        self.reject_bytes = 0;
        self.emitted = true;
        out
    }

    fn reject(&mut self, at: Locator, reason: String, raw: Option<String>) {
        let source = format!("{} ({at})", self.source);
        self.reject_bytes += source.len() + reason.len() + raw.as_ref().map_or(0, String::len) + 64;
        self.out.rejects.push(Reject { source, reason, raw });
    }

    fn record(&mut self, bytes: &[u8], container: Container, at: Locator) -> Result<(), FileFailure> {
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let raw = String::from_utf8_lossy(bytes).into_owned();
                self.reject(at, format!("not UTF-8: {e}"), Some(raw));
                return Ok(());
            }
        };
        self.bytes += text.len();
        let result = match container {
            Container::LookupEvents => self.wrapped(text, "CloudTrailEvent", "lookup-events entry"),
            Container::LogEvents => self.wrapped(text, "message", "CloudWatch Logs event"),
            Container::Records | Container::Array | Container::TopLevel => self.value(text, 0),
        };
        match result {
            Ok(()) => Ok(()),
            Err(NotAnEvent::Reject(reason)) => {
                self.reject(at, reason, Some(text.to_owned()));
                Ok(())
            }
            // One line of NDJSON stands alone; inside a document, broken JSON means a broken file.
            Err(NotAnEvent::Invalid(reason)) if container == Container::TopLevel => {
                self.reject(at, reason, Some(text.to_owned()));
                Ok(())
            }
            Err(NotAnEvent::Invalid(reason)) => Err(FileFailure { reason: format!("{reason} ({at})") }),
        }
    }

    /// An event carried as a JSON string in a member of a wrapper object.
    fn wrapped(&mut self, text: &str, member: &str, what: &str) -> Result<(), NotAnEvent> {
        let members = object(text)?;
        let Some((_, raw)) = members.iter().find(|(k, _)| k == member) else {
            return Err(NotAnEvent::Reject(format!("{what} without {member}")));
        };
        let Some(inner) = string_value(raw.get()) else {
            return Err(NotAnEvent::Reject(format!("{what} whose {member} is not a string")));
        };
        match json::entries(&inner) {
            Ok(event) => self.event(&event, &inner),
            Err(e) => Err(NotAnEvent::Reject(format!("{member} of a {what} is {e}"))),
        }
    }

    /// A value that is an event, an envelope holding one, or a nested `Records` document.
    fn value(&mut self, text: &str, depth: usize) -> Result<(), NotAnEvent> {
        let members = object(text)?;
        let has = |k: &str| members.iter().find(|(key, _)| key == k).map(|(_, v)| *v);
        if let (Some(kind), Some(detail)) = (has("detail-type"), has("detail")) {
            let kind = string_value(kind.get()).unwrap_or_default();
            if !kind.ends_with("via CloudTrail") {
                return Err(NotAnEvent::Reject(format!(
                    "EventBridge event not from CloudTrail (detail-type {kind:?})"
                )));
            }
            let event = object(detail.get())?;
            return self.event(&event, detail.get());
        }
        if has("digestStartTime").is_some() && has("logFiles").is_some() {
            self.out.digest = true;
            return Ok(());
        }
        if let (Some(records), true) = (has("Records"), depth == 0) {
            let items = json::elements(records.get()).map_err(|e| NotAnEvent::Invalid(format!("invalid JSON: {e}")))?;
            for item in items {
                self.value(item.get(), depth + 1)?;
            }
            return Ok(());
        }
        self.event(&members, text)
    }

    /// One event: placed in its partition and appended, or rejected.
    fn event(&mut self, members: &Entries<'_>, text: &str) -> Result<(), NotAnEvent> {
        let conv = self.conv;
        let find = |idx: usize| {
            // The member that fills the column (`rows::append_object`'s rule: the first claimant, replaced by any
            // later exact spelling), so that a key given twice puts the event in the partition its column shows.
            let mut found = None;
            for (k, v) in members {
                if conv.level.find(k) == Some(idx) && (found.is_none() || k == conv.level.members[idx].key) {
                    found = Some(*v);
                }
            }
            found
        };
        let Some(time_raw) = find(conv.event_time) else {
            return Err(NotAnEvent::Reject("no eventTime: the event cannot be placed in a date partition".into()));
        };
        let time = string_value(time_raw.get()).and_then(|s| crate::time::parse_cloudtrail_time(&s));
        let Some(day) = time.and_then(crate::time::utc_day) else {
            return Err(NotAnEvent::Reject(format!("eventTime {} is not a time", time_raw.get())));
        };
        let recipient = find(conv.recipient).and_then(|r| string_value(r.get()));
        let account = match &recipient {
            Some(r) => PartitionKey::account_or_fallback(Some(r)),
            None => PartitionKey::account_or_fallback(self.key_account),
        };
        let id = find(conv.event_id).and_then(|r| string_value(r.get())).map(|event_id| {
            let mut key = String::with_capacity(64);
            key.push_str(recipient.as_deref().unwrap_or(""));
            key.push('\0');
            key.push_str(&event_id);
            EventId { id: xxh3_64(key.as_bytes()), content: content_hash(text) }
        });
        let builder = self.building.entry(PartitionKey { account, day }).or_insert_with(PartBuilder::new);
        let mut u = Vec::new();
        append_object(&conv.level, &mut builder.cols, members, &mut u);
        if u.is_empty() {
            builder.unmapped.append_null();
        } else {
            let mut s = String::new();
            write_unmapped(&mut s, &u);
            builder.unmapped.append_value(s);
        }
        builder.ids.push(id);
        self.out.events += 1;
        Ok(())
    }
}

/// The content hash of an event. serde_json refuses some texts that were read as events (a number out of range such
/// as `1e400`, nesting deeper than 128, a lone surrogate escape): those are hashed as their bytes, so that a copy is
/// still a duplicate and different content under the same ID is still a conflict, never a false duplicate.
fn content_hash(text: &str) -> u64 {
    json::value_hash(text).unwrap_or_else(|_| xxh3_64(json::compact(text).as_bytes()) ^ 0x5241_5754_4558_5421)
}

fn object(text: &str) -> Result<Entries<'_>, NotAnEvent> {
    json::entries(text).map_err(|e| match e {
        ObjectError::NotAnObject(_) => NotAnEvent::Reject(e.to_string()),
        ObjectError::Invalid(_) => NotAnEvent::Invalid(e.to_string()),
    })
}
