//! Printing query results: one printer for `query`, `run` and the REPL, writing to any `io::Write`.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::Write;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::json::writer::{EncoderOptions, make_encoder};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::error::{Error, Result};

/// Output formats. Table cuts long cells; the others keep every value whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Tsv,
    Json,
    Ndjson,
    /// A Parquet file (needs an output file).
    Parquet,
}

impl std::str::FromStr for Format {
    type Err = Error;
    fn from_str(s: &str) -> Result<Format> {
        <Format as clap::ValueEnum>::from_str(s, true)
            .map_err(|_| Error::Usage(format!("unknown format {s:?}: table, csv, tsv, json, ndjson or parquet")))
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = clap::ValueEnum::to_possible_value(self).expect("no skipped variants");
        f.write_str(name.get_name())
    }
}

/// How results are printed.
#[derive(Debug, Clone)]
pub struct PrintOptions {
    pub format: Format,
    /// Rows shown in table mode; the rest are counted.
    pub maxrows: Option<usize>,
    /// Characters of a table cell before it is cut with `…`.
    pub max_cell_width: usize,
    /// One field per line (table mode).
    pub expanded: bool,
}

impl Default for PrintOptions {
    fn default() -> Self {
        PrintOptions { format: Format::Table, maxrows: Some(1000), max_cell_width: 60, expanded: false }
    }
}

fn format_options() -> FormatOptions<'static> {
    FormatOptions::default().with_null("NULL")
}

fn is_nested(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Struct(_)
            | DataType::List(_)
            | DataType::LargeList(_)
            | DataType::FixedSizeList(..)
            | DataType::Map(..)
    )
}

/// A nested column as JSON text, so that CSV and tables show `{"type":"Root",…}`.
fn nested_to_json(field: &Field, array: &ArrayRef) -> Result<ArrayRef> {
    let field = Arc::new(field.clone());
    let options = EncoderOptions::default();
    let mut encoder = make_encoder(&field, array.as_ref(), &options)?;
    let mut out = StringBuilder::new();
    let mut buf = Vec::new();
    for i in 0..array.len() {
        if encoder.is_null(i) {
            out.append_null();
        } else {
            buf.clear();
            encoder.encode(i, &mut buf);
            out.append_value(String::from_utf8_lossy(&buf));
        }
    }
    Ok(Arc::new(out.finish()))
}

/// The batch with nested columns turned into JSON text.
pub fn flatten(batch: &RecordBatch) -> Result<RecordBatch> {
    if !batch.schema().fields().iter().any(|f| is_nested(f.data_type())) {
        return Ok(batch.clone());
    }
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        if is_nested(f.data_type()) {
            fields.push(Field::new(f.name(), DataType::Utf8, true));
            columns.push(nested_to_json(f, c)?);
        } else {
            fields.push(f.as_ref().clone());
            columns.push(c.clone());
        }
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}

/// A value as the terminal may show it. Anyone who can make one AWS API call writes strings into these logs, so a
/// control character (ESC starts sequences that retitle, clear or rewrite the analyst's screen), a C1 control or a
/// bidirectional override is shown escaped (`\u{1b}`), never sent raw. Line breaks and tabs become spaces.
pub fn terminal_safe(s: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| {
        c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' | '\r' | '\t' => out.push(' '),
            c if unsafe_char(c) => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// [`terminal_safe`] line by line, the line breaks kept: for messages (an error can quote a file name, a rule's
/// title or an event's value).
pub fn terminal_safe_lines(s: &str) -> String {
    s.split('\n').map(terminal_safe).collect::<Vec<_>>().join("\n")
}

fn cut(s: &str, width: usize) -> String {
    let one_line = terminal_safe(s);
    if one_line.chars().count() <= width {
        return one_line.into_owned();
    }
    let mut out: String = one_line.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Cells of a batch as text, nested values as JSON.
fn cells(batch: &RecordBatch) -> Result<Vec<Vec<String>>> {
    let flat = flatten(batch)?;
    let opts = format_options();
    let formatters: Vec<ArrayFormatter> =
        flat.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &opts)).collect::<Result<_, _>>()?;
    Ok((0..flat.num_rows()).map(|r| formatters.iter().map(|f| f.value(r).to_string()).collect()).collect())
}

/// Prints a result whole. Returns the number of rows it had.
pub fn print_batches(
    out: &mut dyn Write,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    opts: &PrintOptions,
) -> Result<usize> {
    let mut printer = Printer::new(out, schema, opts)?;
    for b in batches {
        printer.write(b)?;
    }
    printer.finish()
}

/// Prints a result as its batches arrive, so that a large one neither waits for its end nor is held in memory.
/// Only a table keeps rows, at most `maxrows` of them, for its column widths.
pub async fn print_stream(
    out: &mut dyn Write,
    schema: &SchemaRef,
    mut batches: impl futures::Stream<Item = Result<RecordBatch>> + Unpin,
    opts: &PrintOptions,
) -> Result<usize> {
    use futures::StreamExt;
    let mut printer = Printer::new(out, schema, opts)?;
    while let Some(b) = batches.next().await {
        printer.write(&b?)?;
    }
    printer.finish()
}

/// A result being printed in one format.
pub struct Printer<'a> {
    schema: SchemaRef,
    opts: &'a PrintOptions,
    rows: usize,
    sink: Sink<'a>,
}

