//! The one session builder: every entry point (REPL, `run`, `query`, tests) gets its SessionContext here.

use std::sync::Arc;

use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext, col};

use crate::error::Result;
use crate::schema;
use crate::storage::{BucketStores, OpenLake, Storage};

/// The name of the lake's table.
pub const TABLE: &str = "cloudtrail";

/// Settings of a session, resolved once by the caller.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// Partitions DataFusion plans with; `None` for one per core.
    pub target_partitions: Option<usize>,
    /// A Ballista cluster to run queries on, instead of this process.
    pub ballista: Option<Cluster>,
}

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

fn config(opts: &SessionOptions) -> SessionConfig {
    let mut cfg = SessionConfig::new()
        .with_information_schema(true)
        .with_create_default_catalog_and_schema(true)
        // Filters evaluated while decoding Parquet: most hunting queries keep a tiny fraction of rows.
        .set_bool("datafusion.execution.parquet.pushdown_filters", true)
        .set_bool("datafusion.execution.parquet.reorder_filters", true);
    if let Some(n) = opts.target_partitions {
        cfg = cfg.with_target_partitions(n);
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
        .with_file_extension(format!(".{}", crate::lake::DATA_EXT))
        .with_table_partition_cols(schema::partition_columns())
        .with_file_sort_order(vec![vec![col("eventtime").sort(true, false)]])
}

/// Builds a session over a lake: the `cloudtrail` table, our UDFs, the JSON functions and the views.
pub async fn build(lake: &OpenLake, opts: &SessionOptions, storage: Arc<Storage>) -> Result<Session> {
    // No cache of file listings: it lists the whole table on first use, where a query filtered on account_id
    // and event_date should list only that partition's prefix (an S3 lake can hold millions of objects), and it
    // would hide what a concurrent `trailsql convert` adds from a REPL session.
    let caches = CacheManagerConfig::default().with_list_files_cache_limit(0);
    let runtime = RuntimeEnvBuilder::new()
        .with_cache_manager(caches)
        .with_object_store_registry(Arc::new(BucketStores::new(storage)))
        .build_arc()?;
    let ctx = SessionContext::new_with_config_rt(config(opts), runtime);
    register_functions(&ctx)?;
    let ctx = match &opts.ballista {
        None => ctx,
        #[cfg(feature = "ballista")]
        Some(cluster) => crate::ballista::context(cluster, ctx.state()).await?,
        #[cfg(not(feature = "ballista"))]
        Some(_) => return Err(without_ballista()),
    };
    // `SELECT * FROM 's3://bucket/file.parquet'` and local paths work as tables.
    let ctx = ctx.enable_url_table();
    let table_url = ListingTableUrl::parse(&lake.table_url)?;
    let table_cfg =
        ListingTableConfig::new(table_url).with_listing_options(listing_options()).with_schema(schema::file_schema());
    ctx.register_table(TABLE, Arc::new(ListingTable::try_new(table_cfg)?))?;
    register_views(&ctx).await?;
    Ok(Session { ctx, lake: lake.clone() })
}

/// Registers our UDFs and the JSON functions (with their `->` and `->>` operators) on a context.
pub fn register_functions(ctx: &SessionContext) -> Result<()> {
    let state = ctx.state_ref();
    let mut state = state.write();
    trailsql_udfs::register_all(&mut *state)?;
    datafusion_functions_json::register_all(&mut *state)?;
    Ok(())
}

/// Registers the views of `src/views/`. A view may use another, so a view that fails because another is not
/// registered yet is tried again after the others.
pub async fn register_views(ctx: &SessionContext) -> Result<()> {
    let mut pending: Vec<(&str, &str)> = crate::embedded::VIEWS.to_vec();
    while !pending.is_empty() {
        let mut failed = Vec::new();
        for (name, sql) in pending.iter().copied() {
            if let Err(e) = ctx.sql(sql).await {
                failed.push((name, sql, e));
            }
        }
        if failed.len() == pending.len() {
            // No view could be added: report the ones that fail for a reason of their own.
            let errors: Vec<String> = failed
                .iter()
                .filter(|(_, _, e)| !e.to_string().contains("not found"))
                .map(|(name, _, e)| format!("view {name} does not build: {e}"))
                .collect();
            return Err(crate::error::Error::Other(errors.join("; ")));
        }
        pending = failed.into_iter().map(|(n, s, _)| (n, s)).collect();
    }
    Ok(())
}
