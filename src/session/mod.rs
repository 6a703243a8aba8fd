//! The one session builder: every entry point (REPL, `run`, `query`, tests) gets its SessionContext here.

#[cfg(feature = "ballista")]
pub mod ballista;
pub mod coalesce;
pub mod fields;
pub mod lake_table;
pub mod lazy_views;
pub mod local_store;
pub mod memory;
pub mod selection;
pub mod shared;
pub mod stores;

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::SessionState;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;
use datafusion::prelude::{SessionConfig, SessionContext, col};

use crate::error::Result;
use lazy_views::LazyViews;
use stores::BucketStores;
use trailsql_lake::schema;
use trailsql_lake::storage::{OpenLake, Storage};

/// The name of the lake's table.
pub const TABLE: &str = "cloudtrail";

/// Settings of a session, resolved once by the caller.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// Partitions DataFusion plans with; `None` for one per core.
    pub target_partitions: Option<usize>,
    /// A Ballista cluster to run queries on, instead of this process.
    pub ballista: Option<Cluster>,
    /// How long to wait for a remote cluster to have an executor: a job sent to a scheduler without one waits
    /// forever.
    pub ballista_wait: std::time::Duration,
    /// Bytes of Parquet footers the session keeps between queries (DataFusion's file metadata cache; 0 keeps
    /// none). A command that runs once reads each footer once: caching them only cost it the cache's upkeep
    /// (sizing each footer, evicting past 50 MB), a third of a GROUP BY over a lake of 2,700 files and 65 MB of
    /// memory. The REPL keeps [`LASTING_METADATA_CACHE`] for the queries that follow (a footer from S3 is a request).
    pub metadata_cache: usize,
    /// Filters evaluated on decoded batches, not handed to the Parquet scan at all (neither to filter rows while
    /// decoding nor to prune row groups). A predicate that ORs dozens of conditions, as `trailsql sigma`'s do,
    /// costs more to set up for each file (rewritten, simplified, turned into a pruning predicate and a row
    /// filter, for each of a wide lake's thousands of files) than it saves: 60 rules over the wide benchmark lake
    /// took 5.3 s pushed down, 4.5 s filtered while decoding; fused into one scan, 3.0 s still handed to the scan
    /// for pruning, 2.3 s not. Partitions are still skipped by the lake's digest, which the table applies itself,
    /// and row groups and pages by the conditions on `eventtime` alone (`lake_table`).
    /// Field accesses and JSON paths then stay in the expressions that use them (see `config`).
    pub no_filter_pushdown: bool,
    /// Bytes the operators of a query may hold (see [`memory`]); `None`: no limit.
    pub memory_limit: Option<usize>,
}

/// The footer cache of the processes that serve query after query, the REPL and Ballista's: DataFusion's default.
pub const LASTING_METADATA_CACHE: usize = datafusion::execution::cache::cache_manager::DEFAULT_METADATA_CACHE_LIMIT;

/// A Ballista cluster (the `ballista` feature runs queries there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cluster {
    /// A scheduler and an executor started in this process, on loopback: for trying Ballista out, and for tests.
    Standalone,
    /// The scheduler of a running cluster, `df://host:port`.
    Remote(String),
}

impl Cluster {
    pub fn parse(s: &str) -> Result<Cluster> {
        if s == "standalone" {
            return Ok(Cluster::Standalone);
        }
        match url::Url::parse(s) {
            Ok(u) if u.scheme() == "df" && u.host_str().is_some() => Ok(Cluster::Remote(s.to_string())),
            _ => Err(crate::error::Error::Usage(format!(
                "--ballista {s}: expected df://host:port (a Ballista scheduler), or standalone"
            ))),
        }
    }
}

/// What a built session holds beside the context.
pub struct Session {
    pub ctx: SessionContext,
    pub lake: OpenLake,
}

impl Session {
    /// Registers `name`: the lake's table reading only these of its data files (named as the lake lists them,
    /// `account_id=…/event_date=…/part-….parquet`). `false`, and nothing registered, when this session's table
    /// is not ours (Ballista's).
    pub async fn register_files(&self, name: &str, files: HashSet<String>) -> Result<bool> {
        let table = self.ctx.table_provider(TABLE).await?;
        let Some(lake) = table.downcast_ref::<lake_table::LakeTable>() else { return Ok(false) };
        self.ctx.register_table(name, Arc::new(lake.only(files)))?;
        Ok(true)
    }
}

/// How deep the SQL parser goes into nested expressions and subqueries.
const SQL_NESTING: usize = 1000;

