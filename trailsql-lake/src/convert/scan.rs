//! Streaming discovery of records in a JSON byte stream, whatever container holds them, in bounded memory.
//!
//! CloudTrail arrives as one `{"Records":[...]}` document, as lookup-events output (`{"Events":[...]}`), as a
//! CloudWatch Logs envelope (`{"logEvents":[...]}`), as a JSON array, as one event per line, or as one event.
//! serde_json can only read such a document whole, or from an `io::Read` byte by byte, and it cannot stop a
//! single oversized record before holding it: so this module finds the record boundaries itself with a small
//! structural scanner (strings and brackets only), and hands each record's bytes to serde_json. Memory is one
//! read buffer plus the largest record, which is capped; a record above the cap is skipped as it streams by.

use std::io::Read;

use super::json;

/// What the values of a container hold, which decides how a record is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// Elements of a `Records` array: events.
    Records,
    /// Elements of lookup-events `Events`: objects whose `CloudTrailEvent` is an event as a JSON string.
    LookupEvents,
    /// Elements of a CloudWatch Logs `logEvents`: objects whose `message` is an event as a JSON string.
    LogEvents,
    /// Elements of a top-level JSON array: events or envelopes.
    Array,
    /// A top-level value: one event, one envelope, or one line of NDJSON.
    TopLevel,
}

/// Where a record is in its file, for reject lines and error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locator {
    /// 1-based line of the record's first byte.
    pub line: u64,
    /// 0-based index of the record in its container (for top-level values, among top-level values).
    pub index: u64,
}

impl std::fmt::Display for Locator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}, record {}", self.line, self.index + 1)
    }
}

/// One thing found in the stream.
#[derive(Debug)]
pub enum Item<'a> {
    Record {
        bytes: &'a [u8],
        container: Container,
        at: Locator,
    },
    /// A top-level line that is not JSON (in a file of several top-level values), kept whole.
    BadLine {
        bytes: &'a [u8],
        reason: String,
        at: Locator,
    },
    /// A record above the size cap: only its beginning is kept.
    TooLarge {
        head: Vec<u8>,
        size: u64,
        at: Locator,
    },
}

/// A file-level failure: the stream cannot be read as JSON at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanError {
    pub reason: String,
    /// Whether the reader failed (bad gzip, limit hit) rather than the JSON.
    pub io: bool,
}

const HEAD_KEEP: usize = 4096;

/// Largest read buffer a thread keeps for its next stream; one grown for a huge record goes back to the system.
const KEEP_BUFFER: usize = 4 << 20;

