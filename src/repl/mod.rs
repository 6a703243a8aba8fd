//! The interactive shell: rustyline on a terminal, plain statement-by-statement reading when stdin is piped.
//! Every statement goes through the same session and printer as `query` and `run`.

pub mod catalog;
pub mod helper;
pub mod meta;

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{Config, Editor};

use crate::error::{Error, Result};
use crate::outcome::Outcome;
use crate::print::{self, PrintOptions};
use crate::session::Session;
use catalog::Catalog;
use helper::{ReplHelper, Words};
use meta::{COMMANDS, Meta};

/// Settings of a REPL, resolved by the caller.
#[derive(Debug, Clone)]
pub struct ReplOptions {
    pub history: Option<PathBuf>,
    pub print: PrintOptions,
    pub banner: bool,
    pub queries_dirs: Vec<PathBuf>,
}

/// The default history file: in the user's data directory, never the current directory.
pub fn default_history() -> Option<PathBuf> {
    dirs::data_dir().map(|d| d.join("trailsql").join("history"))
}

struct Repl {
    session: Session,
    print: PrintOptions,
    timing: bool,
    output: Option<(PathBuf, std::fs::File)>,
    words: Arc<RwLock<Words>>,
    queries_dirs: Vec<PathBuf>,
    errors: usize,
    color: bool,
    /// How many `\i` files are being run inside one another.
    includes: usize,
}

/// How deep `\i` files may include one another: a file that includes itself stops here with an error instead of
/// overflowing the stack.
const MAX_INCLUDE_DEPTH: usize = 16;

