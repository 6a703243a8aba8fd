//! `trailsql ddl`: the lake's table and views for another engine, with the lake's accounts when it is local.

use std::sync::Arc;

use trailsql_lake::storage::{Location, Storage, open_lake};

use super::{lake_location, write_stdout};
use crate::cli::{Cli, DdlArgs};
use crate::error::Result;
use crate::outcome::Outcome;

pub async fn run(cli: &Cli, args: &DdlArgs, storage: &Arc<Storage>) -> Result<Outcome> {
    let location = lake_location(cli)?;
    let mut accounts = args.accounts.clone();
    if let (true, Location::Local(_)) = (accounts.is_empty(), &location) {
        let lake = open_lake(&location, false, storage).await?;
        accounts = lake.lake.partitions().await?.into_iter().map(|p| p.account).collect();
        accounts.dedup();
    }
    let shown = match &location {
        Location::Local(p) => {
            std::fs::canonicalize(p).map_or_else(|_| p.display().to_string(), |p| p.display().to_string())
        }
        s3 => s3.to_string(),
    };
    write_stdout(crate::ddl::script(args.engine, &shown, &accounts)?.as_bytes())?;
    Ok(Outcome::Success)
}
