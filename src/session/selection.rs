//! Boolean operators evaluated cheaply: `AND` and `OR` over only the columns they read, `IS [NOT] TRUE|FALSE`
//! with bitmaps.
//!
//! DataFusion evaluates the right side of `a AND b` only over the rows where `a` holds, when they are few (a
//! fifth of the batch or less; for `OR`, the rows where `a` does not hold): it filters the batch down to them.
//! The whole batch, every column: in a Sigma directory's fused query, where each rule is `eventsource = … AND
//! eventname …` over a stream of thirty columns (the payload texts among them), that copying was an eighth of
//! the run on the narrow benchmark lake. (For `CASE`, DataFusion 55 projects the batch first itself.)
//!
//! Each `AND` and `OR` of a filter's predicate or a projection's expressions that reads fewer columns than its
//! input has becomes a [`Narrowed`]: it projects the batch onto the columns the operator reads, then evaluates
//! the operator, renumbered, over that, with DataFusion's own short-circuits. Nested operators narrow again, and
//! so do operators with a lambda (`any_element` of a Sigma rule's payload path): left out, as they once were,
//! each rule over a JSON path parsed the payload of every kept event.
//!
//! `x IS TRUE` is planned as `x IS NOT DISTINCT FROM true`, which arrow compares value by value through a
//! closure; each condition of a Sigma rule is one (a condition that is never NULL, so that `NOT` keeps the events
//! where a field is missing), and they were a twentieth of the narrow benchmark's CPU. A [`Truth`] gives the same
//! answer from the operand's values and validity bitmaps, 64 rows at a time.
//!
//! Everything else about the expressions (their type, their display, their children for the optimizer's walks)
//! is the original's. Not installed under Ballista, which ships physical plans to its executors as protobuf.

use std::collections::BTreeSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::compute::kernels::boolean::{and_kleene, or_kleene};
use datafusion::arrow::datatypes::{DataType, FieldRef, Schema};
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::logical_expr::{ColumnarValue, Operator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, LambdaExpr, LambdaVariable, Literal};
use datafusion::physical_expr::{HigherOrderFunctionExpr, ScalarFunctionExpr};
use datafusion::physical_expr_common::utils::scatter;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};

/// The physical optimizer rule.
#[derive(Debug, Default)]
pub struct NarrowSelections;

