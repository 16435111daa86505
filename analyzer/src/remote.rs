//! Parquet segments in an S3-compatible object store (`[storage] url`).
//!
//! ```text
//!  s3://bucket/prefix/{table}/service=…/{date}/{hour}/{segment}.parquet   named as in segment.rs
//!  s3://bucket/prefix/nodes/{node}.json                                   each node's progress
//! ```
//!
//! Writers never coordinate: a segment's key carries its node and its
//! write-ahead-log generations, so no two nodes write one key, and a PUT
//! is atomic, so readers see a whole file or none. Each node also writes
//! `nodes/{node}.json` after its flushes: every row it acknowledged before
//! `flushed_through_ms` is in the store. Another node reads those markers
//! *before* listing segments, so what it lists holds at least that much.
//!
//! Object-store calls run on a small runtime of their own, so start-up,
//! the flusher thread and query workers call them alike, whatever runtime
//! (or none) they run on.

use crate::error::{Error, Result};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
pub use object_store::UpdateVersion;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::Arc;

/// One object store and the prefix graylens keeps its files under.
pub struct Remote {
    /// `s3://bucket/`: what DataFusion's runtime knows the store by.
    base: url::Url,
    /// `""` or `a/b` (no leading or trailing `/`).
    prefix: String,
    store: Arc<dyn ObjectStore>,
    rt: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Remote({}{})", self.base, self.prefix)
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        // May be dropped on an async thread, where a blocking shutdown panics.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// What `nodes/{node}.json` says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMark {
    pub node: String,
    /// Every row this node acknowledged before this instant is stored.
    pub flushed_through_ms: i64,
    /// When the marker was written (a node silent for long is gone).
    pub written_ms: i64,
    /// Services this node holds rows of that are not stored yet.
    #[serde(default)]
    pub pending: Vec<String>,
}

/// What is wrong with a `storage.url`, if anything.
pub fn url_problem(url: &str) -> Option<String> {
    match split(url) {
        Ok(_) => None,
        Err(e) => Some(format!("storage.url = {url:?}: {e}")),
    }
}

/// `s3://bucket/a/b/` → (`s3://bucket/`, `a/b`).
fn split(url: &str) -> std::result::Result<(url::Url, String), String> {
    let u = url::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
    if u.scheme() != "s3" {
        return Err(format!(
            "scheme {:?} is not supported; use s3://bucket/prefix (an S3-compatible store)",
            u.scheme()
        ));
    }
    let bucket = u.host_str().unwrap_or("");
    if bucket.is_empty() {
        return Err("no bucket: use s3://bucket/prefix".into());
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err("a query or fragment is not allowed".into());
    }
    let prefix = ObjectPath::from_url_path(u.path())
        .map_err(|e| format!("bad prefix ({e})"))?
        .as_ref()
        .to_string();
    let base = url::Url::parse(&format!("s3://{bucket}/")).map_err(|e| e.to_string())?;
    Ok((base, prefix))
}

impl Remote {
    /// The store at `url` (`s3://bucket/prefix`), configured by the
    /// standard `AWS_*` environment (endpoint, keys, region, allow-HTTP).
    pub fn open(url: &str) -> Result<Self> {
        let (base, prefix) = split(url).map_err(|e| Error::Storage(format!("storage.url: {e}")))?;
        let store = AmazonS3Builder::from_env()
            .with_url(base.as_str())
            .build()
            .map_err(|e| Error::Storage(format!("storage.url = {url:?}: {e}")))?;
        Self::with_store(base, prefix, Arc::new(store))
    }

    /// A fresh in-memory store at `memory://graylens/` (tests; several
    /// nodes of one process share it through one `Arc<Remote>`).
    pub fn in_memory() -> Result<Self> {
        let base = url::Url::parse("memory://graylens/").expect("a valid URL");
        Self::with_store(
            base,
            String::new(),
            Arc::new(object_store::memory::InMemory::new()),
        )
    }

