//! Coalescing the lake scan's batches before any operator evaluates them.
//!
//! A lake as organizations write it holds a file per account, Region and day, most of a few dozen events, and the
//! Parquet scan gives each file's rows as a batch of their own: on the wide benchmark lake (311,535 events in
//! 10,800 files) a batch held 29 events on average. Every operator above the scan pays its costs per batch
//! (evaluating each expression sets up its arguments and output, a window operator searches its partitions, a
//! filter checks its selectivity), so a Sigma directory's sixty conditions were set up 10,800 times for 29 rows
//! each. Put together to the session's batch size first, the Sigma run over that lake took 1.7 s instead of 2.4,
//! and privileged_sessions about a tenth less. A scan of large files gives full batches already: the narrow
//! benchmark's times did not change.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::datasource::physical_plan::ParquetSource;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
// DataFusion deprecated the operator for its own plans (its filters and joins now coalesce their output within
// themselves), but nothing coalesces what a scan gives to the operators above it, and this does exactly that.
#[allow(deprecated)]
use datafusion::physical_plan::coalesce_batches::CoalesceBatchesExec;

/// The physical optimizer rule that puts a [`CoalesceBatchesExec`] above each Parquet scan, unless a `LIMIT` is on
/// the scan's parent: a `LIMIT` stops reading as early as before (the coalescing keeps a limit on the scan itself).
#[derive(Debug, Default)]
pub struct CoalesceScans;

/// Whether a plan node is a scan of Parquet files.
pub(crate) fn is_parquet_scan(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.downcast_ref::<DataSourceExec>().is_some_and(|s| s.downcast_to_file_source::<ParquetSource>().is_some())
}

impl PhysicalOptimizerRule for CoalesceScans {
    #[allow(deprecated)]
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, config: &ConfigOptions) -> Result<Arc<dyn ExecutionPlan>> {
        let batch_size = config.execution.batch_size.into();
        let coalesced = |scan: &Arc<dyn ExecutionPlan>| -> Arc<dyn ExecutionPlan> {
            Arc::new(CoalesceBatchesExec::new(scan.clone(), batch_size).with_fetch(scan.fetch()))
        };
        plan.transform_down(|node| {
            if node.is::<CoalesceBatchesExec>() {
                return Ok(Transformed::new(node, false, TreeNodeRecursion::Jump));
            }
            let children = node.children();
            // Under an operator that stops at a number of rows (a filter with a LIMIT), gathering 8,192 rows
            // first would read on past them.
            if node.fetch().is_some() || !children.iter().any(|c| is_parquet_scan(c)) {
                return Ok(Transformed::no(node));
            }
            let children =
                children.into_iter().map(|c| if is_parquet_scan(c) { coalesced(c) } else { c.clone() }).collect();
            Ok(Transformed::yes(node.with_new_children(children)?))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "CoalesceScans"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
