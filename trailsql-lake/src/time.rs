//! Parsing of the time formats found in CloudTrail, shared by the `cloudtrail_time` function and the converter.
//!
//! Hand-written rather than a list of chrono format strings: the converter calls it for every event, and trying
//! formats one after the other costs more than the parse itself.

use std::borrow::Cow;

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};

/// Microseconds since the Unix epoch, UTC.
pub type Micros = i64;

/// Parses the time text CloudTrail writes, to microseconds since the epoch (UTC).
///
/// Accepted, with the date in years 0001 to 9999:
/// - ISO 8601 extended: `2024-10-25T20:52:11Z`, with a space for `T`, fractions of a second up to nanoseconds
///   (truncated to microseconds), and `Z`, `±HH:MM`, `±HHMM`, `±HH` or no zone (read as UTC);
/// - ISO 8601 basic: `20241025T205211Z`, with the same fractions and zones;
/// - the STS and console form `Oct 25, 2024, 9:07:11 PM` and `Oct 2, 2019 11:12:29 PM` (UTC).
///
/// Anything else is `None`.
pub fn parse_cloudtrail_time(text: &str) -> Option<Micros> {
    let s = text.trim().as_bytes();
    if s.first().is_some_and(u8::is_ascii_alphabetic) { parse_month_name_form(s) } else { parse_iso(s) }
}

/// Formats microseconds as CloudTrail writes `eventTime`: `2024-10-25T20:52:11Z`, with a fraction only when there
/// is one.
///
/// Called for every time of every event converted (to tell whether the text round-trips): written with integer
/// formatting, as chrono's strftime parses its format string on every call.
pub fn format_cloudtrail_time(micros: Micros) -> Option<String> {
    let t = DateTime::<Utc>::from_timestamp_micros(micros)?;
    Some(time_text(&t, micros, &mut [0u8; TIME_TEXT_MAX]).into_owned())
}

/// Whether `text` is exactly what [`format_cloudtrail_time`] gives for `micros`, without building that text: the
/// converter asks it for every time it reads, to know whether the column gives the text back.
pub fn is_cloudtrail_time_text(micros: Micros, text: &str) -> bool {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .is_some_and(|t| time_text(&t, micros, &mut [0u8; TIME_TEXT_MAX]) == text)
}

/// The text of [`format_cloudtrail_time`], in `buf` for the years 0 to 9999, from strftime for the others.
fn time_text<'b>(t: &DateTime<Utc>, micros: Micros, buf: &'b mut [u8; TIME_TEXT_MAX]) -> Cow<'b, str> {
    match write_time(t, buf) {
        Some(n) => Cow::Borrowed(std::str::from_utf8(&buf[..n]).expect("digits and ASCII punctuation")),
        None => Cow::Owned(t.format(strftime_form(micros)).to_string()),
    }
}

/// Length of the longest text of [`write_time`]: `2024-10-25T20:52:11.001500Z`.
const TIME_TEXT_MAX: usize = 27;

