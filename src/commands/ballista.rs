//! `trailsql ballista-scheduler` and `ballista-executor`: trailsql's own Ballista processes.

use std::sync::Arc;

use trailsql_lake::storage::Storage;

use crate::cli::{ExecutorArgs, SchedulerArgs};
use crate::error::{Error, Result};
use crate::outcome::Outcome;

pub async fn scheduler(args: &SchedulerArgs, storage: &Arc<Storage>) -> Result<Outcome> {
    crate::session::ballista::run_scheduler(
        &crate::session::ballista::SchedulerOptions { bind: args.bind },
        storage.clone(),
    )
    .await?;
    Ok(Outcome::Success)
}

pub async fn executor(args: &ExecutorArgs, storage: &Arc<Storage>) -> Result<Outcome> {
    let (host, port) = match args.scheduler.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().map_err(|_| Error::Usage(format!("--scheduler {}: bad port", args.scheduler)))?),
        None => (args.scheduler.as_str(), 50050),
    };
    let opts = crate::session::ballista::ExecutorOptions {
        scheduler_host: host.to_string(),
        scheduler_port: port,
        bind_host: args.bind_host.clone(),
        external_host: args.external_host.clone(),
        port: args.port,
        grpc_port: args.grpc_port,
        concurrent_tasks: args
            .concurrent_tasks
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        work_dir: args.work_dir.clone(),
    };
    crate::session::ballista::run_executor(&opts, storage.clone()).await?;
    Ok(Outcome::Success)
}
