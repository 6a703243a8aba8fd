//! The `cloudtrail` table: the lake's data files, listed by the lake's layout, minus the partitions that the
//! lake's digest shows cannot hold a row the query's filters keep.
//!
//! The digest (`trailsql_lake::digest`) records, per partition, the values of `eventsource`, `eventname`,
//! `errorcode` and `useridentity.type`. A filter on those (`=`, `IN`, through `lower()`, inside `AND`, `OR`,
//! `IS TRUE` and `coalesce(…, false)`) is checked against each partition's values, and the files of the partitions it
//! rules out are never opened. Anything else in a filter counts as "may match". A partition the digest does not
//! know is always read.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Date32Array, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Date32Type, Field, Schema, SchemaRef};
use datafusion::catalog::{ScanArgs, ScanResult};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Constraints, DFSchema, ScalarValue, Statistics, project_schema};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::helpers::{evaluate_partition_prefix, expr_applicable_for_cols};
use datafusion::datasource::listing::{ListingTable, PartitionedFile};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::table_schema::TableSchemaBuilder;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::expr::{InList, ScalarFunction};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, Operator, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TableProviderFilterPushDown, Volatility,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::prelude::col;
use futures::{StreamExt, TryFutureExt, TryStreamExt, stream};
use object_store::ObjectMeta;
use object_store::path::Path;
use trailsql_lake::Lake;
use trailsql_lake::digest::{COLUMNS, Digest};
use trailsql_lake::layout::{ACCOUNT_DIR_PREFIX, PartitionKey, is_data_file};
use trailsql_lake::manifest::Applying;
use trailsql_lake::schema::{self, ACCOUNT_ID, EVENT_DATE, EVENT_TIME};

/// The lake's table, skipping partitions by the digest.
pub struct LakeTable {
    inner: ListingTable,
    lake: Lake,
    /// The digest last read, with the version it was read at.
    cached: Mutex<Option<(String, Arc<Digest>)>>,
    /// The directories listed for the statement being planned, so that its scans (`privileged_sessions` has four)
    /// list the lake once and read the same files.
    listed: tokio::sync::Mutex<Listed>,
    /// When set, the only data files read (`account_id=…/event_date=…/name`, as the lake lists them): a
    /// scheduler's Sigma run reads the files that are new since the last one.
    only: Option<Arc<HashSet<String>>>,
}

/// Directory listings of one statement, known by its start time (DataFusion's, stamped when it is planned).
#[derive(Default)]
struct Listed {
    statement: Option<DateTime<Utc>>,
    dirs: HashMap<Path, Arc<Vec<ObjectMeta>>>,
    /// The commits a conversion was applying while the statement listed, if one was.
    applying: Option<Applying>,
}

impl std::fmt::Debug for LakeTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeTable").field("inner", &self.inner).field("lake", &self.lake.name).finish()
    }
}

impl LakeTable {
    pub fn new(inner: ListingTable, lake: Lake) -> LakeTable {
        LakeTable { inner, lake, cached: Mutex::new(None), listed: tokio::sync::Mutex::default(), only: None }
    }

    /// The same table, reading only these of its data files (named as the lake lists them, from its root).
    pub fn only(&self, files: HashSet<String>) -> LakeTable {
        LakeTable { only: Some(Arc::new(files)), ..LakeTable::new(self.inner.clone(), self.lake.clone()) }
    }

    /// The lake's digest, read again whenever it changed; `None` when the lake has none this version can use.
    /// A digest that cannot be read costs the skipping, never a query.
    async fn digest(&self) -> Option<Arc<Digest>> {
        let version = self.lake.digest_version().await.ok()??;
        if let Some((v, d)) = &*self.cached.lock().expect("digest cache")
            && *v == version
        {
            return Some(Arc::clone(d));
        }
        let digest = Arc::new(self.lake.digest().await.ok()??);
        *self.cached.lock().expect("digest cache") = Some((version, Arc::clone(&digest)));
        Some(digest)
    }

    /// The partitions the digest rules out for these filters, by account, if any.
    async fn skipped(&self, filters: &[Expr]) -> Option<Arc<Skips>> {
        let preds: Vec<Pred> = filters.iter().map(Pred::of).filter(|p| !matches!(p, Pred::Any)).collect();
        if preds.is_empty() {
            return None;
        }
        let digest = self.digest().await?;
        let pred = Pred::And(preds).bind(&digest);
        let mut skipped = Skips::new();
        for (key, values) in digest.partitions() {
            if !pred.may_match(values) {
                skipped.entry(key.account).or_default().insert(key.day);
            }
        }
        (!skipped.is_empty()).then(|| Arc::new(skipped))
    }

