//! Reading only the fields of a struct column that a plan uses: the Parquet scan gives the struct cut down to them.
//!
//! DataFusion moves a field access (`useridentity['arn']`) into the scan only where nothing stands between them;
//! in a Sigma directory's fused query, whose filter stays above the scan (see `physical_rules`), projections of
//! common subexpressions do, and the scan gave the whole `useridentity`: twenty-five fields decoded for every
//! event, a quarter of the run on the wide benchmark lake, where the rules and `principal_name` read seven.
//!
//! When every use of a struct column, anywhere in the plan, is a field access (a column passed on under its own
//! name is not a use), each Parquet scan that gives it gives instead a struct of those fields, under the same name.
//! A plan that uses the struct otherwise, gives it as output, or passes it through an operator other than a
//! projection, filter or repartition (whose schemas follow their input's when rebuilt) is left as it is.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::DFSchema;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result;
use datafusion::execution::context::ExecutionProps;
use datafusion::functions::core::expr_fn::{get_field, named_struct};
use datafusion::logical_expr::{Expr, lit};
use datafusion::physical_expr::expressions::{Column, Literal};
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr, create_physical_expr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;

use super::coalesce::is_parquet_scan;

/// The physical optimizer rule.
#[derive(Debug, Default)]
pub struct ScanFields;

/// The column and field names of a field access (`get_field(c, 'a', 'b')` or nested accesses).
fn field_path(e: &Arc<dyn PhysicalExpr>) -> Option<(String, Vec<String>)> {
    let f = e.downcast_ref::<ScalarFunctionExpr>()?;
    if f.fun().name() != "get_field" {
        return None;
    }
    let (base, names) = f.args().split_first()?;
    let names: Vec<String> = names
        .iter()
        .map(|n| n.downcast_ref::<Literal>().and_then(|l| l.value().try_as_str().flatten().map(String::from)))
        .collect::<Option<_>>()?;
    let (column, mut path) = match base.downcast_ref::<Column>() {
        Some(c) => (c.name().to_string(), Vec::new()),
        None => field_path(base)?,
    };
    path.extend(names);
    Some((column, path))
}

/// How a plan uses the struct columns its Parquet scans give.
#[derive(Default)]
struct Uses {
    /// Per column, the field paths read.
    paths: BTreeMap<String, BTreeSet<Vec<String>>>,
    /// Columns read whole somewhere.
    whole: BTreeSet<String>,
}

