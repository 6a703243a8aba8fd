//! Writes CloudTrail corpora in the delivery layout: `--sample DIR` the bundled sample-data, or a large corpus for
//! benchmarks (`--out DIR` with its size settings).

use std::fmt::Write;
use std::path::PathBuf;

use clap::Parser;
use trailsql_corpus::{self as corpus, CorpusSpec};

#[derive(Parser)]
struct Args {
    /// Write the sample corpus (sample-data/) here
    #[arg(long)]
    sample: Option<PathBuf>,
    /// Write a large corpus here
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, default_value_t = 8)]
    accounts: usize,
    #[arg(long, default_value_t = 3)]
    regions: usize,
    #[arg(long, default_value_t = 2)]
    days: usize,
    #[arg(long, default_value_t = 96)]
    files_per_day: usize,
    #[arg(long, default_value_t = 120)]
    events_per_file: usize,
    #[arg(long, default_value_t = 3)]
    sessions_per_day: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the generator's record of the privileged sessions here, as CSV (assume_root_event_id,
    /// action_event_id): what `privileged_sessions` must give on the corpus
    #[arg(long)]
    sessions_csv: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(dir) = &args.sample {
        let files = corpus::write_sample(dir)?;
        println!("wrote {files} files to {}", dir.display());
    }
    if let Some(dir) = &args.out {
        let spec = CorpusSpec {
            accounts: args.accounts,
            regions: args.regions,
            days: args.days,
            files_per_day: args.files_per_day,
            events_per_file: args.events_per_file,
            sessions_per_day: args.sessions_per_day,
            seed: args.seed,
        };
        let written = corpus::write_corpus(dir, &spec)?;
        println!("wrote {} files, {} events to {}", written.files, written.events, dir.display());
        if let Some(path) = &args.sessions_csv {
            let mut csv = String::from("assume_root_event_id,action_event_id\n");
            for (session, action) in &written.session_actions {
                writeln!(csv, "{session},{action}")?;
            }
            std::fs::write(path, csv)?;
        }
    }
    Ok(())
}