thread_local! {
    /// The read buffer of this thread's last stream, zeroed already. A new megabyte for every file, zeroed and
    /// faulted in, was 4% of a convert of small delivery files.
    static SPARE_BUFFER: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

pub struct Scanner<R> {
    reader: R,
    buf: Vec<u8>,
    /// First byte not yet handed out.
    pos: usize,
    /// End of the valid bytes in `buf`.
    end: usize,
    eof: bool,
    chunk: usize,
    max_record: usize,
    /// Line number at `buf[0]`, and the offset up to which newlines were counted.
    line_base: u64,
    counted: usize,
    state: State,
    top_index: u64,
    top_values: u64,
    bad_lines: u64,
    started: bool,
}

impl<R> Drop for Scanner<R> {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if buf.len() <= KEEP_BUFFER {
            // Only while the thread lives: a scanner dropped as the thread ends has nowhere to leave it.
            let _ = SPARE_BUFFER.try_with(|spare| spare.set(buf));
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Top,
    /// Inside a streamed array; `member` when the array is a member of a top-level object.
    Array {
        container: Container,
        first: bool,
        index: u64,
        member: bool,
    },
    /// Inside a top-level object after its streamed array: remaining members are skipped.
    ObjectRest,
    Done,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Result of looking for the end of a value in the buffered bytes.
enum End {
    At(usize),
    NeedMore,
    Bad(&'static str),
}

/// Finds the end of the JSON value starting at `b[i]` (not validating its inside, which serde_json does later).
fn value_end(b: &[u8], i: usize) -> End {
    let Some(&first) = b.get(i) else { return End::NeedMore };
    match first {
        b'"' => match string_end(b, i + 1) {
            Ok(Some(e)) => End::At(e),
            Ok(None) => End::NeedMore,
            Err(()) => End::Bad("a line break inside a string"),
        },
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => match string_end(b, j + 1) {
                        Ok(Some(e)) => {
                            j = e;
                            continue;
                        }
                        Ok(None) => return End::NeedMore,
                        Err(()) => return End::Bad("a line break inside a string"),
                    },
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return End::At(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            End::NeedMore
        }
        b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {
            let mut j = i;
            while j < b.len() {
                if matches!(b[j], b',' | b']' | b'}') || is_ws(b[j]) {
                    return End::At(j);
                }
                j += 1;
            }
            End::NeedMore
        }
        _ => End::Bad("expected a JSON value"),
    }
}

/// Index after the closing quote of a string whose content starts at `i`: `Ok(None)` when the buffer ends first,
/// `Err` at a raw line break, which JSON does not allow in a string (and which tells a broken line of NDJSON).
fn string_end(b: &[u8], mut i: usize) -> Result<Option<usize>, ()> {
    loop {
        let Some(k) = memchr::memchr3(b'"', b'\\', b'\n', &b[i..]) else { return Ok(None) };
        match b[i + k] {
            b'"' => return Ok(Some(i + k + 1)),
            b'\n' => return Err(()),
            _ => {
                // Skip the escaped byte; a \u escape's hex digits hold no quote or backslash.
                i += k + 2;
                if i > b.len() {
                    return Ok(None);
                }
            }
        }
    }
}

/// Why a top-level object could not be read, and where.
struct Broken {
    what: &'static str,
    /// Offset (relative to the object's start) at which the problem was seen.
    at: usize,
}

impl<R: Read> Scanner<R> {
    pub fn new(reader: R, max_record: usize) -> Self {
        Scanner {
            reader,
            buf: SPARE_BUFFER.with(std::cell::Cell::take),
            pos: 0,
            end: 0,
            eof: false,
            chunk: 1 << 20,
            max_record,
            line_base: 1,
            counted: 0,
            state: State::Top,
            top_index: 0,
            top_values: 0,
            bad_lines: 0,
            started: false,
        }
    }

    /// Number of top-level values, and how many of them were bad lines.
    pub fn top_level_counts(&self) -> (u64, u64) {
        (self.top_values, self.bad_lines)
    }

    fn syntax(&self, what: &str, at: usize) -> ScanError {
        let line = self.line_at(at);
        ScanError { reason: format!("invalid JSON at line {line}: {what}"), io: false }
    }

    /// Line number of buffer offset `at`.
    fn line_at(&self, at: usize) -> u64 {
        let at = at.min(self.end);
        if at < self.counted {
            return self.line_base;
        }
        self.line_base + memchr::memchr_iter(b'\n', &self.buf[self.counted..at]).count() as u64
    }

    /// Moves the line count forward to buffer offset `at`.
    fn count_to(&mut self, at: usize) {
        if at > self.counted {
            self.line_base += memchr::memchr_iter(b'\n', &self.buf[self.counted..at]).count() as u64;
            self.counted = at;
        }
    }

    /// Reads more input, keeping the bytes from `pos` on (they move to the front of the buffer). Returns false at
    /// the end of input.
    fn fill(&mut self) -> Result<bool, ScanError> {
        if self.eof {
            return Ok(false);
        }
        if self.pos > 0 {
            self.count_to(self.pos);
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.counted -= self.pos;
            self.pos = 0;
        }
        // Grow geometrically, so that a long record is rescanned only a logarithmic number of times.
        if self.buf.len() - self.end < self.chunk {
            let len = (self.buf.len() * 2).max(self.end + self.chunk);
            self.buf.resize(len, 0);
        }
        loop {
            match self.reader.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ScanError { reason: e.to_string(), io: true }),
            }
        }
    }

    /// Skips whitespace from `pos`; the next byte, or `None` at the end of input.
    fn next_non_ws(&mut self) -> Result<Option<u8>, ScanError> {
        loop {
            while self.pos < self.end {
                let b = self.buf[self.pos];
                if !is_ws(b) {
                    return Ok(Some(b));
                }
                self.pos += 1;
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    /// Finds the end of the value at `pos`, reading more as needed. A value that grows past the record cap is
    /// skipped as it streams by, and comes back as `Err((head, size))`.
    fn complete_value(&mut self) -> Result<Result<usize, (Vec<u8>, u64)>, ScanError> {
        loop {
            match value_end(&self.buf[..self.end], self.pos) {
                End::At(e) => return Ok(Ok(e)),
                End::Bad(what) => return Err(self.syntax(what, self.pos)),
                End::NeedMore => {
                    if self.end - self.pos > self.max_record {
                        return self.skip_oversized().map(Err);
                    }
                    if !self.fill()? {
                        return Err(self.syntax("unexpected end of input", self.end));
                    }
                }
            }
        }
    }

    /// Streams past the value at `pos`, too large to hold, keeping only its head.
    fn skip_oversized(&mut self) -> Result<(Vec<u8>, u64), ScanError> {
        let head = self.buf[self.pos..self.end.min(self.pos + HEAD_KEEP)].to_vec();
        let opener = self.buf[self.pos];
        let mut depth = 0usize;
        let mut strings = json::Strings::default();
        let mut size = 0u64;
        loop {
            for i in self.pos..self.end {
                let b = self.buf[i];
                let closed = if strings.feed(b) {
                    opener == b'"' && !strings.inside()
                } else {
                    match b {
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => depth = depth.saturating_sub(1),
                        _ => {}
                    }
                    matches!(b, b'}' | b']') && depth == 0
                };
                if closed {
                    size += (i + 1 - self.pos) as u64;
                    self.pos = i + 1;
                    return Ok((head, size));
                }
            }
            size += (self.end - self.pos) as u64;
            self.pos = self.end;
            if !self.fill()? {
                return Err(self.syntax("unexpected end of input inside an oversized record", self.end));
            }
        }
    }

    /// The next record, bad line or oversized record; `Ok(None)` at the end of the stream.
    pub fn next_item(&mut self) -> Result<Option<Item<'_>>, ScanError> {
        loop {
            // Each state's step says where the item is; the item borrowing the buffer is made here, once the
            // step no longer holds `self`.
            let step = match self.state {
                State::Done => return Ok(None),
                State::Top => self.top_step()?,
                State::Array { container, first, index, member } => self.array_step(container, first, index, member)?,
                State::ObjectRest => self.object_rest_step()?,
            };
            return Ok(Some(match step {
                Found::Again => continue,
                Found::Done => return Ok(None),
                Found::Record(start, end, container, at) => self.record_or_too_large(start, end, container, at),
                Found::TooLarge(head, size, at) => Item::TooLarge { head, size, at },
                Found::BadLine(what) => return self.bad_line(what).map(Some),
            }));
        }
    }

    /// Between top-level values: the next one opens a streamed array, is a record, or is a bad line.
    fn top_step(&mut self) -> Result<Found, ScanError> {
        let Some(b) = self.next_non_ws()? else {
            self.state = State::Done;
            return Ok(Found::Done);
        };
        if !self.started {
            self.started = true;
            // A byte-order mark is not JSON, but some exporters write one.
            if self.buf[self.pos..self.end].starts_with(&[0xEF, 0xBB, 0xBF]) {
                self.pos += 3;
                return Ok(Found::Again);
            }
        }
        self.top_values += 1;
        match b {
            b'[' => {
                self.pos += 1;
                self.top_index += 1;
                self.state = State::Array { container: Container::Array, first: true, index: 0, member: false };
                Ok(Found::Again)
            }
            b'{' => Ok(match self.top_object()? {
                TopObject::Record(start, end, at) => Found::Record(start, end, Container::TopLevel, at),
                TopObject::Container => Found::Again,
                TopObject::TooLarge(head, size, at) => Found::TooLarge(head, size, at),
                TopObject::BadLine(what) => Found::BadLine(what),
            }),
            _ => {
                // A number, string or literal: valid JSON, but not an event (record processing says so); anything
                // else is a bad line.
                self.count_to(self.pos);
                let at = Locator { line: self.line_base, index: self.top_index };
                self.top_index += 1;
                if let End::At(end) = value_end(&self.buf[..self.end], self.pos)
                    && (end < self.end || self.eof)
                {
                    let start = self.pos;
                    self.pos = end;
                    return Ok(Found::Record(start, end, Container::TopLevel, at));
                }
                Ok(Found::BadLine("not a JSON value"))
            }
        }
    }

    /// Inside a streamed array: its next element, or its end.
    fn array_step(&mut self, container: Container, first: bool, index: u64, member: bool) -> Result<Found, ScanError> {
        let Some(mut b) = self.next_non_ws()? else {
            return Err(self.syntax("unexpected end of input inside an array", self.end));
        };
        if b == b']' {
            self.pos += 1;
            self.state = if member { State::ObjectRest } else { State::Top };
            return Ok(Found::Again);
        }
        if !first {
            if b != b',' {
                return Err(self.syntax("expected ',' or ']' after an array element", self.pos));
            }
            self.pos += 1;
            match self.next_non_ws()? {
                Some(next) => b = next,
                None => return Err(self.syntax("unexpected end of input inside an array", self.end)),
            }
        }
        if b == b']' {
            return Err(self.syntax("trailing ',' in an array", self.pos));
        }
        self.state = State::Array { container, first: false, index: index + 1, member };
        self.count_to(self.pos);
        let at = Locator { line: self.line_base, index };
        Ok(match self.complete_value()? {
            Ok(end) => {
                let start = self.pos;
                self.pos = end;
                Found::Record(start, end, container, at)
            }
            Err((head, size)) => Found::TooLarge(head, size, at),
        })
    }

    /// After a streamed array: the envelope's other members hold no events, but a second record array does.
    fn object_rest_step(&mut self) -> Result<Found, ScanError> {
        match self.next_non_ws()? {
            Some(b'}') => {
                self.pos += 1;
                self.state = State::Top;
            }
            Some(b',') => {
                self.pos += 1;
                // A second record array (`{"Records":[…],"Records":[…]}`, or `Records` then `Events`) is streamed
                // like the first: its events are not dropped with the envelope's other members.
                if let Some(container) = self.skip_member()? {
                    self.state = State::Array { container, first: true, index: 0, member: true };
                }
            }
            Some(_) => return Err(self.syntax("expected ',' or '}' after a member", self.pos)),
            None => return Err(self.syntax("unexpected end of input inside an object", self.end)),
        }
        Ok(Found::Again)
    }

    /// A complete record in the buffer, or, above the size cap, only its head: the cap holds whether or not the
    /// record happened to fit in one read.
    fn record_or_too_large(&self, start: usize, end: usize, container: Container, at: Locator) -> Item<'_> {
        if end - start > self.max_record {
            let head = self.buf[start..start + HEAD_KEEP.min(end - start)].to_vec();
            return Item::TooLarge { head, size: (end - start) as u64, at };
        }
        Item::Record { bytes: &self.buf[start..end], container, at }
    }

    /// Skips one `"key": value` member at `pos`; a member that is a record array is not skipped but entered, and
    /// its container returned (`pos` is then inside the array).
    fn skip_member(&mut self) -> Result<Option<Container>, ScanError> {
        match self.next_non_ws()? {
            Some(b'"') => {}
            Some(_) => return Err(self.syntax("expected a key", self.pos)),
            None => return Err(self.syntax("unexpected end of input inside an object", self.end)),
        }
        let mut container = None;
        if let Ok(end) = self.complete_value()? {
            container = container_key(&self.buf[self.pos + 1..end - 1]);
            self.pos = end;
        }
        match self.next_non_ws()? {
            Some(b':') => self.pos += 1,
            _ => return Err(self.syntax("expected ':' after a key", self.pos)),
        }
        if let Some(container) = container
            && self.next_non_ws()? == Some(b'[')
        {
            self.pos += 1;
            return Ok(Some(container));
        }
        if self.next_non_ws()?.is_none() {
            return Err(self.syntax("unexpected end of input inside an object", self.end));
        }
        if let Ok(end) = self.complete_value()? {
            self.pos = end;
        }
        Ok(None)
    }

    /// Reads more while holding the object that starts at `start`. Returns the object's new start, and whether
    /// more input came.
    fn more_for(&mut self, start: usize) -> Result<(usize, bool), ScanError> {
        self.pos = start;
        let more = self.fill()?;
        // The object moved to the front of the buffer whether or not more came: its start is `pos` either way.
        Ok((self.pos, more))
    }

    /// A top-level object at `pos`: a container whose record array is then streamed, or one record. The object is
    /// held whole until a record array is found, which CloudTrail writes first.
    fn top_object(&mut self) -> Result<TopObject, ScanError> {
        let mut start = self.pos;
        self.count_to(start);
        let at = Locator { line: self.line_base, index: self.top_index };
        self.top_index += 1;
        // Offsets below are relative to `start`, which moves when the buffer is refilled.
        let mut rel = 1usize;
        let mut expect_member = true;
        let mut members = 0usize;
        loop {
            let step = self.object_step(start, rel, expect_member, members);
            match step {
                Step::NeedMore => {
                    if self.end - start > self.max_record {
                        self.pos = start;
                        let (head, size) = self.skip_oversized()?;
                        return Ok(TopObject::TooLarge(head, size, at));
                    }
                    let (moved, more) = self.more_for(start)?;
                    start = moved;
                    if !more {
                        return self
                            .broken_top(start, Broken { what: "unexpected end of input", at: self.end - start });
                    }
                }
                Step::Broken(b) => return self.broken_top(start, b),
                Step::End(e) => {
                    self.pos = start + e;
                    return Ok(TopObject::Record(start, start + e, at));
                }
                Step::Comma(next) => {
                    rel = next;
                    expect_member = true;
                }
                Step::Member { key_start, key_end, value_start, value_end } => {
                    members += 1;
                    let container = container_key(&self.buf[start + key_start..start + key_end]);
                    if let (Some(container), b'[') = (container, self.buf[start + value_start]) {
                        self.pos = start + value_start + 1;
                        self.state = State::Array { container, first: true, index: 0, member: true };
                        return Ok(TopObject::Container);
                    }
                    rel = value_end;
                    expect_member = false;
                }
            }
        }
    }

    /// One step of the member pre-scan, at `rel` bytes into the object at `start`.
    fn object_step(&self, start: usize, rel: usize, expect_member: bool, members: usize) -> Step {
        let b = &self.buf[start..self.end];
        let mut i = rel;
        while i < b.len() && is_ws(b[i]) {
            i += 1;
        }
        let Some(&c) = b.get(i) else { return Step::NeedMore };
        match c {
            b'}' if !expect_member || members == 0 => Step::End(i + 1),
            b',' if !expect_member => Step::Comma(i + 1),
            b'"' if expect_member => {
                let key_end = match string_end(b, i + 1) {
                    Ok(Some(e)) => e,
                    Ok(None) => return Step::NeedMore,
                    Err(()) => return Step::Broken(Broken { what: "a line break inside a key", at: i }),
                };
                let mut j = key_end;
                while j < b.len() && is_ws(b[j]) {
                    j += 1;
                }
                match b.get(j) {
                    None => return Step::NeedMore,
                    Some(b':') => j += 1,
                    Some(_) => return Step::Broken(Broken { what: "expected ':' after a key", at: j }),
                }
                while j < b.len() && is_ws(b[j]) {
                    j += 1;
                }
                if j >= b.len() {
                    return Step::NeedMore;
                }
                // A record array is streamed from its start, not held whole.
                if b[j] == b'[' && container_key(&b[i + 1..key_end - 1]).is_some() {
                    return Step::Member { key_start: i + 1, key_end: key_end - 1, value_start: j, value_end: j };
                }
                match value_end(b, j) {
                    End::At(e) => Step::Member { key_start: i + 1, key_end: key_end - 1, value_start: j, value_end: e },
                    End::NeedMore => Step::NeedMore,
                    End::Bad(what) => Step::Broken(Broken { what, at: j }),
                }
            }
            _ => Step::Broken(Broken {
                what: if expect_member { "expected a key" } else { "expected ',' or '}' after a member" },
                at: i,
            }),
        }
    }

    /// A top-level object that is not valid JSON. On a line of its own it is a bad line (a record-level problem
    /// in a file of one value per line); a broken document over several lines fails the file.
    fn broken_top(&mut self, start: usize, broken: Broken) -> Result<TopObject, ScanError> {
        let upto = (start + broken.at).min(self.end);
        if memchr::memchr(b'\n', &self.buf[start..upto]).is_none() {
            self.pos = start;
            Ok(TopObject::BadLine(broken.what))
        } else {
            Err(self.syntax(broken.what, upto))
        }
    }

    /// Hands out the line at `pos` as a bad line and moves past it.
    fn bad_line(&mut self, what: &str) -> Result<Item<'_>, ScanError> {
        self.count_to(self.pos);
        let at = Locator { line: self.line_base, index: self.top_index.saturating_sub(1) };
        self.bad_lines += 1;
        let reason = format!("not valid JSON: {what}");
        let mut start = self.pos;
        let mut scanned = 0usize;
        loop {
            if let Some(k) = memchr::memchr(b'\n', &self.buf[start + scanned..self.end]) {
                let end = start + scanned + k;
                self.pos = end + 1;
                return Ok(Item::BadLine { bytes: trim_cr(&self.buf[start..end]), reason, at });
            }
            scanned = self.end - start;
            if scanned > self.max_record {
                let head = self.buf[start..start + HEAD_KEEP].to_vec();
                let mut size = scanned as u64;
                self.pos = self.end;
                while self.fill()? {
                    match memchr::memchr(b'\n', &self.buf[self.pos..self.end]) {
                        Some(k) => {
                            size += k as u64;
                            self.pos += k + 1;
                            return Ok(Item::TooLarge { head, size, at });
                        }
                        None => {
                            size += (self.end - self.pos) as u64;
                            self.pos = self.end;
                        }
                    }
                }
                return Ok(Item::TooLarge { head, size, at });
            }
            self.pos = start;
            if !self.fill()? {
                let (s, e) = (self.pos, self.end);
                self.pos = e;
                return Ok(Item::BadLine { bytes: trim_cr(&self.buf[s..e]), reason, at });
            }
            start = self.pos;
        }
    }
}

/// The members of a top-level object whose array holds records.
fn container_key(key: &[u8]) -> Option<Container> {
    match key {
        b"Records" => Some(Container::Records),
        b"Events" => Some(Container::LookupEvents),
        b"logEvents" => Some(Container::LogEvents),
        _ => None,
    }
}

fn trim_cr(b: &[u8]) -> &[u8] {
    b.strip_suffix(b"\r").unwrap_or(b)
}

enum Step {
    NeedMore,
    Broken(Broken),
    End(usize),
    Comma(usize),
    Member { key_start: usize, key_end: usize, value_start: usize, value_end: usize },
}

/// What one step of the scanner found: where an item is, without borrowing the buffer.
enum Found {
    /// Nothing to hand out yet: step again.
    Again,
    Done,
    /// A value at `buf[start..end]`.
    Record(usize, usize, Container, Locator),
    TooLarge(Vec<u8>, u64, Locator),
    BadLine(&'static str),
}

enum TopObject {
    Record(usize, usize, Locator),
    Container,
    TooLarge(Vec<u8>, u64, Locator),
    BadLine(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The records of a document, as (container, text), and the bad lines and oversized records as text.
    fn scan(input: &str) -> Result<Vec<(Container, String)>, ScanError> {
        let mut sc = Scanner::new(input.as_bytes(), 1 << 10);
        let mut out = Vec::new();
        while let Some(item) = sc.next_item()? {
            match item {
                Item::Record { bytes, container, .. } => {
                    out.push((container, String::from_utf8_lossy(bytes).into_owned()))
                }
                Item::BadLine { bytes, .. } => {
                    out.push((Container::TopLevel, format!("bad:{}", String::from_utf8_lossy(bytes))))
                }
                Item::TooLarge { size, .. } => out.push((Container::TopLevel, format!("large:{size}"))),
            }
        }
        Ok(out)
    }

    fn texts(input: &str) -> Vec<String> {
        scan(input).unwrap().into_iter().map(|(_, t)| t).collect()
    }

    #[test]
    fn every_record_array_of_a_document_is_read() {
        assert_eq!(texts(r#"{"Records":[{"a":1}],"Records":[{"a":2}]}"#), ["{\"a\":1}", "{\"a\":2}"]);
        let got = scan(r#"{"Records":[{"a":1}], "x": {"Records":[9]}, "Events":[{"CloudTrailEvent":"{}"}]}"#).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, Container::Records);
        assert_eq!(got[1].0, Container::LookupEvents);
        // A member named like a container that is not an array is skipped, not entered.
        assert_eq!(texts(r#"{"Records":[{"a":1}],"Events":"none"}"#), ["{\"a\":1}"]);
    }

    #[test]
    fn shapes_of_input() {
        assert_eq!(texts("[{\"a\":1},{\"b\":2}]"), ["{\"a\":1}", "{\"b\":2}"]);
        assert_eq!(texts("{\"a\":1}\n{\"b\":2}\n"), ["{\"a\":1}", "{\"b\":2}"]);
        assert_eq!(texts("{\"a\":1}\ngarbage line\n"), ["{\"a\":1}", "bad:garbage line"]);
        assert_eq!(texts("\u{feff}{\"a\":1}"), ["{\"a\":1}"]);
        assert_eq!(texts(r#"{"k":"a \" } ] [ {"}"#), [r#"{"k":"a \" } ] [ {"}"#]);
    }

    #[test]
    fn oversized_records_are_skipped_whole() {
        let big = format!("[{{\"a\":\"{}\"}},{{\"b\":1}}]", "x".repeat(5000));
        let got = texts(&big);
        assert_eq!(got.len(), 2);
        assert!(got[0].starts_with("large:"), "{got:?}");
        assert_eq!(got[1], "{\"b\":1}");
    }

    /// Issue 10, item 14: the head kept of an oversized record is that record's own first bytes, never those of
    /// the records before it in the buffer, in every shape and whether or not the record outgrows the buffer.
    #[test]
    fn the_head_of_an_oversized_record_is_its_own() {
        let small = |i: usize| format!("{{\"id\":\"small-{i}\",\"pad\":\"{}\"}}", "s".repeat(700));
        for big_size in [5_000, 3 << 20] {
            let big = format!("{{\"id\":\"big\",\"pad\":\"{}\"}}", "z".repeat(big_size));
            let records: Vec<String> = (0..40).map(small).chain([big.clone(), small(99)]).collect();
            let shapes = [
                records.join("\n"),
                format!("[{}]", records.join(",")),
                format!("{{\"Records\":[{}]}}", records.join(",")),
            ];
            for doc in shapes {
                let mut sc = Scanner::new(doc.as_bytes(), 1 << 10);
                let mut heads = Vec::new();
                let mut after = 0;
                while let Some(item) = sc.next_item().unwrap() {
                    match item {
                        Item::TooLarge { head, size, .. } => heads.push((head, size)),
                        Item::Record { .. } if !heads.is_empty() => after += 1,
                        _ => {}
                    }
                }
                assert_eq!(heads.len(), 1, "{big_size}: {}", &doc[..20]);
                let (head, size) = &heads[0];
                assert!(head.starts_with(b"{\"id\":\"big\",\"pad\":\"zzz"), "{big_size}: {}", &doc[..20]);
                assert_eq!(head.len(), HEAD_KEEP);
                assert_eq!(*size, big.len() as u64);
                assert_eq!(after, 1, "the record after the oversized one is read");
            }
        }
    }

    #[test]
    fn an_object_cut_short_after_a_refill_is_a_broken_line_not_a_panic() {
        // A top-level object that needs a second read and then ends: the object moved to the buffer's front.
        let text = format!("{{\"a\": \"{}", "y".repeat(3 << 20));
        let mut sc = Scanner::new(text.as_bytes(), 16 << 20);
        match sc.next_item() {
            Ok(Some(Item::BadLine { .. })) | Err(_) => {}
            other => panic!("{:?}", other.map(|o| o.is_some())),
        }
    }

    #[test]
    fn broken_documents_fail_the_file() {
        assert!(scan("{\"Records\":[{\"a\":1},").is_err());
        assert!(scan("{\"Records\":[{\"a\":1}]\n,\n\"x\" 1}").is_err());
        assert!(scan("[{\"a\":1}}").is_err());
    }
}