/// Writes `t` as `2024-10-25T20:52:11Z`, with `.ffffff` only when it has a fraction, and returns the length; `None`
/// for a year outside 0 to 9999, which strftime writes.
fn write_time(t: &DateTime<Utc>, out: &mut [u8; TIME_TEXT_MAX]) -> Option<usize> {
    let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
    let (date, time) = (t.date_naive(), t.time());
    let mut at = 0;
    let mut put = |value: u32, width: usize, then: Option<u8>| {
        let mut v = value;
        for i in (0..width).rev() {
            out[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        at += width;
        if let Some(c) = then {
            out[at] = c;
            at += 1;
        }
        at
    };
    put(year, 4, Some(b'-'));
    put(date.month(), 2, Some(b'-'));
    put(date.day(), 2, Some(b'T'));
    put(time.hour(), 2, Some(b':'));
    put(time.minute(), 2, Some(b':'));
    let fraction = time.nanosecond() / 1000;
    if fraction == 0 {
        Some(put(time.second(), 2, Some(b'Z')))
    } else {
        put(time.second(), 2, Some(b'.'));
        Some(put(fraction, 6, Some(b'Z')))
    }
}

/// The strftime format of [`format_cloudtrail_time`].
fn strftime_form(micros: Micros) -> &'static str {
    if micros % 1_000_000 == 0 { "%Y-%m-%dT%H:%M:%SZ" } else { "%Y-%m-%dT%H:%M:%S%.6fZ" }
}

/// Days since the epoch of the UTC date of a time.
pub fn utc_day(micros: Micros) -> Option<i32> {
    DateTime::<Utc>::from_timestamp_micros(micros)?;
    i32::try_from(micros.div_euclid(86_400_000_000)).ok()
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    /// Exactly `n` ASCII digits.
    fn digits(&mut self, n: usize) -> Option<u32> {
        let end = self.i.checked_add(n)?;
        let part = self.s.get(self.i..end)?;
        let mut v = 0u32;
        for &b in part {
            if !b.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u32::from(b - b'0');
        }
        self.i = end;
        Some(v)
    }
    /// One to `max` ASCII digits.
    fn some_digits(&mut self, max: usize) -> Option<u32> {
        let start = self.i;
        let mut v = 0u32;
        while self.i - start < max {
            match self.peek() {
                Some(b) if b.is_ascii_digit() => {
                    v = v * 10 + u32::from(b - b'0');
                    self.i += 1;
                }
                _ => break,
            }
        }
        (self.i > start).then_some(v)
    }
    fn done(&self) -> bool {
        self.i == self.s.len()
    }
}

/// A civil date and time, as read from text.
struct Civil {
    y: u32,
    mo: u32,
    d: u32,
    h: u32,
    mi: u32,
    sec: u32,
    micro: u32,
}

fn to_micros(c: Civil, offset_secs: i64) -> Option<Micros> {
    let Civil { y, mo, d, h, mi, sec, micro } = c;
    if !(1..=9999).contains(&y) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(i32::try_from(y).ok()?, mo, d)?;
    // A leap second (:60) is folded into the next second, as most SQL engines do.
    let t = date.and_hms_opt(h, mi, 0)?.and_utc().timestamp() + i64::from(sec) - offset_secs;
    t.checked_mul(1_000_000)?.checked_add(i64::from(micro))
}

fn parse_fraction(c: &mut Cursor) -> Option<u32> {
    if !(c.eat(b'.') || c.eat(b',')) {
        return Some(0);
    }
    let start = c.i;
    let mut micro = 0u32;
    while let Some(b) = c.peek().filter(u8::is_ascii_digit) {
        if c.i - start < 6 {
            micro = micro * 10 + u32::from(b - b'0');
        }
        c.i += 1;
    }
    let n = c.i - start;
    if n == 0 || n > 9 {
        return None;
    }
    for _ in n..6 {
        micro *= 10;
    }
    Some(micro)
}

fn parse_zone(c: &mut Cursor) -> Option<i64> {
    match c.peek() {
        None => Some(0),
        Some(b'Z' | b'z') => {
            c.i += 1;
            Some(0)
        }
        Some(sign @ (b'+' | b'-')) => {
            c.i += 1;
            let hh = c.digits(2)?;
            let mm = if c.done() {
                0
            } else {
                c.eat(b':');
                c.digits(2)?
            };
            if hh > 23 || mm > 59 {
                return None;
            }
            let secs = i64::from(hh * 3600 + mm * 60);
            Some(if sign == b'-' { -secs } else { secs })
        }
        Some(_) => None,
    }
}

fn parse_iso(s: &[u8]) -> Option<Micros> {
    let mut c = Cursor { s, i: 0 };
    let y = c.digits(4)?;
    let extended = c.eat(b'-');
    let mo = c.digits(2)?;
    if extended && !c.eat(b'-') {
        return None;
    }
    let d = c.digits(2)?;
    if !(c.eat(b'T') || c.eat(b't') || (extended && c.eat(b' '))) {
        return None;
    }
    let h = c.digits(2)?;
    if extended && !c.eat(b':') {
        return None;
    }
    let mi = c.digits(2)?;
    if extended && !c.eat(b':') {
        return None;
    }
    let sec = c.digits(2)?;
    let micro = parse_fraction(&mut c)?;
    let offset = parse_zone(&mut c)?;
    if !c.done() {
        return None;
    }
    to_micros(Civil { y, mo, d, h, mi, sec, micro }, offset)
}

const MONTHS: [&[u8]; 12] =
    [b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec"];

/// `Oct 25, 2024, 9:07:11 PM` (STS credential expiration) and `Oct 2, 2019 11:12:29 PM`.
fn parse_month_name_form(s: &[u8]) -> Option<Micros> {
    let mon = s.get(..3)?.to_ascii_lowercase();
    let mo = MONTHS.iter().position(|m| *m == mon.as_slice())? as u32 + 1;
    let mut c = Cursor { s, i: 3 };
    // Full month names ("October") are accepted too.
    while c.peek().is_some_and(|b| b.is_ascii_alphabetic()) {
        c.i += 1;
    }
    c.eat(b'.');
    if !c.eat(b' ') {
        return None;
    }
    let d = c.some_digits(2)?;
    if !c.eat(b',') || !c.eat(b' ') {
        return None;
    }
    let y = c.digits(4)?;
    c.eat(b',');
    if !c.eat(b' ') {
        return None;
    }
    let mut h = c.some_digits(2)?;
    if !c.eat(b':') {
        return None;
    }
    let mi = c.digits(2)?;
    if !c.eat(b':') {
        return None;
    }
    let sec = c.digits(2)?;
    let micro = parse_fraction(&mut c)?;
    if c.eat(b' ') {
        let ampm = s.get(c.i..c.i + 2)?.to_ascii_uppercase();
        c.i += 2;
        if !(1..=12).contains(&h) {
            return None;
        }
        match ampm.as_slice() {
            b"AM" => h %= 12,
            b"PM" => h = h % 12 + 12,
            _ => return None,
        }
        // A trailing " UTC" or " GMT" says what is assumed anyway.
        if c.eat(b' ') {
            let zone = s.get(c.i..)?.to_ascii_uppercase();
            if zone != b"UTC" && zone != b"GMT" {
                return None;
            }
            c.i = s.len();
        }
    }
    if !c.done() {
        return None;
    }
    to_micros(Civil { y, mo, d, h, mi, sec, micro }, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> Micros {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_micros()
    }

    #[test]
    fn accepts_the_forms_cloudtrail_writes() {
        let cases = [
            ("2024-10-25T20:52:11Z", "2024-10-25T20:52:11Z"),
            ("2024-10-25T20:52:11.123Z", "2024-10-25T20:52:11.123Z"),
            ("2024-10-25T20:52:11.123456789Z", "2024-10-25T20:52:11.123456Z"),
            ("2024-10-25 20:52:11", "2024-10-25T20:52:11Z"),
            ("2024-10-25 20:52:11.000000000", "2024-10-25T20:52:11Z"),
            ("2023-12-13T01:14:20+00:00", "2023-12-13T01:14:20Z"),
            ("2023-12-13T01:14:20+02:00", "2023-12-12T23:14:20Z"),
            ("2023-12-13T01:14:20-0130", "2023-12-13T02:44:20Z"),
            ("20241025T204528Z", "2024-10-25T20:45:28Z"),
            ("Oct 25, 2024, 9:07:11 PM", "2024-10-25T21:07:11Z"),
            ("Oct 2, 2019 11:12:29 PM", "2019-10-02T23:12:29Z"),
            ("Apr 16, 2024, 3:20:04 PM", "2024-04-16T15:20:04Z"),
            ("Jan 1, 2024, 12:00:00 AM", "2024-01-01T00:00:00Z"),
            ("Jan 1, 2024, 12:30:00 PM", "2024-01-01T12:30:00Z"),
            ("October 5, 2024, 1:02:03 AM UTC", "2024-10-05T01:02:03Z"),
            (" 2024-10-25T20:52:11Z ", "2024-10-25T20:52:11Z"),
        ];
        for (input, want) in cases {
            assert_eq!(parse_cloudtrail_time(input), Some(utc(want)), "{input}");
        }
    }

    #[test]
    fn rejects_what_is_not_a_time() {
        for input in [
            "",
            "yesterday",
            "2024-13-01T00:00:00Z",
            "2024-02-30T00:00:00Z",
            "2024-10-25T25:00:00Z",
            "2024-10-25",
            "2024-10-25T20:52:11Zjunk",
            "2024-10-25T20:52:11.Z",
            "0000-01-01T00:00:00Z",
            "Foo 25, 2024, 9:07:11 PM",
            "Oct 25, 2024, 13:07:11 PM",
            "Oct 25, 2024, 9:07:11 XM",
            "1.5",
        ] {
            assert_eq!(parse_cloudtrail_time(input), None, "{input:?}");
        }
    }

    #[test]
    fn formats_canonically() {
        let t = utc("2024-10-25T20:52:11Z");
        assert_eq!(format_cloudtrail_time(t).unwrap(), "2024-10-25T20:52:11Z");
        assert_eq!(format_cloudtrail_time(t + 1500).unwrap(), "2024-10-25T20:52:11.001500Z");
        for other in ["2024-10-25T20:52:11.000Z", "2024-10-25T20:52:11+00:00", "2024-10-25 20:52:11Z", ""] {
            assert!(!is_cloudtrail_time_text(t, other), "{other}");
        }
        assert_eq!(utc_day(t).unwrap(), 20021);
        assert_eq!(utc_day(utc("1970-01-02T00:00:00Z")).unwrap(), 1);
        assert_eq!(utc_day(-1), Some(-1));
        // The integer formatting says what strftime says, fractions, negative times and far years included.
        let mut m: i64 = -62_135_596_800_000_000; // 0001-01-01
        while m < 300_000_000_000_000_000 {
            for t in [m, m + 1, m + 999_999, m + 1_000_000, m - 1, -m] {
                let strftime =
                    DateTime::<Utc>::from_timestamp_micros(t).map(|d| d.format(strftime_form(t)).to_string());
                assert_eq!(format_cloudtrail_time(t), strftime, "{t}");
                let text = strftime.unwrap_or_default();
                assert!(is_cloudtrail_time_text(t, &text) || text.is_empty(), "{t} {text}");
                assert!(!is_cloudtrail_time_text(t + 1, &text), "{t} {text}");
            }
            m += 7_777_777_777_777;
        }
        assert_eq!(utc_day(utc("1969-12-31T23:59:59Z")), Some(-1));
    }
}