/// Runs the REPL until `\q`, Ctrl-D or the end of piped input.
pub async fn run(session: Session, opts: ReplOptions) -> Result<Outcome> {
    let interactive = std::io::stdin().is_terminal();
    let color = interactive && std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let queries: Vec<String> =
        crate::queries::all(&opts.queries_dirs).unwrap_or_default().into_iter().map(|q| q.name).collect();
    let words = Arc::new(RwLock::new(Words { catalog: Catalog::load(&session.ctx).await, queries }));
    let mut repl = Repl {
        session,
        print: opts.print.clone(),
        timing: true,
        output: None,
        words,
        queries_dirs: opts.queries_dirs.clone(),
        errors: 0,
        color,
        includes: 0,
    };
    if !interactive {
        let mut input = Vec::new();
        std::io::stdin().read_to_end(&mut input).map_err(|e| Error::io("standard input", e))?;
        let input = crate::textfile::decode(input).map_err(|why| Error::Usage(format!("standard input: {why}")))?;
        repl.run_text(&input).await;
        return Ok(if repl.errors > 0 { Outcome::Found } else { Outcome::Success });
    }
    if opts.banner {
        repl.banner().await;
    }
    let config = Config::builder().history_ignore_dups(true)?.auto_add_history(false).max_history_size(10_000)?.build();
    let mut editor: Editor<ReplHelper, DefaultHistory> = Editor::with_config(config)?;
    editor.set_helper(Some(ReplHelper::new(repl.words.clone(), color)));
    if let Some(h) = &opts.history {
        if let Some(dir) = h.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        // A missing history file is a first run, not an error.
        let _ = editor.load_history(h);
    }
    loop {
        let line = tokio::task::block_in_place(|| editor.readline("trailsql> "));
        match line {
            Ok(entry) => {
                if entry.trim().is_empty() {
                    continue;
                }
                // Quitting is not worth recalling.
                let quit = matches!(entry.parse::<Meta>(), Ok(Meta::Quit));
                if !quit {
                    let _ = editor.add_history_entry(entry.as_str());
                }
                if let Some(h) = opts.history.as_ref().filter(|_| !quit)
                    && let Err(e) = editor.save_history(h)
                {
                    eprintln!("warning: cannot save history to {}: {e}", h.display());
                }
                if !repl.run_entry(&entry).await {
                    break;
                }
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(Error::Other(format!("reading input: {e}"))),
        }
    }
    Ok(Outcome::Success)
}

impl Repl {
    async fn banner(&self) {
        let lake = &self.session.lake;
        let mut line = format!("trailsql {} — lake {}", env!("CARGO_PKG_VERSION"), lake.location);
        match lake_summary(&lake.lake).await {
            Ok(Some(s)) => line.push_str(&format!(": {s}")),
            Ok(None) => line.push_str(&format!(": empty; fill it with {}", trailsql_lake::layout::FILL_HINT)),
            Err(e) => line.push_str(&format!(" (cannot read its manifest: {e})")),
        }
        println!("{line}");
        println!("Type SQL ending with ;  \\? for help, \\q to quit.");
    }

    /// Runs a piped script: meta-commands on their own lines, statements ended by `;`.
    async fn run_text(&mut self, text: &str) -> bool {
        let mut pending = String::new();
        for line in text.lines() {
            if pending.trim().is_empty() && line.trim_start().starts_with('\\') {
                if !self.run_entry(line).await {
                    return false;
                }
                continue;
            }
            pending.push_str(line);
            pending.push('\n');
            if crate::sqltext::is_complete(&pending) {
                let entry = std::mem::take(&mut pending);
                if !self.run_entry(&entry).await {
                    return false;
                }
            }
        }
        if !pending.trim().is_empty() {
            return self.run_entry(&pending).await;
        }
        true
    }

    /// Runs one entry; false when the REPL should end.
    async fn run_entry(&mut self, entry: &str) -> bool {
        if entry.trim_start().starts_with('\\') {
            return match entry.parse::<Meta>() {
                Ok(Meta::Quit) => false,
                Ok(meta) => {
                    if let Err(e) = self.run_meta(meta).await {
                        self.error(&e.to_string());
                    }
                    true
                }
                Err(e) => {
                    self.error(&e);
                    true
                }
            };
        }
        if let Err(shown) = helper::check_syntax(entry) {
            self.error(&shown);
            return true;
        }
        let query = crate::queries::SavedQuery::parse(entry, "statement", "input");
        self.run_query(&query, &Default::default()).await;
        true
    }

    fn error(&mut self, message: &str) {
        self.errors += 1;
        let message = crate::print::terminal_safe(message);
        let message = crate::error::redact_credentials(&message);
        if self.color {
            eprintln!("\x1b[31merror:\x1b[0m {message}");
        } else {
            eprintln!("error: {message}");
        }
    }

    /// Runs a query text (one statement, a file, a saved query); Ctrl-C cancels it. False when it was cancelled
    /// or failed, so that the rest of an entry is not run.
    async fn run_query(
        &mut self,
        query: &crate::queries::SavedQuery,
        params: &std::collections::BTreeMap<String, String>,
    ) -> bool {
        let start = Instant::now();
        let outcome = tokio::select! {
            r = self.run_statements(query, params, start) => Some(r),
            _ = tokio::signal::ctrl_c() => None,
        };
        match outcome {
            None => {
                eprintln!("cancelled after {:.3} s", start.elapsed().as_secs_f64());
                false
            }
            Some(Err(e)) => {
                let mut message = match &e {
                    Error::Query { message, .. } => message.clone(),
                    other => other.to_string(),
                };
                if let Some(hint) = crate::error::hint(&message) {
                    message = format!("{message}\n{hint}");
                }
                self.error(&message);
                false
            }
            Some(Ok(changes_catalog)) => {
                if changes_catalog {
                    self.refresh().await;
                }
                true
            }
        }
    }

    /// Runs the statements of a query text, printing each result as it comes. True when one of them may have
    /// changed the catalog (created or dropped something), so that completion learns of it.
    async fn run_statements(
        &mut self,
        query: &crate::queries::SavedQuery,
        params: &std::collections::BTreeMap<String, String>,
        start: Instant,
    ) -> Result<bool> {
        let mut changes_catalog = false;
        for stmt in crate::exec::bind(query, params)? {
            changes_catalog |= crate::sqltext::changes_catalog(&stmt.sql);
            if let Some(out) = stmt.execute(&self.session).await? {
                self.show(out, start).await?;
            }
        }
        Ok(changes_catalog)
    }

    /// Prints a result as it comes, then its row count and time.
    async fn show(&mut self, out: crate::exec::Output, start: Instant) -> Result<()> {
        let footer = |rows: usize| {
            let s = if rows == 1 { "" } else { "s" };
            if self.timing {
                format!("{rows} row{s} in {:.3} s", start.elapsed().as_secs_f64())
            } else {
                format!("{rows} row{s}")
            }
        };
        match &mut self.output {
            Some((_, file)) => {
                let rows = print::print_stream(file, &out.schema, out.batches, &self.print).await?;
                eprintln!("{}", footer(rows));
            }
            None => {
                let mut stdout = std::io::stdout();
                let rows = print::print_stream(&mut stdout, &out.schema, out.batches, &self.print).await?;
                if self.print.format == print::Format::Table {
                    writeln!(stdout, "{}", footer(rows)).map_err(|e| Error::io("standard output", e))?;
                }
            }
        }
        Ok(())
    }

    async fn refresh(&mut self) {
        let catalog = Catalog::load(&self.session.ctx).await;
        self.words.write().expect("completion words").catalog = catalog;
    }

    /// Prints a small table through the printer, as query results are.
    fn show_table(&mut self, columns: Vec<(&str, Vec<String>)>) -> Result<()> {
        let arrays: Vec<(&str, ArrayRef)> =
            columns.into_iter().map(|(n, v)| (n, Arc::new(StringArray::from(v)) as ArrayRef)).collect();
        let batch = RecordBatch::try_from_iter(arrays)?;
        let mut opts = self.print.clone();
        opts.max_cell_width = opts.max_cell_width.max(90);
        let mut stdout = std::io::stdout().lock();
        print::print_batches(&mut stdout, &batch.schema(), &[batch], &opts)?;
        Ok(())
    }

    async fn run_meta(&mut self, meta: Meta) -> Result<()> {
        match meta {
            Meta::Quit => {}
            Meta::Help => self.show_help()?,
            Meta::Describe(None) => self.list_tables()?,
            Meta::Describe(Some(name)) => self.describe(&name)?,
            Meta::Functions(pattern) => self.list_functions(pattern.as_deref())?,
            Meta::HelpFunction(name) => {
                let catalog = self.catalog();
                let f = catalog
                    .function(&name)
                    .ok_or_else(|| Error::Usage(format!("no function {name}: \\df lists them")))?;
                print!("{}", catalog::help_text(f));
            }
            Meta::Format(f) => self.print.format = f,
            Meta::Timing(on) => self.timing = on,
            Meta::MaxRows(n) => self.print.maxrows = n,
            Meta::Expanded(v) => self.print.expanded = v.unwrap_or(!self.print.expanded),
            Meta::Sigma { path, since, until, accounts } => {
                let set = crate::sigma::load(&[path], None, crate::sigma::Scope::new(since, until, accounts)?)?;
                let sql = crate::sigma::query(&set);
                self.run_query(&crate::queries::SavedQuery::parse(&sql, "sigma", "rules"), &Default::default()).await;
                eprint!("{}", crate::sigma::summary(&set, None));
            }
            Meta::Include(path) => self.include(&path).await?,
            Meta::Queries => self.list_queries()?,
            Meta::Run { name, params } => {
                let query = crate::queries::resolve(&name, &self.queries_dirs)?;
                self.run_query(&query, &params.into_iter().collect()).await;
            }
            Meta::Output(None) => {
                if let Some((path, _)) = self.output.take() {
                    eprintln!("results go to the screen again ({} written)", path.display());
                }
            }
            Meta::Output(Some(path)) => {
                let file = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
                eprintln!("results go to {}", path.display());
                self.output = Some((path, file));
            }
        }
        Ok(())
    }

    fn catalog(&self) -> Catalog {
        self.words.read().expect("words").catalog.clone()
    }

    fn show_help(&mut self) -> Result<()> {
        let (names, rest): (Vec<String>, Vec<(String, String)>) =
            COMMANDS.iter().map(|(n, a, d)| (n.to_string(), (a.to_string(), d.to_string()))).unzip();
        let (args, desc): (Vec<String>, Vec<String>) = rest.into_iter().unzip();
        self.show_table(vec![("command", names), ("arguments", args), ("meaning", desc)])
    }

    fn list_tables(&mut self) -> Result<()> {
        let catalog = self.catalog();
        let names = catalog.tables.iter().map(|t| t.name.clone()).collect();
        let kinds = catalog.tables.iter().map(|t| if t.is_view { "view" } else { "table" }.to_string()).collect();
        let cols = catalog.tables.iter().map(|t| t.fields.len().to_string()).collect();
        self.show_table(vec![("name", names), ("type", kinds), ("columns", cols)])
    }

    fn describe(&mut self, name: &str) -> Result<()> {
        let catalog = self.catalog();
        let table =
            catalog.table(name).ok_or_else(|| Error::Usage(format!("no table or view {name}: \\d lists them")))?;
        let (cols, types): (Vec<String>, Vec<String>) = catalog::describe(&table.fields).into_iter().unzip();
        self.show_table(vec![("column", cols), ("type", types)])
    }

    fn list_functions(&mut self, pattern: Option<&str>) -> Result<()> {
        let catalog = self.catalog();
        let pattern = pattern.map(|p| p.to_ascii_lowercase().replace(['*', '%'], ""));
        let fs: Vec<_> = catalog
            .functions
            .iter()
            .filter(|f| pattern.as_ref().is_none_or(|p| f.name.to_ascii_lowercase().contains(p.as_str())))
            .collect();
        let names = fs.iter().map(|f| f.name.clone()).collect();
        let kinds = fs.iter().map(|f| f.kind.to_string()).collect();
        let first_line = |f: &&catalog::Function| {
            f.doc.as_ref().map(|d| d.description.lines().next().unwrap_or("").to_string()).unwrap_or_default()
        };
        let docs = fs.iter().map(first_line).collect();
        self.show_table(vec![("function", names), ("kind", kinds), ("description", docs)])
    }

    async fn include(&mut self, path: &std::path::Path) -> Result<()> {
        if self.includes >= MAX_INCLUDE_DEPTH {
            return Err(Error::Usage(format!(
                "\\i {}: files include one another more than {MAX_INCLUDE_DEPTH} deep (does one include itself?)",
                path.display()
            )));
        }
        let text = crate::textfile::read(path)?;
        self.includes += 1;
        Box::pin(self.run_text(&text)).await;
        self.includes -= 1;
        Ok(())
    }

    fn list_queries(&mut self) -> Result<()> {
        let all = crate::queries::all(&self.queries_dirs)?;
        let names = all.iter().map(|q| q.name.clone()).collect();
        let descs = all.iter().map(|q| q.description.clone()).collect();
        let params = all.iter().map(crate::queries::SavedQuery::params_summary).collect();
        self.show_table(vec![("name", names), ("description", descs), ("parameters", params)])
    }
}

/// Accounts, days and events of a lake, from its manifest and directory names: no data is read.
pub async fn lake_summary(lake: &trailsql_lake::Lake) -> Result<Option<String>> {
    let partitions = lake.partitions().await?;
    if partitions.is_empty() {
        return Ok(None);
    }
    let mut accounts: Vec<&str> = partitions.iter().map(|p| p.account.as_str()).collect();
    accounts.sort();
    accounts.dedup();
    let first = partitions.iter().map(|p| p.day).min().expect("not empty");
    let last = partitions.iter().map(|p| p.day).max().expect("not empty");
    let date = trailsql_lake::layout::day_date;
    let events: u64 = lake.commits().await?.iter().map(|(_, c)| c.totals.events).sum();
    Ok(Some(format!(
        "{} account{}, {} to {}, {} events",
        accounts.len(),
        if accounts.len() == 1 { "" } else { "s" },
        date(first),
        date(last),
        events
    )))
}