    /// The scan of the data files this lake holds, listed by its layout.
    ///
    /// Not through `ListingTable`, for what it costs on an organization's lake (a file per account and day,
    /// 36,500 a year for a hundred accounts): it lists the whole table, the `_index/` files beside the data too;
    /// plans its partition filter again for every file; and gives every file a `Statistics` of unknowns for all
    /// 35 columns, 19 KB each (690 MB and 1.3 s of planning on a year of a hundred accounts, `EXPLAIN` alone).
    /// Here the account directories are listed one by one, concurrently; the partition filter and the digest
    /// are checked once per partition; and the scan's statistics are one table-wide "unknown".
    async fn scan_listed(
        &self,
        state: &dyn Session,
        args: &ScanArgs<'_>,
        partition_filters: &[Expr],
        skipped: Option<&Skips>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let table_schema = self.inner.schema();
        let files = self.list(state, &table_schema, partition_filters).await?;
        let files = keep_partitions(state, &table_schema, files, partition_filters, skipped)?;
        if files.is_empty() {
            let projected = project_schema(&table_schema, args.projection().map(|p| p.to_vec()).as_ref())?;
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        let groups = FileGroup::new(files).split_files(state.config().target_partitions());
        let options = self.inner.options();
        let partition_cols: Vec<_> = options
            .table_partition_cols
            .iter()
            .map(|(name, data_type)| Arc::new(Field::new(name, data_type.clone(), false)))
            .collect();
        let file_schema = TableSchemaBuilder::from(&schema::file_schema()).with_table_partition_cols(partition_cols);
        let mut source = options.format.file_source(file_schema.build());
        // A session that pushes no filter into the scan (a Sigma run's, `SessionOptions::no_filter_pushdown`)
        // still prunes by the conditions on `eventtime` alone: the files are sorted by it, and the statistics of
        // their row groups and pages skip the stretches of time the query does not keep (a run from `--since`, a
        // scheduler's correlations around the new events). The rows are not filtered here: that is the plan's.
        let on_time = args.filters().unwrap_or(&[]).iter().filter(|f| expr_applicable_for_cols(&[EVENT_TIME], f));
        if !state.config_options().execution.parquet.pushdown_filters
            && let Some(on_time) = conjunction(on_time.cloned())
            && let Some(parquet) = source.downcast_ref::<ParquetSource>()
        {
            let predicate = state.create_physical_expr(on_time, &DFSchema::try_from(Arc::clone(&table_schema))?)?;
            source = Arc::new(parquet.with_predicate(predicate));
        }
        let url = &self.inner.table_paths()[0];
        let ordering = self.inner.try_create_output_ordering(state.execution_props(), &groups)?;
        let config = FileScanConfigBuilder::new(url.object_store(), source)
            .with_output_ordering(ordering)
            .with_file_groups(groups)
            .with_statistics(Statistics::new_unknown(&table_schema))
            .with_projection_indices(args.projection().map(|p| p.to_vec()))?
            .with_limit(args.limit())
            .build();
        options.format.create_physical_plan(state, config).await
    }

    /// The data files of the partitions the filters on partition columns may keep, with their partitions: the
    /// directory of an account the filters name, or every account directory those on `account_id` alone keep,
    /// each listed whole, several at once. Names starting with `_` or `.` are not data (staging, index,
    /// temporary files).
    async fn list(
        &self,
        state: &dyn Session,
        table_schema: &SchemaRef,
        partition_filters: &[Expr],
    ) -> Result<Vec<(PartitionKey, PartitionedFile)>> {
        let url = &self.inner.table_paths()[0];
        let store = state.runtime_env().object_store(url)?;
        let root = url.prefix();
        let dirs = match evaluate_partition_prefix(&self.inner.options().table_partition_cols, partition_filters) {
            Some(prefix) => vec![Path::from_iter(root.parts().chain(prefix.parts()))],
            None => {
                let top = store.list_with_delimiter(Some(root)).await?;
                let dirs: Vec<(Path, String)> = top
                    .common_prefixes
                    .into_iter()
                    .filter_map(|d| {
                        let account = d.filename()?.strip_prefix(ACCOUNT_DIR_PREFIX)?.to_string();
                        Some((d, account))
                    })
                    .collect();
                let on_account: Vec<Expr> =
                    partition_filters.iter().filter(|f| expr_applicable_for_cols(&[ACCOUNT_ID], f)).cloned().collect();
                let accounts: StringArray = dirs.iter().map(|(_, a)| Some(a.as_str())).collect();
                let kept = holds(state, table_schema, &[ACCOUNT_ID], vec![Arc::new(accounts)], &on_account)?;
                dirs.into_iter().zip(kept).filter(|(_, k)| *k).map(|((d, _), _)| d).collect()
            }
        };
        // Held while listing: a statement's scans are planned concurrently, and the second waits for the first's
        // listing instead of making its own.
        let mut cache = self.listed.lock().await;
        let statement = state.execution_props().query_execution_start_time;
        if statement.is_none() || cache.statement != statement {
            *cache = Listed { statement, dirs: HashMap::new(), applying: None };
        }
        let missing: Vec<Path> = dirs.iter().filter(|d| !cache.dirs.contains_key(*d)).cloned().collect();
        if !missing.is_empty() {
            let concurrency = state.config_options().execution.meta_fetch_concurrency.get();
            let listing =
                stream::iter(missing)
                    .map(|dir| {
                        let store = Arc::clone(&store);
                        async move {
                            Ok::<_, object_store::Error>((dir.clone(), store.list(Some(&dir)).try_collect().await?))
                        }
                    })
                    .buffer_unordered(concurrency)
                    .try_collect::<Vec<(Path, Vec<ObjectMeta>)>>()
                    .map_err(trailsql_lake::Error::from);
            let (fresh, applying) =
                self.lake.while_applying(listing).await.map_err(|e| DataFusionError::External(Box::new(e)))?;
            cache.dirs.extend(fresh.into_iter().map(|(dir, objects)| (dir, Arc::new(objects))));
            cache.applying = Applying::either(cache.applying.take(), applying);
        }
        let listed: Vec<Arc<Vec<ObjectMeta>>> = dirs.iter().filter_map(|d| cache.dirs.get(d).cloned()).collect();
        let applying = cache.applying.clone();
        drop(cache);
        // Each data file with its path from the lake's root.
        let files: Vec<(String, ObjectMeta)> = (listed.iter())
            .flat_map(|objects| objects.iter())
            .filter_map(|meta| {
                let parts: Vec<_> = meta.location.prefix_match(root)?.collect();
                let [account, day, name] = parts.as_slice() else { return None };
                (meta.size > 0 && is_data_file(name.as_ref()))
                    .then(|| (format!("{}/{}/{}", account.as_ref(), day.as_ref(), name.as_ref()), meta.clone()))
            })
            .collect();
        Ok(Applying::visible(applying.as_ref(), files)
            .into_iter()
            .filter_map(|(path, meta)| {
                if self.only.as_ref().is_some_and(|only| !only.contains(&path)) {
                    return None;
                }
                let (dir, _) = path.rsplit_once('/')?;
                let key = PartitionKey::from_path(dir)?;
                let mut file = PartitionedFile::from(meta);
                file.partition_values =
                    vec![ScalarValue::Utf8(Some(key.account.clone())), ScalarValue::Date32(Some(key.day))];
                Some((key, file))
            })
            .collect())
    }
}

/// Partitions the digest ruled out: days since the epoch, by account.
type Skips = HashMap<String, HashSet<i32>>;

/// The files of the partitions that the digest does not rule out and the filters on partition columns keep,
/// checked once per partition (the filters over all of them in one batch), not once per file.
fn keep_partitions(
    state: &dyn Session,
    table_schema: &SchemaRef,
    files: Vec<(PartitionKey, PartitionedFile)>,
    filters: &[Expr],
    skipped: Option<&Skips>,
) -> Result<Vec<PartitionedFile>> {
    let ruled_out = |k: &PartitionKey| skipped.is_some_and(|s| s.get(&k.account).is_some_and(|d| d.contains(&k.day)));
    if filters.is_empty() && skipped.is_none() {
        return Ok(files.into_iter().map(|(_, f)| f).collect());
    }
    let keys: BTreeSet<&PartitionKey> = files.iter().map(|(k, _)| k).filter(|k| !ruled_out(k)).collect();
    let accounts: StringArray = keys.iter().map(|k| Some(k.account.as_str())).collect();
    let days: Date32Array = keys.iter().map(|k| Some(k.day)).collect();
    let columns: Vec<ArrayRef> = vec![Arc::new(accounts), Arc::new(days)];
    let kept = holds(state, table_schema, &[ACCOUNT_ID, EVENT_DATE], columns, filters)?;
    let kept: HashSet<PartitionKey> =
        keys.into_iter().zip(kept).filter(|(_, k)| *k).map(|(key, _)| key.clone()).collect();
    Ok(files.into_iter().filter(|(k, _)| kept.contains(k)).map(|(_, f)| f).collect())
}

/// For each row of these values of the table's columns, whether all the filters hold (NULL is not holding).
fn holds(
    state: &dyn Session,
    table_schema: &SchemaRef,
    names: &[&str],
    columns: Vec<ArrayRef>,
    filters: &[Expr],
) -> Result<Vec<bool>> {
    let rows = columns.first().map_or(0, |c| c.len());
    let Some(filter) = conjunction(filters.iter().cloned()) else { return Ok(vec![true; rows]) };
    let fields = names.iter().map(|n| table_schema.field_with_name(n).cloned()).collect::<Result<Vec<_>, _>>()?;
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
    let expr = state.create_physical_expr(filter, &DFSchema::try_from(schema)?)?;
    let held = expr.evaluate(&batch)?.into_array(rows)?;
    let held = held.as_boolean();
    Ok((0..rows).map(|i| held.is_valid(i) && held.value(i)).collect())
}

/// `skipped(account_id, event_date)`: whether a partition is one the digest ruled out, as a filter on the
/// partition columns for the listing table (which applies it while listing, never opening those files).
#[derive(Debug)]
struct Skipped {
    partitions: Arc<Skips>,
    signature: Signature,
}

impl Skipped {
    fn signature() -> Signature {
        Signature::exact(vec![DataType::Utf8, DataType::Date32], Volatility::Immutable)
    }
}

impl PartialEq for Skipped {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.partitions, &other.partitions)
    }
}