enum Sink<'a> {
    Table {
        out: &'a mut dyn Write,
        shown: Vec<Vec<String>>,
    },
    /// Batches are encoded on threads of their own, `at_once` at most, and written in their order.
    Csv {
        out: &'a mut dyn Write,
        delimiter: u8,
        encoding: VecDeque<Encoding>,
        at_once: usize,
    },
    Json(datafusion::arrow::json::ArrayWriter<&'a mut dyn Write>),
    Ndjson(datafusion::arrow::json::LineDelimitedWriter<&'a mut dyn Write>),
    /// The writer's buffer goes out after each batch: it holds no more than the row group being encoded.
    Parquet {
        out: &'a mut dyn Write,
        w: Box<datafusion::parquet::arrow::ArrowWriter<Vec<u8>>>,
    },
}

fn io_err(e: std::io::Error) -> Error {
    Error::io("output", e)
}

/// A batch as CSV, its header first if asked.
fn csv(batch: &RecordBatch, delimiter: u8, header: bool) -> Result<Vec<u8>> {
    let mut w =
        datafusion::arrow::csv::WriterBuilder::new().with_header(header).with_delimiter(delimiter).build(Vec::new());
    w.write(&flatten(batch)?)?;
    Ok(w.into_inner())
}

/// A batch's CSV: encoded on the printer's thread (a small batch, not worth a thread of its own), or on its own.
enum Encoding {
    Done(Result<Vec<u8>>),
    Running(std::thread::JoinHandle<Result<Vec<u8>>>),
}

/// Below this many rows a batch is encoded on the printer's thread: starting a thread costs about as much as
/// encoding a few hundred rows, and a query over a lake of small files can give a batch per file.
const THREAD_ROWS: usize = 4096;

/// Writes the encoding of a batch, once it is done.
fn written(out: &mut dyn Write, batch: Encoding) -> Result<()> {
    let bytes = match batch {
        Encoding::Done(bytes) => bytes?,
        Encoding::Running(thread) => thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))?,
    };
    out.write_all(&bytes).map_err(io_err)
}

