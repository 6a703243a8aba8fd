//! A subquery computed once per statement for every part of the statement that reads it: the `WITH sigma_stream
//! AS (…)` of a Sigma rule directory's query, read by its detections and by each of its correlations.
//!
//! DataFusion copies a common table expression into every place that names it, so each reader scans the lake
//! again. For the subquery named [`NAME`], when every reference is the same plan, [`ShareStream`] (an analyzer
//! rule) puts a [`SharedTable`] in their place: the subquery is planned once, and each of its partitions, executed
//! once, hands every batch to each reader. Readers take the columns they need and filter on their own.
//!
//! Batches wait in a reader's queue until it takes them: a reader that is never executed while another runs keeps
//! what the stream gave in memory until the statement ends. Every reader of a Sigma query is a branch of one
//! `UNION ALL`, all of them executed and read together.
//!
//! Under Ballista (which ships plans to other processes) the rule is not installed: each reader scans again.

use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::array::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::config::ConfigOptions;
use datafusion::common::runtime::SpawnedTask;
use datafusion::common::tree_node::{Transformed, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result, exec_err, internal_err};
use datafusion::datasource::provider_as_source;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, TableType};
use datafusion::optimizer::AnalyzerRule;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties, ReplaceChildrenOptions, SendableRecordBatchStream,
};
use futures::StreamExt;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// What a reader's queue holds: a batch or an error, then `None` at the end of the stream.
type Item = Option<Result<RecordBatch>>;

/// The name of the subquery that is computed once.
pub const NAME: &str = "sigma_stream";

/// Replaces the references to the subquery [`NAME`] with scans of one [`SharedTable`], when there are several
/// and they are the same plan.
#[derive(Debug, Default)]
pub struct ShareStream;

impl AnalyzerRule for ShareStream {
    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> Result<LogicalPlan> {
        let mut found: Vec<Arc<LogicalPlan>> = Vec::new();
        plan.apply_with_subqueries(|node| {
            if let LogicalPlan::SubqueryAlias(a) = node
                && a.alias.table() == NAME
            {
                found.push(a.input.clone());
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        if found.len() < 2 || found.iter().any(|f| f != &found[0]) {
            return Ok(plan);
        }
        let table = provider_as_source(Arc::new(SharedTable::new(found[0].clone())));
        plan.transform_up_with_subqueries(|node| match node {
            LogicalPlan::SubqueryAlias(a) if a.alias.table() == NAME => {
                Ok(Transformed::yes(LogicalPlanBuilder::scan(a.alias.clone(), table.clone(), None)?.build()?))
            }
            other => Ok(Transformed::no(other)),
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "share_stream"
    }
}

/// The subquery, as a table each reference scans.
#[derive(Debug)]
pub struct SharedTable {
    input: Arc<LogicalPlan>,
    schema: SchemaRef,
    shared: Arc<Shared>,
}

/// What the readers of one statement share: the subquery's physical plan, and for each of its partitions the
/// readers' queues and the task that fills them.
#[derive(Debug, Default)]
struct Shared {
    plan: tokio::sync::OnceCell<Arc<dyn ExecutionPlan>>,
    partitions: Mutex<Vec<Partition>>,
}

#[derive(Debug, Default)]
struct Partition {
    /// The readers' queues, until the partition starts.
    readers: Vec<UnboundedSender<Item>>,
    started: Option<SpawnedTask<()>>,
}

impl SharedTable {
    fn new(input: Arc<LogicalPlan>) -> Self {
        let schema = Arc::new(input.schema().as_arrow().clone());
        SharedTable { input, schema, shared: Arc::default() }
    }
}

#[async_trait]
impl TableProvider for SharedTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let source = self.shared.plan.get_or_try_init(|| state.create_physical_plan(&self.input)).await?.clone();
        let n = source.output_partitioning().partition_count();
        let mut queues = Vec::with_capacity(n);
        let reader = {
            let mut partitions = self.shared.partitions.lock().expect("not poisoned");
            if partitions.is_empty() {
                partitions.resize_with(n, Partition::default);
            }
            for p in partitions.iter_mut() {
                let (tx, rx) = unbounded_channel();
                p.readers.push(tx);
                queues.push(Mutex::new(Some(rx)));
            }
            // A subquery of no partitions has no queues to count its readers by: each is the first.
            partitions.first().map_or(1, |p| p.readers.len())
        };
        let projection = projection.cloned().unwrap_or_else(|| (0..self.schema.fields().len()).collect());
        let schema = Arc::new(self.schema.project(&projection)?);
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(n),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Arc::new(SharedExec {
            shared: self.shared.clone(),
            source,
            projection,
            schema,
            queues,
            reader,
            properties: Arc::new(properties),
        }))
    }
}

/// One reader of the shared subquery.
struct SharedExec {
    shared: Arc<Shared>,
    source: Arc<dyn ExecutionPlan>,
    projection: Vec<usize>,
    schema: SchemaRef,
    /// This reader's queue of each partition, taken when the partition is executed.
    queues: Vec<Mutex<Option<UnboundedReceiver<Item>>>>,
    /// Its number among the readers, from 1.
    reader: usize,
    properties: Arc<PlanProperties>,
}

impl fmt::Debug for SharedExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SharedExec({NAME}, reader {})", self.reader)
    }
}