    fn with_store(base: url::Url, prefix: String, store: Arc<dyn ObjectStore>) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("graylens-objstore")
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("object store runtime: {e}")))?;
        Ok(Remote {
            base,
            prefix,
            store,
            rt: Some(rt),
        })
    }

    /// The object store itself (for DataFusion's runtime).
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// `s3://bucket/`.
    pub fn base(&self) -> &url::Url {
        &self.base
    }

    fn full(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    /// The object's path for `key` (relative to the prefix).
    pub fn path(&self, key: &str) -> Result<ObjectPath> {
        ObjectPath::parse(self.full(key))
            .map_err(|e| Error::Internal(format!("object key {key:?}: {e}")))
    }

    /// The key (relative to the prefix) of an object the store listed.
    fn key_of(&self, location: &ObjectPath) -> Option<String> {
        let full = location.as_ref();
        let key = match self.prefix.as_str() {
            "" => full,
            p => full.strip_prefix(p)?.strip_prefix('/')?,
        };
        Some(key.to_string())
    }

    /// The URL DataFusion reads `key` at (each part percent-encoded:
    /// DataFusion decodes it).
    pub fn url_of(&self, key: &str) -> String {
        let mut u = self.base.clone();
        u.path_segments_mut()
            .expect("s3 URLs have a path")
            .pop_if_empty()
            .extend(self.full(key).split('/'));
        u.to_string()
    }

    /// Runs `f` on the object-store runtime and waits for it. Call it from
    /// a thread that may block (not from an async task).
    pub fn block_on<T: Send + 'static>(&self, f: impl Future<Output = T> + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv().expect("object-store task finished")
    }

    /// Starts `f` on the object-store runtime.
    pub fn spawn(&self, f: impl Future<Output = ()> + Send + 'static) {
        self.rt.as_ref().expect("runtime until drop").spawn(f);
    }

    /// Writes `bytes` at `key` (atomic: readers see all or nothing).
    pub fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        let (store, path) = (self.store.clone(), self.path(key)?);
        self.block_on(async move { store.put(&path, PutPayload::from(bytes)).await })
            .map(|_| ())
            .map_err(|e| Error::Storage(format!("writing {key}: {e}")))
    }

    /// The object at `key`, or `None` if there is none.
    pub fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let (store, path) = (self.store.clone(), self.path(key)?);
        let got = self.block_on(async move {
            match store.get(&path).await {
                Ok(r) => r.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        got.map_err(|e| Error::Storage(format!("reading {key}: {e}")))
    }

    /// Deletes `key`; one already gone is not an error.
    pub fn delete(&self, key: &str) -> Result<()> {
        let (store, path) = (self.store.clone(), self.path(key)?);
        match self.block_on(async move { store.delete(&path).await }) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::Storage(format!("deleting {key}: {e}"))),
        }
    }

    /// Every object under `dir`: key (relative to the prefix), size, and
    /// last-modified time in ms.
    pub fn list(&self, dir: &str) -> Result<Vec<(String, u64, i64)>> {
        let (store, path) = (self.store.clone(), self.path(dir)?);
        let metas = self
            .block_on(async move { store.list(Some(&path)).try_collect::<Vec<_>>().await })
            .map_err(|e| Error::Storage(format!("listing {dir}/: {e}")))?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                Some((
                    self.key_of(&m.location)?,
                    m.size,
                    m.last_modified.timestamp_millis(),
                ))
            })
            .collect())
    }

    /// Runs `f` on the object-store runtime from async code.
    pub async fn run<T: Send + 'static>(&self, f: impl Future<Output = T> + Send + 'static) -> T {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.await.expect("object-store task finished")
    }

    /// The object at `key` and its version, or `None` if there is none.
    pub async fn get_versioned(&self, key: &str) -> Result<Option<(Bytes, UpdateVersion)>> {
        let (store, path) = (self.store.clone(), self.path(key)?);
        let got = self
            .run(async move {
                match store.get(&path).await {
                    Ok(r) => {
                        let v = UpdateVersion {
                            e_tag: r.meta.e_tag.clone(),
                            version: r.meta.version.clone(),
                        };
                        r.bytes().await.map(|b| Some((b, v)))
                    }
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .await;
        got.map_err(|e| Error::Storage(format!("reading {key}: {e}")))
    }

    /// A conditional write: creates `key` if `version` is `None` (and it
    /// does not exist), else replaces it if it is still at `version`.
    /// `Ok(None)` when the condition failed (someone else wrote first).
    pub async fn put_if(
        &self,
        key: &str,
        bytes: Vec<u8>,
        version: Option<UpdateVersion>,
    ) -> Result<Option<UpdateVersion>> {
        let (store, path) = (self.store.clone(), self.path(key)?);
        let mode = match version {
            None => PutMode::Create,
            Some(v) => PutMode::Update(v),
        };
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        let put = self
            .run(async move { store.put_opts(&path, PutPayload::from(bytes), opts).await })
            .await;
        match put {
            Ok(r) => Ok(Some(UpdateVersion {
                e_tag: r.e_tag,
                version: r.version,
            })),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. }
                | object_store::Error::NotFound { .. },
            ) => Ok(None),
            Err(e) => Err(Error::Storage(format!("writing {key}: {e}"))),
        }
    }

    /// Every object under `dir`: key (relative to the prefix) and ETag.
    pub async fn list_tags(&self, dir: &str) -> Result<Vec<(String, Option<String>)>> {
        let (store, path) = (self.store.clone(), self.path(dir)?);
        let metas = self
            .run(async move { store.list(Some(&path)).try_collect::<Vec<_>>().await })
            .await
            .map_err(|e| Error::Storage(format!("listing {dir}/: {e}")))?;
        Ok(metas
            .into_iter()
            .filter_map(|m| Some((self.key_of(&m.location)?, m.e_tag)))
            .collect())
    }

    /// [`Remote::put`] from async code.
    pub async fn put_async(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        let (store, path) = (self.store.clone(), self.path(key)?);
        self.run(async move { store.put(&path, PutPayload::from(bytes)).await })
            .await
            .map(|_| ())
            .map_err(|e| Error::Storage(format!("writing {key}: {e}")))
    }

    /// [`Remote::delete`] from async code.
    pub async fn delete_async(&self, key: &str) -> Result<()> {
        let (store, path) = (self.store.clone(), self.path(key)?);
        match self.run(async move { store.delete(&path).await }).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::Storage(format!("deleting {key}: {e}"))),
        }
    }

    /// Writes this node's marker.
    pub fn put_mark(&self, mark: &NodeMark) -> Result<()> {
        let body = serde_json::to_vec(mark).expect("a marker serializes");
        self.put(&format!("nodes/{}.json", mark.node), body)
    }

    /// Every node's marker (unreadable ones are skipped with a warning).
    pub fn marks(&self) -> Result<Vec<NodeMark>> {
        let mut out = Vec::new();
        for (key, _, _) in self.list("nodes")? {
            if !key.ends_with(".json") {
                continue;
            }
            let Some(body) = self.get(&key)? else {
                continue;
            };
            match serde_json::from_slice::<NodeMark>(&body) {
                Ok(m) => out.push(m),
                Err(e) => tracing::warn!(key, error = %e, "ignoring an unreadable node marker"),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(url_problem("s3://bucket").is_none());
        assert!(url_problem("s3://bucket/a/b/").is_none());
        let (base, prefix) = split("s3://bucket/a/b/").unwrap();
        assert_eq!((base.as_str(), prefix.as_str()), ("s3://bucket/", "a/b"));
        let (_, prefix) = split("s3://bucket/team a/x%2Fy").unwrap();
        assert_eq!(prefix, "team a/x/y");
        for bad in ["/data", "gs://b/p", "s3:///p", "s3://b/a//c", "nonsense"] {
            assert!(url_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn datafusion_reads_the_key_that_was_written() {
        let r = Remote::open("s3://bucket/team a/p").unwrap();
        let key = "spans/service=a%2Fb/2026-12-06/10/1_2_n_1-1_3.parquet";
        let u = datafusion::datasource::listing::ListingTableUrl::parse(r.url_of(key)).unwrap();
        assert_eq!(u.prefix().as_ref(), r.path(key).unwrap().as_ref());
        assert_eq!(u.prefix().as_ref(), format!("team a/p/{key}"));
    }
}