fn config(opts: &SessionOptions) -> SessionConfig {
    let mut cfg = SessionConfig::new()
        .with_information_schema(true)
        .with_create_default_catalog_and_schema(true)
        // Filters evaluated while decoding Parquet: most hunting queries keep a tiny fraction of rows.
        .set_bool("datafusion.execution.parquet.pushdown_filters", true)
        .set_bool("datafusion.execution.parquet.reorder_filters", true)
        // Statistics from every file's footer at planning time cost more than the queries they plan: a lake
        // holds a file per account and day, thousands of them, and each file's row groups are pruned by their
        // own statistics when it is opened anyway. On the wide benchmark lake (2,700 files) planning
        // privileged_sessions took two thirds of its time and memory. `SET ... = true` brings them back.
        .set_bool("datafusion.execution.collect_statistics", false)
        // A hash join hands its build side's keys to the probe side's scan as a filter that changes while the
        // query runs, so the scan plans it again for every file it opens: simplifies it, builds a pruning
        // predicate and a page pruning predicate from it. Without statistics every join is partitioned, and
        // the filter is a CASE over the hash of the keys, per partition, that prunes nothing on a lake of
        // per-account-day files (key ranges span every file). On the wide benchmark lake (2,700 files)
        // planning it per file was a quarter of privileged_sessions' CPU. `SET ... = true` brings it back.
        .set_bool("datafusion.optimizer.enable_join_dynamic_filter_pushdown", false)
        // The fused query of a Sigma rule directory nests three subqueries per correlation (`sigma::fused`): the
        // parser's default limit of 50 stopped at eight correlations.
        .set_usize("datafusion.sql_parser.recursion_limit", SQL_NESTING);
    if let Some(n) = opts.target_partitions {
        cfg = cfg.with_target_partitions(n);
    }
    // Field accesses and JSON paths are computed below the operator that uses them, where the filter pushed into
    // the Parquet scan computes them anyway. Where the filter is not pushed down, as in a Sigma directory's fused
    // query, that computed each rule's JSON paths for every event of the shared stream, where the `AND` that guards
    // them evaluates them on the events of the rule's own names alone: five paths over the 155,000 events of the
    // narrow benchmark's stream were a tenth of the run's CPU. The structs are narrowed by `fields::ScanFields`.
    if opts.no_filter_pushdown {
        cfg.options_mut().optimizer.enable_leaf_expression_pushdown = false;
        // Nothing is pushed (`physical_rules`); the lake's table prunes by time itself (`lake_table`).
        cfg.options_mut().execution.parquet.pushdown_filters = false;
    }
    cfg
}

/// The error of a Ballista flag or command in a build without the `ballista` feature.
#[cfg(not(feature = "ballista"))]
pub fn without_ballista() -> crate::error::Error {
    crate::error::Error::Usage(
        "this trailsql was built without Ballista: build it with `cargo build --features ballista`".into(),
    )
}

/// The listing options of the lake table: Parquet files under hive partitions, each sorted by eventtime.
pub fn listing_options() -> ListingOptions {
    ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(format!(".{}", trailsql_lake::layout::DATA_EXT))
        .with_table_partition_cols(schema::partition_columns())
        .with_file_sort_order(vec![vec![col("eventtime").sort(true, false)]])
}

/// Builds a session over a lake: the `cloudtrail` table, our UDFs, the JSON functions and the views.
pub async fn build(lake: &OpenLake, opts: &SessionOptions, storage: Arc<Storage>) -> Result<Session> {
    let mut state = SessionStateBuilder::new()
        .with_config(config(opts))
        .with_runtime_env(runtime(storage, opts.metadata_cache, opts.memory_limit)?)
        .with_default_features()
        .with_physical_optimizer_rules(physical_rules(opts));
    // First of the analyzer's rules: the statement's copies of the shared subquery are one before type coercion
    // and the others go over each. Ballista ships logical plans to its scheduler, which cannot take the shared
    // stream's table.
    if opts.ballista.is_none() {
        let mut analyzer = datafusion::optimizer::Analyzer::new();
        analyzer.rules.insert(0, Arc::new(shared::ShareStream));
        *state.analyzer() = Some(analyzer);
    }
    let state = state.build();
    let ctx = SessionContext::new_with_state(state);
    register_functions(&mut ctx.state_ref().write())?;
    let ctx = match &opts.ballista {
        None => ctx,
        #[cfg(feature = "ballista")]
        Some(cluster) => ballista::context(cluster, opts.ballista_wait, ctx.state()).await?,
        #[cfg(not(feature = "ballista"))]
        Some(_) => return Err(without_ballista()),
    };
    // `SELECT * FROM 's3://bucket/file.parquet'` and local paths work as tables.
    let ctx = ctx.enable_url_table();
    let table_url = ListingTableUrl::parse(&lake.table_url)?;
    let table_cfg =
        ListingTableConfig::new(table_url).with_listing_options(listing_options()).with_schema(schema::file_schema());
    // When statistics are collected (see `config`), each file's are read once per session, and again when the
    // file's size or modification time changes.
    let table =
        ListingTable::try_new(table_cfg)?.with_cache(ctx.runtime_env().cache_manager.get_file_statistic_cache());
    register_views(&ctx).await?;
    // Ballista sends the logical plan to its scheduler, which knows the listing table and not ours.
    let table: Arc<dyn datafusion::catalog::TableProvider> = if opts.ballista.is_some() {
        Arc::new(table)
    } else {
        Arc::new(lake_table::LakeTable::new(table, lake.lake.clone()))
    };
    ctx.register_table(TABLE, table)?;
    Ok(Session { ctx, lake: lake.clone() })
}