impl Eq for Skipped {}

impl std::hash::Hash for Skipped {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.partitions).hash(state)
    }
}

impl ScalarUDFImpl for Skipped {
    fn name(&self) -> &str {
        "trailsql_digest_skipped"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let accounts = cast(&arrays[0], &DataType::Utf8)?;
        let days = cast(&arrays[1], &DataType::Date32)?;
        let (accounts, days) = (accounts.as_string::<i32>(), days.as_primitive::<Date32Type>());
        let out: BooleanArray = (0..accounts.len())
            .map(|i| {
                let known = !accounts.is_null(i) && !days.is_null(i);
                Some(known && self.partitions.get(accounts.value(i)).is_some_and(|d| d.contains(&days.value(i))))
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// What a filter says about the digest's columns.
#[derive(Debug)]
enum Pred {
    /// Nothing the digest can check: may match.
    Any,
    /// `column = value` for one of the values, compared lowercased when `lower`.
    In {
        column: usize,
        values: HashSet<String>,
        lower: bool,
    },
    And(Vec<Pred>),
    Or(Vec<Pred>),
}

impl Pred {
    fn of(e: &Expr) -> Pred {
        match e {
            Expr::BinaryExpr(BinaryExpr { left, op: Operator::And, right }) => {
                Pred::And(vec![Pred::of(left), Pred::of(right)])
            }
            Expr::BinaryExpr(BinaryExpr { left, op: Operator::Or, right }) => match (Pred::of(left), Pred::of(right)) {
                (Pred::Any, _) | (_, Pred::Any) => Pred::Any,
                (l, r) => Pred::Or(vec![l, r]),
            },
            Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right }) => {
                match (target(left), text(right), target(right), text(left)) {
                    (Some((column, lower)), Some(v), _, _) | (_, _, Some((column, lower)), Some(v)) => {
                        Pred::In { column, values: HashSet::from([v.to_string()]), lower }
                    }
                    _ => Pred::Any,
                }
            }
            Expr::InList(InList { expr, list, negated: false }) => {
                let values: Option<HashSet<String>> = list.iter().map(|v| text(v).map(String::from)).collect();
                match (target(expr), values) {
                    (Some((column, lower)), Some(values)) => Pred::In { column, values, lower },
                    _ => Pred::Any,
                }
            }
            // Sigma's gate, `p IS TRUE`, and `coalesce(p, false)`, hold only where `p` does.
            Expr::IsTrue(p) => Pred::of(p),
            Expr::ScalarFunction(ScalarFunction { func, args })
                if func.name() == "coalesce"
                    && args.len() == 2
                    && matches!(&args[1], Expr::Literal(ScalarValue::Boolean(Some(false) | None), _)) =>
            {
                Pred::of(&args[0])
            }
            _ => Pred::Any,
        }
    }

    /// Resolves the values of each `In` to the IDs of the digest's values they match.
    fn bind(self, digest: &Digest) -> Bound {
        match self {
            Pred::Any => Bound::Any,
            Pred::In { column, values, lower } => Bound::In {
                column,
                ids: digest
                    .values(column)
                    .iter()
                    .map(|v| if lower { values.contains(&v.to_lowercase()) } else { values.contains(v) })
                    .collect(),
            },
            Pred::And(ps) => Bound::And(ps.into_iter().map(|p| p.bind(digest)).collect()),
            Pred::Or(ps) => Bound::Or(ps.into_iter().map(|p| p.bind(digest)).collect()),
        }
    }
}

/// A [`Pred`] over one digest: per column, which of its value IDs match.
enum Bound {
    Any,
    In { column: usize, ids: Vec<bool> },
    And(Vec<Bound>),
    Or(Vec<Bound>),
}

impl Bound {
    fn may_match(&self, part: &[Option<Vec<u32>>]) -> bool {
        match self {
            Bound::Any => true,
            Bound::In { column, ids } => match part.get(*column) {
                Some(Some(held)) => held.iter().any(|&id| ids.get(id as usize).copied().unwrap_or(true)),
                _ => true,
            },
            Bound::And(bs) => bs.iter().all(|b| b.may_match(part)),
            Bound::Or(bs) => bs.iter().any(|b| b.may_match(part)),
        }
    }
}

/// The digest column an expression reads (`eventname`, `useridentity.type`, through casts), and whether it is
/// lowercased first.
fn target(e: &Expr) -> Option<(usize, bool)> {
    match e {
        Expr::ScalarFunction(ScalarFunction { func, args }) if func.name() == "lower" && args.len() == 1 => {
            target(&args[0]).filter(|(_, lower)| !lower).map(|(c, _)| (c, true))
        }
        Expr::Cast(c) if c.field.data_type().is_string() => target(&c.expr),
        _ => COLUMNS.iter().position(|c| Some(*c) == path(e).as_deref()).map(|c| (c, false)),
    }
}

/// The dotted path of a column or of a struct field (`useridentity.type`).
fn path(e: &Expr) -> Option<String> {
    match e {
        Expr::Column(c) => Some(c.name.clone()),
        Expr::ScalarFunction(ScalarFunction { func, args }) if func.name() == "get_field" && args.len() == 2 => {
            Some(format!("{}.{}", path(&args[0])?, text(&args[1])?))
        }
        _ => None,
    }
}

fn text(e: &Expr) -> Option<&str> {
    match e {
        Expr::Literal(v, _) => v.try_as_str().flatten(),
        _ => None,
    }
}

#[async_trait]
impl TableProvider for LakeTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn constraints(&self) -> Option<&Constraints> {
        self.inner.constraints()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    fn statistics(&self) -> Option<Statistics> {
        self.inner.statistics()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let args = ScanArgs::default()
            .with_projection(projection.map(|p| p.as_slice()))
            .with_filters(Some(filters))
            .with_limit(limit);
        Ok(self.scan_with_args(state, args).await?.into_inner())
    }

    async fn scan_with_args<'a>(&self, state: &dyn Session, args: ScanArgs<'a>) -> Result<ScanResult> {
        let filters = args.filters().unwrap_or(&[]);
        let skipped = self.skipped(filters).await;
        // Statistics asked for (`SET datafusion.execution.collect_statistics = true`) are the listing table's to
        // collect, and it skips the digest's partitions through a filter on the partition columns.
        if state.config().collect_statistics() || state.config_options().optimizer.preserve_file_partitions > 0 {
            let Some(skipped) = skipped else { return self.inner.scan_with_args(state, args).await };
            let skips = ScalarUDF::new_from_impl(Skipped { partitions: skipped, signature: Skipped::signature() });
            let mut filters = filters.to_vec();
            filters.push(!skips.call(vec![col(ACCOUNT_ID), col(EVENT_DATE)]));
            return self.inner.scan_with_args(state, args.with_filters(Some(&filters))).await;
        }
        let partition_filters: Vec<Expr> =
            filters.iter().filter(|f| expr_applicable_for_cols(&[ACCOUNT_ID, EVENT_DATE], f)).cloned().collect();
        Ok(ScanResult::new(self.scan_listed(state, &args, &partition_filters, skipped.as_deref()).await?))
    }
}
