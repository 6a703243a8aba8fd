//! Running the same SQL on an Apache DataFusion Ballista cluster: the client context, an in-process standalone
//! cluster, and the scheduler and executor processes that know trailsql's functions and object stores.
//!
//! Ballista ships plans between processes and looks functions up by name on the other side, so every process
//! must register the same UDFs: the client (for planning), the scheduler (it decodes the logical plan) and the
//! executors (they decode and run the physical plan). Views are expanded on the client, so only the table and
//! the functions have to travel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ballista::prelude::SessionContextExt;
use ballista_core::registry::BallistaFunctionRegistry;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::session_state::SessionState;
use datafusion::execution::{FunctionRegistry, SessionStateBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};

use super::Cluster;
use crate::error::{Error, Result};
use trailsql_lake::storage::Storage;

/// A Ballista context that starts from `base`: its configuration, runtime (object stores) and functions.
pub async fn context(cluster: &Cluster, executor_wait: Duration, base: SessionState) -> Result<SessionContext> {
    let ours: Vec<_> = base.scalar_functions().values().cloned().collect();
    let our_aggregates: Vec<_> = base.aggregate_functions().values().cloned().collect();
    let our_windows: Vec<_> = base.window_functions().values().cloned().collect();
    let base = for_replanning(base);
    let ctx = match cluster {
        Cluster::Standalone => SessionContext::standalone_with_state(base).await?,
        Cluster::Remote(url) => {
            wait_for_executor(url, executor_wait).await?;
            SessionContext::remote_with_state(url, base)
                .await
                .map_err(|e| Error::Usage(format!("cannot use the Ballista scheduler at {url}: {e}")))?
        }
    };
    // Ballista's upgrade replaces the function list with its defaults; the client plans with ours.
    for f in ours {
        if ctx.udf(f.name()).is_err() {
            ctx.register_udf(f.as_ref().clone());
        }
    }
    for f in our_aggregates {
        if ctx.udaf(f.name()).is_err() {
            ctx.register_udaf(f.as_ref().clone());
        }
    }
    for f in our_windows {
        if ctx.udwf(f.name()).is_err() {
            ctx.register_udwf(f.as_ref().clone());
        }
    }
    Ok(ctx)
}

/// The optimizer rule that a second optimization of its own output fails on: the scheduler optimizes the plan
/// the client already optimized, and `__datafusion_extracted` columns then clash ("ambiguous field name").
const NOT_IDEMPOTENT: &str = "push_down_leaf_projections";

/// `state` made fit for Ballista's second planning: without the optimizer rules that cannot run twice over one
/// plan (Ballista mode then reads whole struct columns where a local run reads only the nested fields it needs),
/// and without dynamic join filters. Ballista chooses join sides again when a stage's input is known, after
/// DataFusion has given the hash join its dynamic filter; the swap then fails an assertion in the scheduler
/// ("Cannot swap HashJoinExec inputs after dynamic filters have been constructed") and the job never ends.
fn for_replanning(state: SessionState) -> SessionState {
    let rules = state.optimizers().iter().filter(|r| r.name() != NOT_IDEMPOTENT).cloned().collect();
    let mut state = SessionStateBuilder::new_from_existing(state).with_optimizer_rules(rules).build();
    state.config_mut().options_mut().optimizer.enable_join_dynamic_filter_pushdown = false;
    state
}

/// A session state with DataFusion's defaults, trailsql's UDFs and the JSON functions, over `runtime`.
fn state_with_functions(config: SessionConfig, runtime: Arc<RuntimeEnv>) -> datafusion::error::Result<SessionState> {
    let mut state =
        SessionStateBuilder::new().with_config(config).with_runtime_env(runtime).with_default_features().build();
    super::register_functions(&mut state)?;
    Ok(for_replanning(state))
}

/// Settings of `trailsql ballista-scheduler`.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    pub bind: SocketAddr,
}

/// Runs a Ballista scheduler that decodes plans with trailsql's functions, until the process is stopped.
pub async fn run_scheduler(opts: &SchedulerOptions, storage: Arc<Storage>) -> Result<()> {
    use ballista_scheduler::cluster::BallistaCluster;
    use ballista_scheduler::config::SchedulerConfig;

    // One runtime, so that every session shares the bucket stores it builds, and the footers it reads (the
    // process serves query after query).
    let runtime = super::runtime(storage, super::LASTING_METADATA_CACHE, None)?;
    let builder = move |config: SessionConfig| state_with_functions(config, runtime.clone());
    let config = SchedulerConfig {
        bind_host: opts.bind.ip().to_string(),
        bind_port: opts.bind.port(),
        ..SchedulerConfig::default()
    }
    .with_override_session_builder(Arc::new(builder));
    let cluster = BallistaCluster::new_from_config(&config).await.map_err(ballista_error)?;
    ballista_scheduler::scheduler_process::start_server(cluster, opts.bind, Arc::new(config))
        .await
        .map_err(ballista_error)
}