impl Uses {
    fn expr(&mut self, e: &Arc<dyn PhysicalExpr>) -> Result<()> {
        e.apply(|e| {
            if let Some((column, path)) = field_path(e) {
                self.paths.entry(column).or_default().insert(path);
                return Ok(TreeNodeRecursion::Jump);
            }
            if let Some(c) = e.downcast_ref::<Column>() {
                self.whole.insert(c.name().to_string());
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        Ok(())
    }

    fn plan(&mut self, plan: &Arc<dyn ExecutionPlan>) -> Result<()> {
        plan.apply(|node| {
            // What a scan computes internally reads the file's columns, which stay as they are.
            if node.is::<DataSourceExec>() {
                return Ok(TreeNodeRecursion::Continue);
            }
            // A struct is narrowed only where it passes through nodes whose schema follows their input's when
            // they are rebuilt: an operator that keeps its own (an unnest, say) would still declare the whole.
            let follows = node.is::<ProjectionExec>()
                || node.is::<FilterExec>()
                || node.is::<RepartitionExec>()
                || node.is::<CoalescePartitionsExec>();
            if !follows {
                self.whole.extend(node.schema().fields().iter().map(|f| f.name().clone()));
            }
            if let Some(p) = node.downcast_ref::<ProjectionExec>() {
                for e in p.expr() {
                    // A column passed on under its own name is followed by its name above.
                    match e.expr.downcast_ref::<Column>() {
                        Some(c) if c.name() == e.alias => {}
                        _ => self.expr(&e.expr)?,
                    }
                }
            } else {
                node.apply_expressions(&mut |e| {
                    self.expr(e)?;
                    Ok(TreeNodeRecursion::Continue)
                })?;
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        Ok(())
    }
}

/// The struct of the fields read from `of` (whose type is `ty`): a field read whole, or a struct of its fields read.
fn narrowed(of: Expr, ty: &DataType, paths: &[&[String]]) -> Option<Expr> {
    let DataType::Struct(members) = ty else { return None };
    let mut by_name: BTreeMap<&str, Vec<&[String]>> = BTreeMap::new();
    for p in paths {
        let (name, rest) = p.split_first()?;
        by_name.entry(name).or_default().push(rest);
    }
    let mut args = Vec::new();
    for (name, rests) in by_name {
        let (_, member) = members.find(name)?;
        let value = get_field(of.clone(), name);
        let value = if rests.iter().any(|r| r.is_empty()) || !matches!(member.data_type(), DataType::Struct(_)) {
            value
        } else {
            narrowed(value, member.data_type(), &rests)?
        };
        args.extend([lit(name), value]);
    }
    Some(named_struct(args))
}

/// The scan giving each struct column that `paths` names cut down to those fields: `None` when it gives none of
/// them, or cannot take the projection.
fn narrowed_scan(
    scan: &Arc<dyn ExecutionPlan>,
    paths: &BTreeMap<String, BTreeSet<Vec<String>>>,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let schema = scan.schema();
    let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
    let mut changed = false;
    let mut exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = Vec::new();
    for (i, field) in schema.fields().iter().enumerate() {
        let name = field.name();
        let narrow = paths.get(name).and_then(|paths| {
            let paths: Vec<&[String]> = paths.iter().map(Vec::as_slice).collect();
            narrowed(Expr::Column(datafusion::common::Column::from_name(name)), field.data_type(), &paths)
        });
        let expr = match narrow {
            Some(e) => {
                changed = true;
                create_physical_expr(&e, &df_schema, &ExecutionProps::new(), &Default::default())?
            }
            None => Arc::new(Column::new(name, i)),
        };
        exprs.push((expr, name.clone()));
    }
    if !changed {
        return Ok(None);
    }
    scan.try_swapping_with_projection(&ProjectionExec::try_new(exprs, scan.clone())?)
}

/// Whether a projection declares a type its expressions no longer give over its (rebuilt) input: a projection
/// rebuilt over a new child keeps the schema it had.
fn is_stale(p: &ProjectionExec) -> Result<bool> {
    let input = p.input().schema();
    for (e, field) in p.expr().iter().zip(p.schema().fields()) {
        if e.expr.data_type(&input)? != *field.data_type() {
            return Ok(true);
        }
    }
    Ok(false)
}

impl PhysicalOptimizerRule for ScanFields {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _: &ConfigOptions) -> Result<Arc<dyn ExecutionPlan>> {
        let mut uses = Uses::default();
        uses.plan(&plan)?;
        // A struct the plan gives as output stays whole.
        uses.whole.extend(plan.schema().fields().iter().map(|f| f.name().clone()));
        uses.paths.retain(|c, _| !uses.whole.contains(c));
        if uses.paths.is_empty() {
            return Ok(plan);
        }
        let mut failed = false;
        let rewritten = plan.clone().transform_up(|node| {
            if let Some(p) = node.downcast_ref::<ProjectionExec>()
                && is_stale(p)?
            {
                let rebuilt = ProjectionExec::try_new(p.expr().to_vec(), p.input().clone())?;
                return Ok(Transformed::yes(Arc::new(rebuilt) as Arc<dyn ExecutionPlan>));
            }
            if !is_parquet_scan(&node) {
                return Ok(Transformed::no(node));
            }
            match narrowed_scan(&node, &uses.paths)? {
                Some(scan) => Ok(Transformed::yes(scan)),
                None => {
                    failed |= uses.paths.keys().any(|c| node.schema().field_with_name(c).is_ok());
                    Ok(Transformed::no(node))
                }
            }
        })?;
        Ok(if failed || !rewritten.transformed { plan } else { rewritten.data })
    }

    fn name(&self) -> &str {
        "ScanFields"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
