//! The `cloudtrail` table: the lake's listing table, minus the partitions that the lake's digest shows cannot hold
//! a row the query's filters keep.
//!
//! The digest (`trailsql_lake::digest`) records, per partition, the values of `eventsource`, `eventname`,
//! `errorcode` and `useridentity.type`. A filter on those (`=`, `IN`, through `lower()`, inside `AND`, `OR` and
//! Sigma's `coalesce(…, false)`) is checked against each partition's values, and the partitions it rules out are
//! handed to the listing table as one more filter on the partition columns, which it applies while listing: their
//! files are never opened. Anything else in a filter counts as "may match". A partition the digest does not know
//! is always read.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray, BooleanArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::datatypes::{DataType, Date32Type};
use datafusion::catalog::{ScanArgs, ScanResult};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Constraints, ScalarValue, Statistics};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::ListingTable;
use datafusion::error::Result;
use datafusion::logical_expr::expr::{InList, ScalarFunction};
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, Operator, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TableProviderFilterPushDown, Volatility,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::col;
use trailsql_lake::Lake;
use trailsql_lake::digest::{COLUMNS, Digest};
use trailsql_lake::schema::{ACCOUNT_ID, EVENT_DATE};

/// The lake's table, skipping partitions by the digest.
pub struct LakeTable {
    inner: ListingTable,
    lake: Lake,
    /// The digest last read, with the version it was read at.
    cached: Mutex<Option<(String, Arc<Digest>)>>,
}

impl std::fmt::Debug for LakeTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeTable").field("inner", &self.inner).field("lake", &self.lake.name).finish()
    }
}

impl LakeTable {
    pub fn new(inner: ListingTable, lake: Lake) -> LakeTable {
        LakeTable { inner, lake, cached: Mutex::new(None) }
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

    /// A filter on the partition columns that leaves out the partitions the digest rules out, if any.
    async fn skip_filter(&self, filters: &[Expr]) -> Option<Expr> {
        let preds: Vec<Pred> = filters.iter().map(Pred::of).filter(|p| !matches!(p, Pred::Any)).collect();
        if preds.is_empty() {
            return None;
        }
        let digest = self.digest().await?;
        let pred = Pred::And(preds).bind(&digest);
        let mut skipped: HashMap<String, HashSet<i32>> = HashMap::new();
        for (key, values) in digest.partitions() {
            if !pred.may_match(values) {
                skipped.entry(key.account).or_default().insert(key.day);
            }
        }
        if skipped.is_empty() {
            return None;
        }
        // One function call holding the set, not an expression listing thousands of partitions: the listing
        // plans the filter again for every partition directory.
        let skips =
            ScalarUDF::new_from_impl(Skipped { partitions: Arc::new(skipped), signature: Skipped::signature() });
        Some(!skips.call(vec![col(ACCOUNT_ID), col(EVENT_DATE)]))
    }
}

/// `skipped(account_id, event_date)`: whether a partition is one the digest ruled out.
#[derive(Debug)]
struct Skipped {
    /// Days since the epoch, by account.
    partitions: Arc<HashMap<String, HashSet<i32>>>,
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
            // Sigma's gate: `coalesce(p, false)` holds only where `p` does.
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
        let mut filters = args.filters().unwrap_or(&[]).to_vec();
        match self.skip_filter(&filters).await {
            Some(skip) => {
                filters.push(skip);
                self.inner.scan_with_args(state, args.with_filters(Some(&filters))).await
            }
            None => self.inner.scan_with_args(state, args).await,
        }
    }
}