/// DataFusion's physical optimizer rules, [`fields::ScanFields`], [`coalesce::CoalesceScans`] and
/// [`selection::NarrowSelections`], less the filter push-down where
/// [`SessionOptions::no_filter_pushdown`] asks: even when Parquet is not to filter rows, the push-down hands the scan
/// the filter to prune row groups with, and the scan adapts it to each file it opens: rewrites and simplifies it,
/// builds a pruning predicate from it. For the OR of a rule directory's conditions, which prunes nothing, that was
/// a tenth of a Sigma run over a lake of small files.
fn physical_rules(opts: &SessionOptions) -> Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> {
    let mut rules: Vec<_> = PhysicalOptimizer::new()
        .rules
        .into_iter()
        .filter(|r| !(opts.no_filter_pushdown && r.name().starts_with("FilterPushdown")))
        .collect();
    rules.push(Arc::new(fields::ScanFields));
    rules.push(Arc::new(coalesce::CoalesceScans));
    // Last: its expressions are ours, which Ballista could not ship to its executors.
    if opts.ballista.is_none() {
        rules.push(Arc::new(selection::NarrowSelections));
    }
    rules
}

/// The runtime of every session, here and in Ballista's processes: S3 buckets through [`Storage`],
/// `metadata_cache` bytes of Parquet footers kept (see [`SessionOptions::metadata_cache`]), and the memory pool
/// of `memory_limit` bytes.
pub fn runtime(
    storage: Arc<Storage>,
    metadata_cache: usize,
    memory_limit: Option<usize>,
) -> datafusion::error::Result<Arc<RuntimeEnv>> {
    // No cache of file listings: it lists the whole table on first use, where a query filtered on account_id
    // and event_date should list only that partition's prefix (an S3 lake can hold millions of objects), and it
    // would hide what a concurrent `trailsql convert` adds from a REPL session.
    let caches = CacheManagerConfig::default().with_list_files_cache_limit(0).with_metadata_cache_limit(metadata_cache);
    let runtime = RuntimeEnvBuilder::new()
        .with_cache_manager(caches)
        .with_object_store_registry(Arc::new(BucketStores::new(storage)));
    match memory_limit {
        Some(limit) => runtime.with_memory_pool(memory::pool(limit)),
        None => runtime,
    }
    .build_arc()
}

/// Registers our UDFs and the JSON functions (with their `->` and `->>` operators), here and in Ballista's
/// processes.
pub fn register_functions(state: &mut SessionState) -> datafusion::error::Result<()> {
    trailsql_udfs::register_all(state)?;
    datafusion_functions_json::register_all(state)?;
    Ok(())
}

/// Gives the default schema the views of `src/views/`, each planned when a statement first names it. Tables
/// already in that schema stay.
pub async fn register_views(ctx: &SessionContext) -> Result<()> {
    let cfg = ctx.copied_config();
    let options = cfg.options();
    let (catalog_name, schema_name) = (&options.catalog.default_catalog, &options.catalog.default_schema);
    let missing = || crate::error::Error::Other(format!("no default schema {catalog_name}.{schema_name}"));
    let catalog = ctx.catalog(catalog_name).ok_or_else(missing)?;
    let old = catalog.schema(schema_name).ok_or_else(missing)?;
    // A fresh schema rather than `old` itself: with URL tables on, `old` is a wrapper that would read a view's
    // name as a file path before the view is found.
    let tables = Arc::new(MemorySchemaProvider::new());
    for name in old.table_names() {
        if let Some(table) = old.table(&name).await? {
            tables.register_table(name, table)?;
        }
    }
    let views = LazyViews::new(tables, crate::embedded::VIEWS, ctx.state_weak_ref());
    catalog.register_schema(schema_name, Arc::new(views))?;
    Ok(())
}
