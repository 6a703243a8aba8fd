//! Local files for queries, read on the thread that asks: object_store's `LocalFileSystem` hands every read to
//! tokio's blocking pool, and on a lake of thousands of small files the hand-offs (a thread woken and put to sleep
//! for each footer, index and page read) cost more than the reads themselves.
//!
//! Small ranged reads (up to [`INLINE_MAX`] bytes in all) are served here with `pread`; everything else, and every
//! case that is not a plain successful read (missing file, range past the end, conditional requests), goes to
//! `LocalFileSystem`, so errors and edge cases are its own.

use std::fmt;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    Attributes, CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// Reads of at most this many bytes are made inline; larger ones are worth a blocking-pool thread.
pub const INLINE_MAX: u64 = 1 << 20;

/// The local file system, with small reads made inline.
#[derive(Debug, Default)]
pub struct InlineLocal {
    inner: LocalFileSystem,
}

impl fmt::Display for InlineLocal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InlineLocal({})", self.inner)
    }
}

impl InlineLocal {
    /// The file and its metadata, when `location` names a readable one.
    fn open(&self, location: &Path) -> Option<(File, std::fs::Metadata)> {
        let file = File::open(self.inner.path_to_filesystem(location).ok()?).ok()?;
        let meta = file.metadata().ok()?;
        meta.is_file().then_some((file, meta))
    }

    /// The ranges read inline, or `None` to leave the request to `LocalFileSystem`.
    fn read_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Option<Vec<Bytes>> {
        if ranges.iter().map(|r| r.end.saturating_sub(r.start)).sum::<u64>() > INLINE_MAX {
            return None;
        }
        let (file, meta) = self.open(location)?;
        ranges.iter().map(|r| if r.start > r.end || r.end > meta.len() { None } else { pread(&file, r) }).collect()
    }

    /// A plain ranged GET read inline, or `None`.
    fn get_range_inline(&self, location: &Path, options: &GetOptions) -> Option<GetResult> {
        let plain = options.if_match.is_none()
            && options.if_none_match.is_none()
            && options.if_modified_since.is_none()
            && options.if_unmodified_since.is_none()
            && options.version.is_none()
            && !options.head;
        let range = options.range.as_ref().filter(|_| plain)?;
        let (file, meta) = self.open(location)?;
        let size = meta.len();
        let range = match range {
            GetRange::Bounded(r) if r.start < r.end && r.start < size => r.start..r.end.min(size),
            GetRange::Offset(o) if *o < size => *o..size,
            GetRange::Suffix(n) if *n > 0 => size.saturating_sub(*n)..size,
            _ => return None,
        };
        if range.end - range.start > INLINE_MAX {
            return None;
        }
        let bytes = pread(&file, &range)?;
        let mtime = meta.modified().ok()?;
        let micros = mtime.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros()).unwrap_or_default();
        let object = ObjectMeta {
            location: location.clone(),
            last_modified: mtime.into(),
            size,
            // LocalFileSystem's own ETag, so that either path gives the same one.
            e_tag: Some(format!("{:x}-{micros:x}-{size:x}", meta.ino())),
            version: None,
        };
        Some(GetResult {
            payload: GetResultPayload::Stream(Box::pin(futures::stream::once(async move { Ok(bytes) }))),
            meta: object,
            range,
            attributes: Attributes::default(),
        })
    }
}

/// The bytes of a range of a file, read at its offset.
fn pread(file: &File, range: &Range<u64>) -> Option<Bytes> {
    let mut buf = vec![0; usize::try_from(range.end - range.start).ok()?];
    file.read_exact_at(&mut buf, range.start).ok()?;
    Some(Bytes::from(buf))
}

#[async_trait]
impl ObjectStore for InlineLocal {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        match self.get_range_inline(location, &options) {
            Some(result) => Ok(result),
            None => self.inner.get_opts(location, options).await,
        }
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        match self.read_ranges(location, ranges) {
            Some(read) => Ok(read),
            None => self.inner.get_ranges(location, ranges).await,
        }
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;

    /// Every read served inline gives what LocalFileSystem gives, and what it refuses goes to it.
    #[tokio::test]
    async fn inline_reads_are_local_file_system_reads() {
        let dir = tempfile::tempdir().unwrap();
        let body: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("f.bin"), &body).unwrap();
        let path = Path::from_filesystem_path(dir.path().join("f.bin")).unwrap();
        let (ours, theirs) = (InlineLocal::default(), LocalFileSystem::new());
        let ranges = [0..10, 4990..5000, 100..100, 7..4000];
        assert_eq!(ours.get_ranges(&path, &ranges).await.unwrap(), theirs.get_ranges(&path, &ranges).await.unwrap());
        for range in
            [GetRange::Bounded(10..20), GetRange::Bounded(4990..9000), GetRange::Offset(4000), GetRange::Suffix(8)]
        {
            let opts = || GetOptions { range: Some(range.clone()), ..GetOptions::default() };
            let (a, b) = (ours.get_opts(&path, opts()).await.unwrap(), theirs.get_opts(&path, opts()).await.unwrap());
            assert_eq!((&a.meta, &a.range), (&b.meta, &b.range), "{range:?}");
            assert_eq!(a.bytes().await.unwrap(), b.bytes().await.unwrap(), "{range:?}");
        }
        // Past the end, and a missing file: LocalFileSystem's errors.
        assert!(ours.get_ranges(&path, &[0..10, 4000..6000]).await.is_err());
        let missing = Path::from_filesystem_path(dir.path()).unwrap().join("missing");
        assert!(matches!(ours.get_range(&missing, 0..1).await, Err(object_store::Error::NotFound { .. })));
        assert!(
            ours.get_opts(&path, GetOptions { range: Some(GetRange::Offset(6000)), ..Default::default() })
                .await
                .is_err()
        );
    }
}
