//! Coalescing the lake scan's batches before any operator evaluates them.
//!
//! A lake as organizations write it holds a file per account, Region and day, most of a few dozen events, and the
//! Parquet scan gives each file's rows as a batch of their own: on the wide benchmark lake (311,535 events in
//! 10,800 files) a batch held 29 events on average. Every operator above the scan pays its costs per batch
//! (evaluating each expression sets up its arguments and output, a window operator searches its partitions, a
//! filter checks its selectivity), so a Sigma directory's sixty conditions were set up 10,800 times for 29 rows
//! each. Put together to the session's batch size first, the Sigma run over that lake took 1.7 s instead of 2.4,
//! and privileged_sessions about a tenth less.
//!
//! A scan of large files gives full batches already, but for each row group's last: once such a remainder waits in
//! the coalescer, every later batch is copied in behind it, column by column, and cut again. A scan whose files
//! are all of [`SMALL_FILE`] or more is left as it is: on the narrow benchmark lake (files of 3.7 MB) the
//! coalescing copied every column the Sigma run read, 30 ms of its CPU, for nothing.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::datasource::physical_plan::{FileScanConfig, ParquetSource};
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

/// A file of fewer bytes may hold fewer events than a batch: at a hundred to a few hundred bytes an event in
/// Parquet, a file of a megabyte holds thousands.
pub const SMALL_FILE: u64 = 1 << 20;

/// Whether a plan node is a scan of Parquet files.
pub(crate) fn is_parquet_scan(plan: &Arc<dyn ExecutionPlan>) -> bool {
    parquet_scan(plan).is_some()
}

fn parquet_scan(plan: &Arc<dyn ExecutionPlan>) -> Option<&FileScanConfig> {
    plan.downcast_ref::<DataSourceExec>()?.downcast_to_file_source::<ParquetSource>().map(|(config, _)| config)
}

/// Whether a plan node is a scan of Parquet files of which some are small, whose batches are worth coalescing.
fn scans_small_files(plan: &Arc<dyn ExecutionPlan>) -> bool {
    parquet_scan(plan)
        .is_some_and(|c| c.file_groups.iter().flat_map(|g| g.iter()).any(|f| f.object_meta.size < SMALL_FILE))
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
            // Each scan's file list looked through once (a lake can hold tens of thousands of files).
            let small: Vec<bool> = children.iter().map(|c| scans_small_files(c)).collect();
            // Under an operator that stops at a number of rows (a filter with a LIMIT), gathering 8,192 rows
            // first would read on past them.
            if node.fetch().is_some() || !small.contains(&true) {
                return Ok(Transformed::no(node));
            }
            let children = children
                .into_iter()
                .zip(small)
                .map(|(c, small)| if small { coalesced(c) } else { c.clone() })
                .collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::listing::PartitionedFile;
    use datafusion::datasource::physical_plan::FileScanConfigBuilder;
    use datafusion::execution::object_store::ObjectStoreUrl;
    use datafusion::physical_expr::expressions::lit;
    use datafusion::physical_plan::filter::FilterExec;

    /// A filter over a scan of files of these sizes, as the rule leaves it.
    fn planned(sizes: &[u64]) -> String {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Utf8, true)]));
        let source = Arc::new(ParquetSource::new(schema));
        let config = sizes
            .iter()
            .enumerate()
            .fold(FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), source), |b, (i, size)| {
                b.with_file(PartitionedFile::new(format!("f{i}.parquet"), *size))
            })
            .build();
        let scan: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(config);
        let filter = Arc::new(FilterExec::try_new(lit(true), scan).unwrap());
        let plan = CoalesceScans.optimize(filter, &ConfigOptions::default()).unwrap();
        datafusion::physical_plan::displayable(plan.as_ref()).indent(true).to_string()
    }

    /// Small files' batches are coalesced; a scan of large files only, whose batches are full but for each row
    /// group's last, is left alone, as a coalescer would copy every batch in behind such a remainder.
    #[test]
    fn only_scans_of_small_files_are_coalesced() {
        let coalesced = |sizes: &[u64]| planned(sizes).contains("CoalesceBatchesExec: target_batch_size=8192");
        assert!(coalesced(&[20_000, 35_000]));
        assert!(coalesced(&[4 << 20, 20_000]), "a lake of both");
        assert!(!coalesced(&[SMALL_FILE, 4 << 20]), "{}", planned(&[SMALL_FILE, 4 << 20]));
    }
}