impl DisplayAs for SharedExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                write!(f, "SharedExec: {NAME}, reader {}", self.reader)
            }
            DisplayFormatType::TreeRender => write!(f, "reader={}", self.reader),
        }
    }
}

impl ExecutionPlan for SharedExec {
    fn name(&self) -> &'static str {
        "SharedExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    /// The first reader shows the subquery as its child, so that `EXPLAIN` shows it once and `EXPLAIN ANALYZE`
    /// its metrics. It is planned and optimized already, and it is the same for every reader: what the optimizer
    /// would make of it under this reader alone is not taken (see `replace_children`).
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        if self.reader == 1 { vec![&self.source] } else { vec![] }
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        _: Vec<Arc<dyn ExecutionPlan>>,
        _: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(children, ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let Some(queue) = self.queues.get(partition).and_then(|q| q.lock().expect("not poisoned").take()) else {
            return internal_err!("{NAME} reader {}: partition {partition} executed twice or absent", self.reader);
        };
        {
            let mut partitions = self.shared.partitions.lock().expect("not poisoned");
            let p = &mut partitions[partition];
            if p.started.is_none() {
                let readers = std::mem::take(&mut p.readers);
                let stream = self.source.execute(partition, context)?;
                p.started = Some(SpawnedTask::spawn(feed(stream, readers)));
            }
        }
        let (projection, schema) = (self.projection.clone(), self.schema.clone());
        // The stream keeps the shared state, and with it the task that feeds every reader: a plan is dropped once
        // its streams are started, and the task with it.
        let shared = self.shared.clone();
        let batches = futures::stream::unfold(Some(queue), |queue| async move {
            let mut queue = queue?;
            match queue.recv().await {
                Some(Some(Ok(batch))) => Some((Ok(batch), Some(queue))),
                Some(Some(Err(e))) => Some((Err(e), None)),
                Some(None) => None,
                // The feeding task ended without saying so: it panicked or was stopped.
                None => Some((exec_err!("{NAME}: the shared stream stopped before its end"), None)),
            }
        })
        .map(move |batch| {
            let _held = &shared;
            let batch = batch?;
            // The row count, for a reader that takes no column.
            let rows = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
            let columns = batch.project(&projection)?.columns().to_vec();
            Ok(RecordBatch::try_new_with_options(schema.clone(), columns, &rows)?)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), batches)))
    }
}

/// Hands each batch of one partition to every reader still reading, then the end; or an error.
async fn feed(mut stream: SendableRecordBatchStream, readers: Vec<UnboundedSender<Item>>) {
    while let Some(item) = stream.next().await {
        match item {
            Ok(batch) => {
                let reading = readers.iter().filter(|r| r.send(Some(Ok(batch.clone()))).is_ok()).count();
                if reading == 0 {
                    return;
                }
            }
            Err(e) => {
                let e = Arc::new(e);
                for r in &readers {
                    let _ = r.send(Some(Err(DataFusionError::Shared(e.clone()))));
                }
                return;
            }
        }
    }
    for r in &readers {
        let _ = r.send(None);
    }
}
