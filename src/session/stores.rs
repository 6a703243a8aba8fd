//! DataFusion's object-store registry over the lake crate's [`Storage`]: `s3://` URLs in plans reach the same
//! buckets, settings and credentials as the lake.

use std::sync::Arc;

use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use object_store::ObjectStore;
use trailsql_lake::storage::Storage;

/// Object stores found by URL when a plan names them: `s3://bucket` (the lake, `LOCATION 's3://…'`,
/// `FROM 's3://…'`) through [`Storage`], so with its settings and credentials, and everything else as DataFusion
/// does it. Sessions and Ballista's scheduler and executors all use it.
#[derive(Debug)]
pub struct BucketStores {
    storage: Arc<Storage>,
    fallback: DefaultObjectStoreRegistry,
}

impl BucketStores {
    pub fn new(storage: Arc<Storage>) -> BucketStores {
        let fallback = DefaultObjectStoreRegistry::new();
        let local = url::Url::parse("file://").expect("a valid URL");
        fallback.register_store(&local, Arc::new(super::local_store::InlineLocal::default()));
        BucketStores { storage, fallback }
    }
}

impl ObjectStoreRegistry for BucketStores {
    fn register_store(&self, url: &url::Url, store: Arc<dyn ObjectStore>) -> Option<Arc<dyn ObjectStore>> {
        self.fallback.register_store(url, store)
    }

    fn deregister_store(&self, url: &url::Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        self.fallback.deregister_store(url)
    }

    fn get_store(&self, url: &url::Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        match (url.scheme(), url.host_str()) {
            ("s3", Some(bucket)) => {
                // DataFusion asks from inside a multi-threaded runtime; Storage builds each bucket's store once
                // (its region looked up) and hands out the same one after.
                let storage = self.storage.clone();
                let name = bucket.to_string();
                tokio::task::block_in_place(|| {
                    tokio::runtime::Handle::current().block_on(async move { storage.bucket(&name).await })
                })
                .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))
            }
            _ => self.fallback.get_store(url),
        }
    }
}