impl PhysicalOptimizerRule for NarrowSelections {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _: &ConfigOptions) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let width = |input: &Arc<dyn ExecutionPlan>| input.schema().fields().len();
            if let Some(filter) = node.downcast_ref::<FilterExec>() {
                let predicate = narrow(filter.predicate(), width(filter.input()), None)?;
                if !predicate.transformed {
                    return Ok(Transformed::no(node));
                }
                let rebuilt = FilterExecBuilder::from(filter).with_predicate(predicate.data).build()?;
                return Ok(Transformed::yes(Arc::new(rebuilt) as Arc<dyn ExecutionPlan>));
            }
            if let Some(projection) = node.downcast_ref::<ProjectionExec>() {
                let (width, mut changed) = (width(projection.input()), false);
                let exprs = projection
                    .expr()
                    .iter()
                    .map(|p| {
                        let e = narrow(&p.expr, width, None)?;
                        changed |= e.transformed;
                        Ok(ProjectionExpr { expr: e.data, alias: p.alias.clone() })
                    })
                    .collect::<Result<Vec<_>>>()?;
                if !changed {
                    return Ok(Transformed::no(node));
                }
                // The projection's schema as it was, metadata and all: the expressions' types are unchanged.
                let rebuilt =
                    ProjectionExec::try_new_with_schema_metadata(exprs, projection.input().clone(), &node.schema())?;
                return Ok(Transformed::yes(Arc::new(rebuilt) as Arc<dyn ExecutionPlan>));
            }
            Ok(Transformed::no(node))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "NarrowSelections"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The expression with each `AND` and `OR` that reads fewer than `width` columns (the columns of the batch it
/// is given) narrowed, and each `IS [NOT] TRUE|FALSE` a [`Truth`]. A chain of one operator (`a OR b OR c`,
/// `(a OR b) OR c` as planned) is narrowed at its top only: its inner links filter nothing the top would not, and
/// narrowing each would renumber the chain once per link. `within` is the operator of the expression's parent,
/// when it is `AND` or `OR`.
fn narrow(
    expr: &Arc<dyn PhysicalExpr>,
    width: usize,
    within: Option<Operator>,
) -> Result<Transformed<Arc<dyn PhysicalExpr>>> {
    // A lambda's body is evaluated over a batch of its own (the columns it captures, then its parameters), which
    // the numbers of this one do not describe.
    if expr.is::<LambdaExpr>() {
        return Ok(Transformed::no(expr.clone()));
    }
    let op = and_or(expr);
    if op.is_some()
        && op != within
        && let Some(columns) = columns_read(expr, width)
        && !columns.is_empty()
        && columns.len() < width
    {
        return Ok(Transformed::yes(Arc::new(Narrowed::new(expr.clone(), columns, width)?)));
    }
    if let Some(truth) = Truth::of(expr, width)? {
        return Ok(Transformed::yes(Arc::new(truth)));
    }
    narrow_children(expr, width, op)
}

/// The expression with its operands narrowed; `op` is its own operator, when `AND` or `OR`.
fn narrow_children(
    expr: &Arc<dyn PhysicalExpr>,
    width: usize,
    op: Option<Operator>,
) -> Result<Transformed<Arc<dyn PhysicalExpr>>> {
    let mut changed = false;
    let children = expr
        .children()
        .into_iter()
        .map(|c| {
            let c = narrow(c, width, op)?;
            changed |= c.transformed;
            Ok(c.data)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(if changed {
        Transformed::yes(expr.clone().with_new_children(children)?)
    } else {
        Transformed::no(expr.clone())
    })
}

fn and_or(expr: &Arc<dyn PhysicalExpr>) -> Option<Operator> {
    let op = *expr.downcast_ref::<BinaryExpr>()?.op();
    matches!(op, Operator::And | Operator::Or).then_some(op)
}

/// The indices of the columns an expression reads from a batch of `width` columns, in order, a lambda's body
/// included (it reads the columns it captures under their own numbers).
///
/// A lambda's variables are numbered after the batch's columns (the first parameter of a lambda over `width`
/// columns is `width`); `None` when one is not, which the renumbering of [`Narrowed::new`] could not follow.
fn columns_read(expr: &Arc<dyn PhysicalExpr>, width: usize) -> Option<Vec<usize>> {
    let mut columns = BTreeSet::new();
    let mut numbered_apart = true;
    expr.apply(|e| {
        if let Some(c) = e.downcast_ref::<Column>() {
            columns.insert(c.index());
        } else if let Some(v) = e.downcast_ref::<LambdaVariable>() {
            numbered_apart &= v.index() >= width;
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .expect("the walk cannot fail");
    numbered_apart.then(|| columns.into_iter().collect())
}

/// An expression as DataFusion planned it, evaluated another way (`W`). Its type, display, equality and children
/// (what the optimizer's walks and `EXPLAIN` see) are the original's; the way is derived from it.
#[derive(Debug)]
pub struct Rewritten<W> {
    original: Arc<dyn PhysicalExpr>,
    way: W,
}

/// How a [`Rewritten`] expression is evaluated, and rewritten again from a new original.
pub trait Way: fmt::Debug + Send + Sync + 'static {
    fn evaluate(&self, original: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> Result<ColumnarValue>;

    /// The expression rewritten from `original`, given anew by the optimizer (its columns may be renumbered);
    /// `original` itself when it can no longer be.
    fn again(&self, original: Arc<dyn PhysicalExpr>) -> Result<Arc<dyn PhysicalExpr>>;
}

impl<W> PartialEq for Rewritten<W> {
    fn eq(&self, other: &Self) -> bool {
        self.original.eq(&other.original)
    }
}

impl<W> Eq for Rewritten<W> {}

impl<W> Hash for Rewritten<W> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.original.hash(state);
    }
}

impl<W> fmt::Display for Rewritten<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.original.fmt(f)
    }
}

impl<W: Way> PhysicalExpr for Rewritten<W> {
    fn data_type(&self, input_schema: &Schema) -> Result<DataType> {
        self.original.data_type(input_schema)
    }

    fn nullable(&self, input_schema: &Schema) -> Result<bool> {
        self.original.nullable(input_schema)
    }

    fn return_field(&self, input_schema: &Schema) -> Result<FieldRef> {
        self.original.return_field(input_schema)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        self.way.evaluate(&self.original, batch)
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.original]
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn PhysicalExpr>>) -> Result<Arc<dyn PhysicalExpr>> {
        let [original] = <[_; 1]>::try_from(children).expect("one child");
        self.way.again(original)
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.original.fmt_sql(f)
    }
}

/// An `AND` or `OR` evaluated over the batch projected onto the columns it reads.
pub type Narrowed = Rewritten<Projected>;

#[derive(Debug)]
pub struct Projected {
    /// The columns the operator reads, in the order of the projected batch.
    projection: Vec<usize>,
    /// The operator renumbered over the projected batch, its own operators narrowed again.
    projected: Arc<dyn PhysicalExpr>,
    /// Whether its right operand calls a function: that one is then computed only over the rows it decides.
    costly_right: bool,
    /// The number of columns of the batch it is given.
    width: usize,
}

/// The share of a batch's rows, at most, over which the right operand of `AND` (or `OR`) is computed alone, for the
/// rows it decides; above it, over the whole batch, and no copy of those rows is made.
///
/// DataFusion does that at a fifth of the rows, whatever the operand. In a Sigma directory's stream the rules with
/// payload fields are `eventName: X AND <a JSON path>`; where X is a third of the kept events (`CreateAccessKey`
/// and `GetParameter` on the narrow benchmark lake, 92,000 of its 155,000), every payload was parsed for each
/// such rule. Copying the rows the path is read for costs far less than parsing the others.
const COSTLY_SELECTION: usize = 80;

impl Narrowed {
    /// `original` over a batch of `width` columns, narrowed to those of `projection`. A lambda's variables, numbered
    /// after the batch's columns, are numbered after the projection's; its captured columns are renumbered as the
    /// others are, and each lambda, rebuilt from its renumbered body, captures them under their new numbers.
    fn new(original: Arc<dyn PhysicalExpr>, projection: Vec<usize>, width: usize) -> Result<Narrowed> {
        let renumbered = original
            .clone()
            .transform_down(|e| {
                let renumbered: Arc<dyn PhysicalExpr> = if let Some(c) = e.downcast_ref::<Column>() {
                    let at = projection.binary_search(&c.index()).expect("every column read is projected");
                    Arc::new(Column::new(c.name(), at))
                } else if let Some(v) = e.downcast_ref::<LambdaVariable>() {
                    Arc::new(LambdaVariable::new(v.index() - width + projection.len(), v.field().clone()))
                } else {
                    return Ok(Transformed::no(e));
                };
                Ok(Transformed::yes(renumbered))
            })?
            .data;
        // Its operands narrow within the projected batch: `a AND (b OR c)` over three columns gives `b OR c`
        // two.
        let projected = narrow_children(&renumbered, projection.len(), and_or(&renumbered))?.data;
        let costly_right = projected.downcast_ref::<BinaryExpr>().is_some_and(|b| {
            b.right()
                .exists(|n| Ok(n.is::<ScalarFunctionExpr>() || n.is::<HigherOrderFunctionExpr>()))
                .expect("the walk cannot fail")
        });
        Ok(Rewritten { original, way: Projected { projection, projected, costly_right, width } })
    }
}

/// `left AND right` (`and`) or `left OR right`, `right` computed over the rows whose result it decides (where `left`
/// is true for `AND`, false for `OR`, or NULL) when they are few enough.
fn selective(operator: &BinaryExpr, batch: &RecordBatch) -> Result<ColumnarValue> {
    let (and, right, rows) = (*operator.op() == Operator::And, operator.right(), batch.num_rows());
    let l = operator.left().evaluate(batch)?.into_array(rows)?;
    let Some(l) = l.as_boolean_opt() else {
        return operator.evaluate(batch);
    };
    let combine = |r: &dyn Array| -> Result<ColumnarValue> {
        let r = r.as_boolean();
        let out = if and { and_kleene(l, r)? } else { or_kleene(l, r)? };
        Ok(ColumnarValue::Array(Arc::new(out)))
    };
    let decided = match (l.nulls(), and) {
        // A NULL left leaves the result to the right on that row as well.
        (Some(valid), true) => l.values() | &!valid.inner(),
        (Some(valid), false) => !&(l.values() & valid.inner()),
        (None, true) => l.values().clone(),
        (None, false) => !l.values(),
    };
    let n = decided.count_set_bits();
    if n == 0 {
        return Ok(ColumnarValue::Array(Arc::new(l.clone())));
    }
    if n * 100 > rows * COSTLY_SELECTION {
        return combine(&right.evaluate(batch)?.into_array(rows)?);
    }
    let mask = BooleanArray::new(decided, None);
    let some = filter_record_batch(batch, &mask)?;
    let r = right.evaluate(&some)?.into_array(some.num_rows())?;
    // The rows left out are decided by `left`: whatever `scatter` puts there (NULL) does not change them.
    combine(&scatter(&mask, &r)?)
}

impl Way for Projected {
    fn evaluate(&self, _: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> Result<ColumnarValue> {
        let batch = batch.project(&self.projection)?;
        match self.projected.downcast_ref::<BinaryExpr>().filter(|_| self.costly_right) {
            Some(operator) => selective(operator, &batch),
            None => self.projected.evaluate(&batch),
        }
    }

    /// A lambda's variables are numbered after the columns of the batch it was planned over; given anew, the
    /// operator may be over another batch (its columns renumbered), and is then left as it is.
    fn again(&self, original: Arc<dyn PhysicalExpr>) -> Result<Arc<dyn PhysicalExpr>> {
        if original.exists(|e| Ok(e.is::<LambdaVariable>())).expect("the walk cannot fail") {
            return Ok(original);
        }
        Ok(match columns_read(&original, self.width) {
            Some(columns) => Arc::new(Narrowed::new(original, columns, self.width)?),
            None => original,
        })
    }
}

/// `x IS [NOT] DISTINCT FROM true|false` over a boolean `x` (`x IS TRUE`, `x IS NOT FALSE`, …), evaluated with
/// bitmaps: never NULL.
pub type Truth = Rewritten<Bitmaps>;

#[derive(Debug)]
pub struct Bitmaps {
    /// `x`, its own operators narrowed.
    operand: Arc<dyn PhysicalExpr>,
    /// The value compared with.
    value: bool,
    /// `IS DISTINCT FROM`: the rows where `x` is not `value`.
    negated: bool,
    /// The number of columns of the batch it is given, to narrow a new operand with.
    width: usize,
}

impl Truth {
    /// The expression as a `Truth`, when it is such a comparison.
    fn of(expr: &Arc<dyn PhysicalExpr>, width: usize) -> Result<Option<Truth>> {
        let Some(binary) = expr.downcast_ref::<BinaryExpr>() else {
            return Ok(None);
        };
        let negated = match binary.op() {
            Operator::IsNotDistinctFrom => false,
            Operator::IsDistinctFrom => true,
            _ => return Ok(None),
        };
        let Some(&ScalarValue::Boolean(Some(value))) = binary.right().downcast_ref::<Literal>().map(|l| l.value())
        else {
            return Ok(None);
        };
        let operand = narrow(binary.left(), width, None)?.data;
        Ok(Some(Rewritten { original: expr.clone(), way: Bitmaps { operand, value, negated, width } }))
    }
}

impl Way for Bitmaps {
    fn evaluate(&self, original: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> Result<ColumnarValue> {
        let is = |x: Option<bool>| (x == Some(self.value)) != self.negated;
        Ok(match self.operand.evaluate(batch)? {
            ColumnarValue::Scalar(ScalarValue::Boolean(x)) => ColumnarValue::Scalar(ScalarValue::Boolean(Some(is(x)))),
            ColumnarValue::Array(a) if a.data_type() == &DataType::Boolean => {
                let a = a.as_boolean();
                let values = if self.value { a.values().clone() } else { !a.values() };
                let equal = match a.nulls() {
                    Some(valid) => &values & valid.inner(),
                    None => values,
                };
                let bits = if self.negated { !&equal } else { equal };
                ColumnarValue::Array(Arc::new(BooleanArray::new(bits, None)))
            }
            // Not a boolean after all: DataFusion's comparison says what it means.
            _ => original.evaluate(batch)?,
        })
    }

    fn again(&self, original: Arc<dyn PhysicalExpr>) -> Result<Arc<dyn PhysicalExpr>> {
        Ok(match Truth::of(&original, self.width)? {
            Some(truth) => Arc::new(truth),
            None => original,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ArrayRef, BooleanArray, Int32Array, StringArray};
    use datafusion::arrow::datatypes::Field;
    use datafusion::common::ScalarValue;
    use datafusion::physical_expr::expressions::{binary, col, lit};
    use datafusion::physical_plan::collect;
    use datafusion::physical_plan::test::TestMemoryExec;
    use datafusion::prelude::SessionContext;

    /// Six columns; `a = 1` holds in one row of ten (so `AND` evaluates its right side over those rows only),
    /// with NULLs in every column.
    fn batch() -> RecordBatch {
        let n = 1000;
        let int =
            |m: i32| -> ArrayRef { Arc::new((0..n).map(|i| (i % 17 != 3).then_some(i % m)).collect::<Int32Array>()) };
        let text = |k: i32| -> ArrayRef {
            Arc::new((0..n).map(|i| (i % 13 != k).then(|| format!("v{}", i % 7))).collect::<StringArray>())
        };
        let flag: ArrayRef = Arc::new((0..n).map(|i| (i % 11 != 0).then_some(i % 3 == 0)).collect::<BooleanArray>());
        let schema = Schema::new(
            ["a", "b", "c", "d", "e", "f"]
                .iter()
                .zip([
                    DataType::Int32,
                    DataType::Utf8,
                    DataType::Boolean,
                    DataType::Int32,
                    DataType::Utf8,
                    DataType::Utf8,
                ])
                .map(|(name, t)| Field::new(*name, t, true))
                .collect::<Vec<_>>(),
        );
        RecordBatch::try_new(Arc::new(schema), vec![int(10), text(1), flag, int(7), text(2), text(5)]).unwrap()
    }

    fn predicates(schema: &Schema) -> Vec<Arc<dyn PhysicalExpr>> {
        let c = |name: &str| col(name, schema).unwrap();
        let bin = |l, op, r| binary(l, op, r, schema).unwrap();
        let eq = |name: &str, v: ScalarValue| bin(c(name), Operator::Eq, lit(v));
        let a1 = || eq("a", ScalarValue::Int32(Some(1)));
        let b = || eq("b", ScalarValue::from("v3"));
        vec![
            bin(a1(), Operator::And, b()),
            bin(
                bin(a1(), Operator::And, c("c")),
                Operator::Or,
                bin(eq("d", ScalarValue::Int32(Some(2))), Operator::And, b()),
            ),
            // A chain of ORs over every column: narrowed at its operands, not at its links.
            bin(
                bin(
                    bin(bin(a1(), Operator::And, b()), Operator::Or, c("c")),
                    Operator::Or,
                    bin(eq("d", ScalarValue::Int32(Some(2))), Operator::And, eq("e", ScalarValue::from("v2"))),
                ),
                Operator::Or,
                eq("f", ScalarValue::from("v1")),
            ),
            bin(bin(a1(), Operator::And, c("c")), Operator::And, eq("e", ScalarValue::from("v2"))),
        ]
    }

    #[test]
    fn narrowed_operators_give_what_the_originals_give() {
        let batch = batch();
        for original in predicates(&batch.schema()) {
            let narrowed = narrow(&original, batch.num_columns(), None).unwrap();
            assert!(narrowed.transformed, "{original}");
            let narrowed = narrowed.data;
            assert_eq!(narrowed.to_string(), original.to_string());
            let want = original.evaluate(&batch).unwrap().into_array(batch.num_rows()).unwrap();
            let got = narrowed.evaluate(&batch).unwrap().into_array(batch.num_rows()).unwrap();
            assert_eq!(&got, &want, "{original}");
        }
    }

    #[test]
    fn each_operator_reads_the_columns_it_needs() {
        let schema = batch().schema();
        let [and, or_of_ands, chain, _] = <[_; 4]>::try_from(predicates(&schema)).unwrap();
        let projection = |e: &Arc<dyn PhysicalExpr>| e.downcast_ref::<Narrowed>().map(|n| n.way.projection.clone());

        assert_eq!(projection(&narrow(&and, 6, None).unwrap().data), Some(vec![0, 1]));
        // Not over an input of only the columns it reads.
        assert!(!narrow(&and, 2, None).unwrap().transformed);

        // (a = 1 AND c) OR (d = 2 AND b = …) reads a, b, c, d; its ANDs, within those four, two each.
        let or_of_ands = narrow(&or_of_ands, 6, None).unwrap().data;
        assert_eq!(projection(&or_of_ands), Some(vec![0, 1, 2, 3]));
        let inner = &or_of_ands.downcast_ref::<Narrowed>().unwrap().way.projected;
        let operands: Vec<_> = inner.children().into_iter().map(projection).collect();
        assert_eq!(operands, [Some(vec![0, 2]), Some(vec![1, 3])]);

        // The OR chain reads all six columns: its links are left as they are, its AND narrowed.
        let chain = narrow(&chain, 6, None).unwrap().data;
        assert!(projection(&chain).is_none());
        let links = [chain.children()[0], chain.children()[0].children()[0]];
        assert!(links.iter().all(|l| projection(l).is_none()), "{chain}");
        assert_eq!(projection(links[0].children()[1]), Some(vec![3, 4]));
        assert_eq!(projection(links[1].children()[0]), Some(vec![0, 1]));
    }

    /// An operator whose right operand calls a function computes it over the rows it decides alone, when they are
    /// few enough: for `AND` and `OR`, with NULLs on the left (the right decides those rows too), with the left
    /// deciding every row, none, few or most of them.
    #[test]
    fn a_costly_right_operand_gives_what_the_original_gives() {
        let batch = batch();
        let schema = batch.schema();
        let c = |name: &str| col(name, &schema).unwrap();
        let bin = |l, op, r| binary(l, op, r, &schema).unwrap();
        let upper = |name: &str| {
            let f = datafusion::functions::string::upper();
            let call = ScalarFunctionExpr::try_new(f, vec![c(name)], &schema, Arc::new(ConfigOptions::default()));
            bin(Arc::new(call.unwrap()), Operator::Eq, lit(ScalarValue::from("V3")))
        };
        let lefts = [
            c("c"),
            bin(c("a"), Operator::Eq, lit(ScalarValue::Int32(Some(1)))),
            bin(c("a"), Operator::NotEq, lit(ScalarValue::Int32(Some(1)))),
            bin(c("a"), Operator::Lt, lit(ScalarValue::Int32(Some(100)))),
            bin(c("a"), Operator::Gt, lit(ScalarValue::Int32(Some(100)))),
        ];
        for left in lefts {
            for op in [Operator::And, Operator::Or] {
                let original = bin(left.clone(), op, upper("b"));
                let narrowed = narrow(&original, batch.num_columns(), None).unwrap().data;
                assert!(narrowed.downcast_ref::<Narrowed>().unwrap().way.costly_right, "{original}");
                let want = original.evaluate(&batch).unwrap().into_array(batch.num_rows()).unwrap();
                let got = narrowed.evaluate(&batch).unwrap().into_array(batch.num_rows()).unwrap();
                assert_eq!(&got, &want, "{original}");
            }
        }
    }

    /// Operators whose right operand holds a lambda (a Sigma rule's payload path, `any_element`), capturing a
    /// column or not, in a filter and in a projection: narrowed, their lambdas' columns and variables renumbered,
    /// the right operand computed over the rows it decides, and the same rows and values as DataFusion's.
    #[tokio::test]
    async fn operators_with_lambdas_are_narrowed_and_give_the_same_answers() {
        let batch = batch();
        let ctx = SessionContext::new();
        for f in trailsql_udfs::all() {
            ctx.register_udf(f.as_ref().clone());
        }
        let table = datafusion::datasource::MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap();
        ctx.register_table("t", Arc::new(table)).unwrap();
        let conditions = [
            "a = 1 AND any_element(make_array(b, e), element() = f)",
            "a < 3 AND any_element(make_array(b, e), upper(element()) = 'V3')",
            "d = 2 OR any_element(make_array(e), element() = b OR element() = 'v1')",
        ];
        for condition in conditions {
            for sql in [format!("SELECT * FROM t WHERE {condition}"), format!("SELECT ({condition}) AS x, c FROM t")] {
                let plan = ctx.sql(&sql).await.unwrap().create_physical_plan().await.unwrap();
                let narrowed = NarrowSelections.optimize(plan.clone(), &ConfigOptions::default()).unwrap();
                let mut lambdas_narrowed = 0;
                narrowed
                    .apply(|node| {
                        let exprs: Vec<Arc<dyn PhysicalExpr>> = match node.downcast_ref::<FilterExec>() {
                            Some(f) => vec![f.predicate().clone()],
                            None => node
                                .downcast_ref::<ProjectionExec>()
                                .map(|p| p.expr().iter().map(|e| e.expr.clone()).collect())
                                .unwrap_or_default(),
                        };
                        for e in exprs {
                            if let Some(n) = e.downcast_ref::<Narrowed>() {
                                let lambda = n.way.projected.exists(|e| Ok(e.is::<LambdaVariable>())).unwrap();
                                lambdas_narrowed += usize::from(lambda && n.way.costly_right);
                            }
                        }
                        Ok(TreeNodeRecursion::Continue)
                    })
                    .unwrap();
                assert_eq!(lambdas_narrowed, 1, "{sql}");
                let want = collect(plan, ctx.task_ctx()).await.unwrap();
                let got = collect(narrowed, ctx.task_ctx()).await.unwrap();
                assert!(want.iter().map(RecordBatch::num_rows).sum::<usize>() > 0, "{sql}");
                assert_eq!(got, want, "{sql}");
            }
        }
    }

    /// `IS [NOT] TRUE|FALSE` over a column with NULLs, over a slice of it (bitmaps at an offset), over a
    /// comparison, and over a constant: the answers of DataFusion's comparison, never NULL.
    #[test]
    fn truths_give_what_the_comparisons_give() {
        let whole = batch();
        let schema = whole.schema();
        let c = |name: &str| col(name, &schema).unwrap();
        let a1 = binary(c("a"), Operator::Eq, lit(ScalarValue::Int32(Some(1))), &schema).unwrap();
        let null = lit(ScalarValue::Boolean(None));
        for batch in [whole.clone(), whole.slice(3, 500)] {
            for operand in [c("c"), a1.clone(), null.clone(), lit(true)] {
                for op in [Operator::IsNotDistinctFrom, Operator::IsDistinctFrom] {
                    for value in [true, false] {
                        let original = binary(operand.clone(), op, lit(value), &schema).unwrap();
                        let truth = narrow(&original, batch.num_columns(), None).unwrap();
                        assert!(truth.transformed && truth.data.downcast_ref::<Truth>().is_some(), "{original}");
                        assert_eq!(truth.data.to_string(), original.to_string());
                        let n = batch.num_rows();
                        let want = original.evaluate(&batch).unwrap().into_array(n).unwrap();
                        let got = truth.data.evaluate(&batch).unwrap().into_array(n).unwrap();
                        assert_eq!(&got, &want, "{original}");
                        assert_eq!(got.null_count(), 0);
                    }
                }
            }
        }
        // An AND under a truth narrows; a truth under an AND is one.
        let and = binary(a1.clone(), Operator::And, c("c"), &schema).unwrap();
        let is_true = binary(and.clone(), Operator::IsNotDistinctFrom, lit(true), &schema).unwrap();
        let truth = narrow(&is_true, 6, None).unwrap().data;
        assert!(truth.downcast_ref::<Truth>().unwrap().way.operand.downcast_ref::<Narrowed>().is_some());
        let under = binary(is_true, Operator::And, c("b"), &schema).unwrap();
        let narrowed = narrow(&under, 6, None).unwrap().data;
        let projected = &narrowed.downcast_ref::<Narrowed>().unwrap().way.projected;
        assert!(projected.children()[0].downcast_ref::<Truth>().is_some(), "{projected:?}");
        // Not every comparison: `IS NOT DISTINCT FROM` a column, or `=` true, stays as it is.
        for op in [Operator::IsNotDistinctFrom, Operator::Eq] {
            let other = if op == Operator::Eq { lit(true) } else { c("c") };
            assert!(!narrow(&binary(c("c"), op, other, &schema).unwrap(), 2, None).unwrap().transformed);
        }
    }

    #[tokio::test]
    async fn filters_and_projections_are_narrowed_and_give_the_same_rows() {
        let batch = batch();
        let schema = batch.schema();
        let input = TestMemoryExec::try_new_exec(&[vec![batch.clone()]], schema.clone(), None).unwrap();
        let [predicate, computed, ..] = <[_; 4]>::try_from(predicates(&schema)).unwrap();
        let filter: Arc<dyn ExecutionPlan> = Arc::new(FilterExec::try_new(predicate, input.clone()).unwrap());
        let exprs = vec![
            ProjectionExpr { expr: computed, alias: "x".into() },
            ProjectionExpr { expr: col("b", &schema).unwrap(), alias: "b".into() },
        ];
        let projection: Arc<dyn ExecutionPlan> = Arc::new(ProjectionExec::try_new(exprs, input).unwrap());
        let ctx = SessionContext::new();
        for plan in [filter, projection] {
            let narrowed = NarrowSelections.optimize(plan.clone(), &ConfigOptions::default()).unwrap();
            let exprs: Vec<_> = match narrowed.downcast_ref::<FilterExec>() {
                Some(f) => vec![f.predicate().clone()],
                None => {
                    narrowed.downcast_ref::<ProjectionExec>().unwrap().expr().iter().map(|p| p.expr.clone()).collect()
                }
            };
            assert!(exprs[0].downcast_ref::<Narrowed>().is_some(), "{}", exprs[0]);
            assert_eq!(narrowed.schema(), plan.schema());
            let want = collect(plan, ctx.task_ctx()).await.unwrap();
            let got = collect(narrowed, ctx.task_ctx()).await.unwrap();
            assert_eq!(got, want);
        }
    }
}
