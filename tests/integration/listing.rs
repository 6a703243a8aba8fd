//! The lake table's own listing: which files a query reads, what it leaves alone, and what the plan carries.

use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_plan::ExecutionPlan;
use trailsql::session::SessionOptions;

use crate::common::{copy_lake, count, rt, sample_lake, session_over};

/// Every file the scans of a plan read.
fn scanned(plan: &dyn ExecutionPlan, out: &mut Vec<datafusion::datasource::listing::PartitionedFile>) {
    if let Some(scan) = plan.downcast_ref::<DataSourceExec>()
        && let Some(config) = scan.data_source().downcast_ref::<FileScanConfig>()
    {
        out.extend(config.file_groups.iter().flat_map(|g| g.files().iter().cloned()));
    }
    for child in plan.children() {
        scanned(child.as_ref(), out);
    }
}

/// Objects beside the data that are not data: a run's staging, a writer's temporary and hidden files, an empty
/// file, a file outside any partition, a file of another kind. None of them is read, and no row goes missing.
#[test]
fn only_the_data_files_of_partitions_are_read() {
    let lake = sample_lake();
    let all = "SELECT count(*) FROM cloudtrail";
    let expected = count(lake, all);
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("lake");
    copy_lake(lake, &copy);
    let data: Vec<_> = walkdir::WalkDir::new(&copy)
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet") && !p.to_string_lossy().contains("/_"))
        .collect();
    let some = &data[0];
    let partition = some.parent().unwrap();
    let stray = [
        copy.join("_staging/run-1").join(partition.strip_prefix(&copy).unwrap()).join("part-x.parquet"),
        partition.join("_part-tmp.parquet"),
        partition.join(".part-hidden.parquet"),
        partition.parent().unwrap().join("outside-a-day.parquet"),
        copy.join("at-the-root.parquet"),
        partition.join("part-notes.parquet.txt"),
    ];
    for path in &stray {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::copy(some, path).unwrap();
    }
    std::fs::write(partition.join("part-empty.parquet"), b"").unwrap();
    assert_eq!(count(&copy, all), expected);
    assert!(expected > 0);
}

/// Filters on the partition columns, checked once per partition, keep the rows the same filters keep row by row.
#[test]
fn partition_filters_keep_what_rows_filters_keep() {
    let lake = sample_lake();
    let accounts = crate::common::query(lake, "SELECT DISTINCT account_id FROM cloudtrail ORDER BY account_id");
    let accounts = datafusion::arrow::util::pretty::pretty_format_batches(&accounts).unwrap().to_string();
    let account = accounts.lines().nth(3).unwrap().trim_matches(|c: char| c == '|' || c == ' ').to_string();
    for filter in [
        format!("account_id = '{account}'"),
        format!("account_id <> '{account}'"),
        format!("account_id IN ('{account}', '000000000000')"),
        "event_date BETWEEN DATE '2024-10-25' AND DATE '2024-10-26'".to_string(),
        format!("event_date > DATE '2024-10-25' AND account_id = '{account}'"),
        "event_date = DATE '1999-01-01'".to_string(),
        "CAST(event_date AS VARCHAR) LIKE '2024-10-2%'".to_string(),
    ] {
        let by_partition = count(lake, &format!("SELECT count(*) FROM cloudtrail WHERE {filter}"));
        // With a column that is not a partition's in the same filter, it is checked row by row.
        let by_row = count(lake, &format!("SELECT count(*) FROM cloudtrail WHERE ({filter}) OR eventid = 'none'"));
        assert_eq!(by_partition, by_row, "{filter}");
    }
    assert!(count(lake, &format!("SELECT count(*) FROM cloudtrail WHERE account_id = '{account}'")) > 0);
}

/// The plan of a scan carries no statistics per file: on a year of a hundred accounts (36,500 files) those were
/// 690 MB of unknowns. The files are those of the partitions the filters keep.
#[test]
fn the_scan_lists_files_without_statistics_per_file() {
    let lake = sample_lake();
    rt().block_on(async {
        let s = session_over(lake, &SessionOptions { target_partitions: Some(2), ..SessionOptions::default() }).await;
        let plan = |sql: &'static str| {
            let ctx = s.ctx.clone();
            async move { ctx.sql(sql).await.unwrap().create_physical_plan().await.unwrap() }
        };
        let mut files = Vec::new();
        scanned(plan("SELECT eventid FROM cloudtrail").await.as_ref(), &mut files);
        assert_eq!(files.len(), 8, "the sample lake's files: {files:?}");
        assert!(files.iter().all(|f| f.statistics.is_none() && f.partition_values.len() == 2), "{files:?}");

        let mut some = Vec::new();
        let sql = "SELECT eventid FROM cloudtrail WHERE event_date = DATE '2024-10-25'";
        scanned(plan(sql).await.as_ref(), &mut some);
        assert!(!some.is_empty() && some.len() < files.len(), "{some:?}");
        assert!(some.iter().all(|f| f.object_meta.location.as_ref().contains("event_date=2024-10-25/")), "{some:?}");

        // Statistics asked for are still collected, by the listing table.
        s.ctx.sql("SET datafusion.execution.collect_statistics = true").await.unwrap().collect().await.unwrap();
        let mut with = Vec::new();
        scanned(plan("SELECT eventid FROM cloudtrail").await.as_ref(), &mut with);
        assert_eq!(with.len(), 8);
        assert!(with.iter().all(|f| f.statistics.as_ref().is_some_and(|s| s.num_rows.get_value().is_some())));
    });
}