impl<'a> Printer<'a> {
    pub fn new(out: &'a mut dyn Write, schema: &SchemaRef, opts: &'a PrintOptions) -> Result<Printer<'a>> {
        let sink = match opts.format {
            Format::Table => Sink::Table { out, shown: Vec::new() },
            Format::Csv | Format::Tsv => {
                let delimiter = if opts.format == Format::Csv { b',' } else { b'\t' };
                // One batch encoded per core: encoding was a sixteenth of a Sigma directory's run on the narrow
                // benchmark lake (97,807 rows), all of it on one core after the query's end.
                let at_once = std::thread::available_parallelism().map_or(1, |n| n.get());
                Sink::Csv { out, delimiter, encoding: VecDeque::new(), at_once }
            }
            Format::Json => Sink::Json(datafusion::arrow::json::ArrayWriter::new(out)),
            Format::Ndjson => Sink::Ndjson(datafusion::arrow::json::LineDelimitedWriter::new(out)),
            Format::Parquet => Sink::Parquet {
                out,
                w: Box::new(datafusion::parquet::arrow::ArrowWriter::try_new(Vec::new(), schema.clone(), None)?),
            },
        };
        Ok(Printer { schema: schema.clone(), opts, rows: 0, sink })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        // An empty batch (a filter that kept nothing of it) prints nothing.
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.rows += batch.num_rows();
        match &mut self.sink {
            Sink::Table { shown, .. } => {
                let room = self.opts.maxrows.unwrap_or(usize::MAX).saturating_sub(shown.len());
                if room > 0 {
                    shown.extend(cells(&batch.slice(0, room.min(batch.num_rows())))?);
                }
            }
            Sink::Csv { out, delimiter, encoding, at_once } => {
                let (delimiter, header) = (*delimiter, self.rows == batch.num_rows());
                encoding.push_back(match batch.num_rows() < THREAD_ROWS {
                    true => Encoding::Done(csv(batch, delimiter, header)),
                    false => {
                        let batch = batch.clone();
                        Encoding::Running(std::thread::spawn(move || csv(&batch, delimiter, header)))
                    }
                });
                if encoding.len() > *at_once
                    && let Some(oldest) = encoding.pop_front()
                {
                    written(out, oldest)?;
                }
            }
            Sink::Json(w) => w.write(batch)?,
            Sink::Ndjson(w) => w.write(batch)?,
            Sink::Parquet { out, w } => {
                w.write(batch)?;
                // The file writer counts the bytes it has written, not where they are: its buffer can be drained.
                out.write_all(w.inner_mut()).map_err(io_err)?;
                w.inner_mut().clear();
            }
        }
        Ok(())
    }

    /// Ends the output; returns the number of rows printed or counted.
    pub fn finish(self) -> Result<usize> {
        let Printer { schema, opts, rows, sink } = self;
        match sink {
            Sink::Table { out, shown } => print_table(out, &schema, &shown, rows, opts).map_err(io_err)?,
            Sink::Csv { out, delimiter, encoding, .. } => {
                for batch in encoding {
                    written(out, batch)?;
                }
                if rows == 0 {
                    // A header alone still tells a script what the columns are.
                    out.write_all(&csv(&RecordBatch::new_empty(schema), delimiter, true)?).map_err(io_err)?;
                }
            }
            Sink::Json(mut w) => {
                // An empty result is still a JSON document: the writer ends it as `[]`.
                w.finish()?;
                writeln!(w.into_inner()).map_err(io_err)?;
            }
            Sink::Ndjson(mut w) => w.finish()?,
            Sink::Parquet { out, w } => out.write_all(&w.into_inner()?).map_err(io_err)?,
        }
        Ok(rows)
    }
}