/// Settings of `trailsql ballista-executor`.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    pub scheduler_host: String,
    pub scheduler_port: u16,
    pub bind_host: String,
    /// The address the scheduler and the other executors reach this one at, when it is not `bind_host`.
    pub external_host: Option<String>,
    pub port: u16,
    pub grpc_port: u16,
    pub concurrent_tasks: usize,
    pub work_dir: Option<String>,
}

/// Runs a Ballista executor with trailsql's functions and object stores, until the process is stopped.
pub async fn run_executor(opts: &ExecutorOptions, storage: Arc<Storage>) -> Result<()> {
    use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};

    // One runtime, so that every session shares the bucket stores it builds, and the footers it reads (the
    // process serves query after query).
    let runtime = super::runtime(storage, super::LASTING_METADATA_CACHE, None)?;
    let functions = state_with_functions(SessionConfig::new(), runtime.clone())?;
    let registry = BallistaFunctionRegistry::from(&functions);
    let config = ExecutorProcessConfig {
        scheduler_host: opts.scheduler_host.clone(),
        scheduler_port: opts.scheduler_port,
        bind_host: opts.bind_host.clone(),
        external_host: opts.external_host.clone(),
        port: opts.port,
        grpc_port: opts.grpc_port,
        vcores: opts.concurrent_tasks,
        work_dir: opts.work_dir.clone(),
        override_function_registry: Some(Arc::new(registry)),
        override_runtime_producer: Some(Arc::new(move |_: &SessionConfig| Ok(runtime.clone()))),
        ..ExecutorProcessConfig::default()
    };
    wait_for_scheduler(&opts.scheduler_host, opts.scheduler_port).await?;
    start_executor_process(Arc::new(config)).await.map_err(ballista_error)
}

/// How long an executor waits for its scheduler to listen.
const SCHEDULER_WAIT: Duration = Duration::from_secs(60);

/// Waits until the scheduler accepts connections. Ballista's executor gives up at once when the scheduler is not
/// listening yet, which is how a cluster started all together (a compose file, a job scheduler) usually begins;
/// and a query sent to a scheduler left without executors waits forever.
async fn wait_for_scheduler(host: &str, port: u16) -> Result<()> {
    let connect = || async { tokio::net::TcpStream::connect((host, port)).await.map(drop).map_err(|e| e.to_string()) };
    poll(SCHEDULER_WAIT, Duration::from_millis(250), connect).await.map_err(|e| {
        Error::Other(format!(
            "ballista: no scheduler listens at {host}:{port} after {} s: {e}",
            SCHEDULER_WAIT.as_secs()
        ))
    })
}

/// Tries `attempt` every `every` until it succeeds or `wait` has passed; then says what the last try said.
async fn poll<F, Fut>(wait: Duration, every: Duration, mut attempt: F) -> std::result::Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<(), String>>,
{
    let start = std::time::Instant::now();
    loop {
        match attempt().await {
            Ok(()) => return Ok(()),
            Err(e) if start.elapsed() >= wait => return Err(e),
            Err(_) => tokio::time::sleep(every).await,
        }
    }
}

/// Waits until the scheduler at `url` (`df://host:port`) has an executor, as its `/readyz` says.
///
/// Ballista queues a job sent to a scheduler without executors until one registers, which may be never: the
/// client would wait without a word. A job whose executors are all lost while it runs fails on its own (the
/// scheduler's `--no-executors-grace-period-seconds`).
async fn wait_for_executor(url: &str, wait: Duration) -> Result<()> {
    let parsed = url::Url::parse(url).map_err(|e| Error::Usage(format!("--ballista {url}: {e}")))?;
    let (host, port) = (parsed.host_str().unwrap_or("localhost"), parsed.port().unwrap_or(50050));
    let ready = format!("http://{host}:{port}/readyz");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| Error::Other(format!("ballista: {e}")))?;
    let ask = || async {
        match client.get(&ready).send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("{}: {}", r.status(), r.text().await.unwrap_or_default().trim())),
            Err(e) => Err(e.to_string()),
        }
    };
    poll(wait, Duration::from_millis(500), ask).await.map_err(|said| {
        Error::Usage(format!(
            "the Ballista scheduler at {url} has no executor after {} s ({ready} said {said}): start one with \
             `trailsql ballista-executor --scheduler {host}:{port}`, or wait longer with --ballista-wait",
            wait.as_secs()
        ))
    })
}

fn ballista_error(e: ballista_core::error::BallistaError) -> Error {
    Error::Other(format!("ballista: {e}"))
}