/// The local file system, counting the recursive listings asked of it.
#[derive(Debug, Default)]
struct CountingLists {
    inner: object_store::local::LocalFileSystem,
    lists: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Display for CountingLists {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CountingLists")
    }
}

#[async_trait::async_trait]
impl object_store::ObjectStore for CountingLists {
    async fn put_opts(
        &self,
        location: &object_store::path::Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &object_store::path::Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &object_store::path::Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.lists.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// The scans of one statement list the lake once, and so read the same files (a commit between two listings
/// would otherwise give the two sides of a join different lakes); the next statement lists again.
#[test]
fn the_scans_of_one_statement_share_one_listing() {
    let lake = sample_lake();
    rt().block_on(async {
        let s = session_over(lake, &SessionOptions { target_partitions: Some(2), ..SessionOptions::default() }).await;
        let store = std::sync::Arc::new(CountingLists::default());
        s.ctx.runtime_env().register_object_store(&url::Url::parse("file://").unwrap(), store.clone());
        let lists = || store.lists.swap(0, std::sync::atomic::Ordering::SeqCst);
        let accounts = std::fs::read_dir(lake)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("account_id="))
            .count();

        let one = "SELECT count(*) FROM cloudtrail";
        s.ctx.sql(one).await.unwrap().collect().await.unwrap();
        assert_eq!(lists(), accounts, "one listing of each account directory");

        let self_join = "SELECT count(*) FROM cloudtrail a JOIN cloudtrail b USING (eventid) \
                         WHERE a.eventname <> 'x' AND b.awsregion <> 'x'";
        let rows = s.ctx.sql(self_join).await.unwrap().collect().await.unwrap();
        assert_eq!(lists(), accounts, "two scans, one listing");
        assert!(rows[0].num_rows() == 1);

        s.ctx.sql(one).await.unwrap().collect().await.unwrap();
        assert_eq!(lists(), accounts, "a new statement lists again");
    });
}

/// A session that hands the scan no filter (a Sigma run's) still skips, by their statistics, the pages of the files
/// that lie outside the stretch of time its conditions on `eventtime` keep: the files are sorted by time. The rows
/// are those a filtering session counts.
#[test]
fn a_session_without_filter_pushdown_still_prunes_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<serde_json::Value> = (0..8192)
        .map(|i| {
            serde_json::json!({
                "eventVersion": "1.08", "eventID": format!("e{i}"), "recipientAccountId": "111111111111",
                "eventTime": format!("2024-03-01T{:02}:{:02}:{:02}Z", i / 360, i / 6 % 60, i % 6 * 10),
                "eventSource": "s3.amazonaws.com", "eventName": "GetObject", "awsRegion": "us-east-1"
            })
        })
        .collect();
    std::fs::write(dir.path().join("d.json"), serde_json::json!({ "Records": events }).to_string()).unwrap();
    let lake = dir.path().join("lake");
    crate::common::convert_lib(&[&dir.path().join("d.json")], &lake);
    let sql = "SELECT count(*) FROM cloudtrail WHERE eventtime >= TIMESTAMP '2024-03-01T20:00:00Z' \
               AND eventname <> 'x'";
    assert_eq!(count(&lake, sql), 8192 - 20 * 360);
    rt().block_on(async {
        let opts = SessionOptions { no_filter_pushdown: true, ..SessionOptions::default() };
        let s = session_over(&lake, &opts).await;
        let out = trailsql::exec::execute(&s, &format!("EXPLAIN ANALYZE {sql}")).await.unwrap();
        let shown =
            datafusion::arrow::util::pretty::pretty_format_batches(&out.collect().await.unwrap()).unwrap().to_string();
        assert!(shown.contains("FilterExec"), "the rows are the plan's to filter: {shown}");
        assert!(shown.contains("page_index_pages_pruned=8 total → 1 matched"), "one page of 1,024 rows: {shown}");
        let batches = trailsql::exec::execute(&s, sql).await.unwrap().collect().await.unwrap();
        let n = batches[0].column(0).as_any().downcast_ref::<datafusion::arrow::array::Int64Array>().unwrap();
        assert_eq!(n.value(0), 8192 - 20 * 360);
    });
}