fn print_table(
    out: &mut dyn Write,
    schema: &SchemaRef,
    rows: &[Vec<String>],
    total: usize,
    opts: &PrintOptions,
) -> std::io::Result<()> {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    if opts.expanded {
        let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
        for (i, row) in rows.iter().enumerate() {
            writeln!(out, "-[ RECORD {} ]{}", i + 1, "-".repeat(width.saturating_sub(8).max(4)))?;
            for (name, v) in names.iter().zip(row) {
                // Expanded mode is for reading wide rows: values are shown whole.
                writeln!(out, "{name:<width$} | {}", terminal_safe(v))?;
            }
        }
    } else if !names.is_empty() {
        let mut table = comfy_table::Table::new();
        // datafusion-cli's look: a rule under the header, none between rows.
        table.load_preset("||--+-++|    ++++++");
        table.set_header(names.iter().map(|n| terminal_safe(n)));
        for row in rows {
            table.add_row(row.iter().map(|c| cut(c, opts.max_cell_width)));
        }
        writeln!(out, "{table}")?;
    }
    if total > rows.len() {
        writeln!(out, "{} more rows not shown (raise --maxrows, or \\maxrows in the REPL)", total - rows.len())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{AsArray, Int64Array, StringArray, StructArray};
    use datafusion::arrow::datatypes::Int64Type;

    fn batch() -> RecordBatch {
        let s = StructArray::from(vec![(
            Arc::new(Field::new("type", DataType::Utf8, true)),
            Arc::new(StringArray::from(vec![Some("Root"), None])) as ArrayRef,
        )]);
        RecordBatch::try_from_iter(vec![
            ("n", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
            ("who", Arc::new(s) as ArrayRef),
            ("long", Arc::new(StringArray::from(vec!["x".repeat(100), "a,b".into()])) as ArrayRef),
        ])
        .unwrap()
    }

    fn render(format: Format, maxrows: Option<usize>) -> String {
        let b = batch();
        let mut out = Vec::new();
        let opts = PrintOptions { format, maxrows, ..PrintOptions::default() };
        print_batches(&mut out, &b.schema(), &[b], &opts).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn table_cuts_long_cells_and_counts_hidden_rows() {
        let t = render(Format::Table, Some(1));
        assert!(t.contains(&format!("{}…", "x".repeat(59))), "{t}");
        assert!(t.contains(r#"{"type":"Root"}"#), "{t}");
        assert!(t.contains("1 more rows not shown"), "{t}");
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        assert_eq!(terminal_safe("plain text, ünïcode"), "plain text, ünïcode");
        assert_eq!(terminal_safe("a\x1b]0;t\x07b\x1b[2J"), "a\\u{1b}]0;t\\u{7}b\\u{1b}[2J");
        assert_eq!(terminal_safe_lines("a\x1b[2J\nb\rc"), "a\\u{1b}[2J\nb c");
        assert_eq!(terminal_safe("line\nbreak\ttab"), "line break tab");
        assert_eq!(terminal_safe("\u{9b}31m \u{202e}gnp.exe"), "\\u{9b}31m \\u{202e}gnp.exe");
        let opts = PrintOptions { expanded: true, ..PrintOptions::default() };
        let schema = Arc::new(Schema::new(vec![Field::new("ua", DataType::Utf8, true)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(datafusion::arrow::array::StringArray::from(vec!["x\x1by"]))],
        )
        .unwrap();
        for opts in [opts, PrintOptions::default()] {
            let mut out = Vec::new();
            print_batches(&mut out, &schema, std::slice::from_ref(&batch), &opts).unwrap();
            assert!(!out.contains(&0x1b), "{}", String::from_utf8_lossy(&out));
        }
    }

    #[test]
    fn csv_and_json_keep_whole_values() {
        let csv = render(Format::Csv, Some(1));
        assert!(csv.starts_with("n,who,long\n"), "{csv}");
        assert!(csv.contains(&"x".repeat(100)));
        assert!(csv.contains("\"a,b\""));
        let json: serde_json::Value = serde_json::from_str(&render(Format::Json, None)).unwrap();
        assert_eq!(json[0]["who"]["type"], "Root");
        assert_eq!(render(Format::Ndjson, None).lines().count(), 2);
        let tsv = render(Format::Tsv, None);
        assert!(tsv.starts_with("n\twho\tlong\n"));
    }

    /// Batches encoded at once are written in their order, the header once, before the first row; empty batches
    /// among them print nothing.
    #[test]
    fn csv_batches_keep_their_order() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        let batches: Vec<RecordBatch> = (0..40i64)
            .map(|b| {
                // Empty, small (encoded in place) and large (on a thread of their own) batches.
                let rows = match b % 7 {
                    3 => 0,
                    5 => THREAD_ROWS as i64 + b,
                    _ => 1 + b % 5,
                };
                let values = Int64Array::from_iter_values((0..rows).map(|r| b * 10 + r));
                RecordBatch::try_new(schema.clone(), vec![Arc::new(values)]).unwrap()
            })
            .collect();
        let want: Vec<String> =
            (batches.iter().flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec()))
                .map(|v| v.to_string())
                .collect();
        let mut out = Vec::new();
        let opts = PrintOptions { format: Format::Csv, ..PrintOptions::default() };
        assert_eq!(print_batches(&mut out, &schema, &batches, &opts).unwrap(), want.len());
        assert_eq!(String::from_utf8(out).unwrap(), format!("n\n{}\n", want.join("\n")));
    }

    /// An empty result, with or without empty batches, prints as one: one JSON document (`[][]`, two, before
    /// arrow's writer began to end an unstarted array itself), one CSV header.
    #[test]
    fn empty_batches_print_as_an_empty_result() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        let empty = RecordBatch::new_empty(schema.clone());
        for (format, want) in [(Format::Json, "[]\n"), (Format::Csv, "n\n"), (Format::Ndjson, "")] {
            let opts = PrintOptions { format, ..PrintOptions::default() };
            for batches in [vec![], vec![empty.clone(), empty.clone()]] {
                let mut out = Vec::new();
                print_batches(&mut out, &schema, &batches, &opts).unwrap();
                assert_eq!(String::from_utf8(out).unwrap(), want, "{format:?}");
            }
        }
    }
}
