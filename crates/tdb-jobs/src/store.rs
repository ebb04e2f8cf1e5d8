//! Where backups live: an object store, a local directory under the data dir by default or an
//! S3 (or S3-compatible) bucket by configuration. Objects are written and read as streams; the
//! bytes stored are counted and hashed on the way, so the catalog can record their size and
//! SHA-256 and a restore can check both.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("backup file '{0}' is missing from the backup store")]
    Missing(String),
    #[error("backup store: {0}")]
    Store(String),
    #[error("{0}")]
    Config(String),
}

impl From<object_store::Error> for StoreError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { path, .. } => Self::Missing(path),
            other => Self::Store(other.to_string()),
        }
    }
}

/// How to reach the store, from configuration.
#[derive(Debug, Clone, Default)]
pub struct StoreConfig {
    /// `file:///abs/dir` or `s3://bucket[/prefix]`; unset: `<data-dir>/backups`.
    pub url: Option<String>,
    /// S3 endpoint for S3-compatible services (MinIO, R2, …).
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    /// Plain HTTP to the endpoint (local test services only).
    pub s3_allow_http: bool,
}

/// The backup store; cheap to clone.
#[derive(Clone)]
pub struct BackupStore {
    inner: Arc<dyn ObjectStore>,
    /// Where it is, for logs and messages (never with credentials).
    pub location: String,
}

/// What was written: bytes stored and their SHA-256 (hex).
#[derive(Debug, Clone)]
pub struct Written {
    pub size: u64,
    pub sha256: String,
}

impl BackupStore {
    /// Opens the configured store; the local default lives in `default_dir`, made 0700.
    pub fn open(config: &StoreConfig, default_dir: &std::path::Path) -> Result<Self, StoreError> {
        match config.url.as_deref() {
            None => Self::local(default_dir),
            Some(url) if url.starts_with("file://") => {
                Self::local(std::path::Path::new(&url["file://".len()..]))
            }
            Some(url) if url.starts_with("s3://") => Self::s3(url, config),
            Some(url) => Err(StoreError::Config(format!(
                "backup_store must be file:///dir or s3://bucket[/prefix], not '{url}'"
            ))),
        }
    }

    fn local(dir: &std::path::Path) -> Result<Self, StoreError> {
        use std::os::unix::fs::DirBuilderExt;
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| {
                    StoreError::Config(format!("creating backup dir {}: {e}", dir.display()))
                })?;
        }
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| StoreError::Config(format!("backup dir {}: {e}", dir.display())))?;
        Ok(Self {
            inner: Arc::new(store),
            location: format!("file://{}", dir.display()),
        })
    }

    #[cfg(feature = "s3")]
    fn s3(url: &str, config: &StoreConfig) -> Result<Self, StoreError> {
        let rest = &url["s3://".len()..];
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(StoreError::Config(format!(
                "backup_store '{url}' names no bucket"
            )));
        }
        // Credentials come from the usual AWS_* environment variables.
        let mut builder = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_allow_http(config.s3_allow_http);
        if let Some(endpoint) = &config.s3_endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &config.s3_region {
            builder = builder.with_region(region);
        }
        let s3 = builder
            .build()
            .map_err(|e| StoreError::Config(format!("backup_store '{url}': {e}")))?;
        let inner: Arc<dyn ObjectStore> = if prefix.trim_matches('/').is_empty() {
            Arc::new(s3)
        } else {
            Arc::new(object_store::prefix::PrefixStore::new(
                s3,
                prefix.trim_matches('/'),
            ))
        };
        Ok(Self {
            inner,
            location: url.to_string(),
        })
    }

    #[cfg(not(feature = "s3"))]
    fn s3(url: &str, _config: &StoreConfig) -> Result<Self, StoreError> {
        Err(StoreError::Config(format!(
            "backup_store '{url}': this build of tdb has no S3 support (feature `s3`)"
        )))
    }

    fn path(key: &str) -> Result<Path, StoreError> {
        Path::parse(key).map_err(|e| StoreError::Store(format!("bad path '{key}': {e}")))
    }

    /// Streams `input` into the object `key` (replacing any object there), counting and hashing
    /// the bytes. Memory stays bounded by the upload's part size.
    pub async fn put_stream(
        &self,
        key: &str,
        input: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<Written, StoreError> {
        let writer = object_store::buffered::BufWriter::with_capacity(
            self.inner.clone(),
            Self::path(key)?,
            8 * 1024 * 1024,
        )
        .with_max_concurrency(2);
        let mut writer = Hashing::new(writer);
        let copied = tokio::io::copy(input, &mut writer).await;
        match copied {
            Ok(_) => {
                writer
                    .inner
                    .shutdown()
                    .await
                    .map_err(|e| StoreError::Store(format!("finishing '{key}': {e}")))?;
                Ok(writer.written())
            }
            Err(e) => {
                // Abandons the upload; nothing partial is left under the key.
                let _ = writer.inner.abort().await;
                Err(StoreError::Store(format!("writing '{key}': {e}")))
            }
        }
    }

    /// The size of an object.
    pub async fn size(&self, key: &str) -> Result<u64, StoreError> {
        Ok(self.inner.head(&Self::path(key)?).await?.size)
    }

    /// A reader over an object's bytes that counts and hashes what passes through.
    pub async fn open_stream(&self, key: &str) -> Result<Hashing<StoreReader>, StoreError> {
        let meta = self.inner.head(&Self::path(key)?).await?;
        let reader =
            object_store::buffered::BufReader::with_capacity(self.inner.clone(), &meta, 1 << 20);
        Ok(Hashing::new(StoreReader(reader)))
    }

    /// Deletes an object; one already gone is fine.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self.inner.delete(&Self::path(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// An object's bytes as an [`AsyncRead`].
pub struct StoreReader(object_store::buffered::BufReader);

impl AsyncRead for StoreReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

/// Passes bytes through (reading or writing) while counting and hashing them.
pub struct Hashing<T> {
    pub inner: T,
    tally: Tally,
}

/// The count and hash of what passed through a [`Hashing`], readable from elsewhere (progress
/// reports, or after the stream was handed on).
#[derive(Clone, Default)]
pub struct Tally(Arc<std::sync::Mutex<(Sha256, u64)>>);

impl Tally {
    fn lock(&self) -> std::sync::MutexGuard<'_, (Sha256, u64)> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn bytes(&self) -> u64 {
        self.lock().1
    }

    pub fn written(&self) -> Written {
        let state = self.lock();
        Written {
            size: state.1,
            sha256: hex::encode(state.0.clone().finalize()),
        }
    }
}

impl<T> Hashing<T> {
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            tally: Tally::default(),
        }
    }

    pub fn tally(&self) -> Tally {
        self.tally.clone()
    }

    fn saw(&mut self, bytes: &[u8]) {
        let mut state = self.tally.lock();
        state.0.update(bytes);
        state.1 += bytes.len() as u64;
    }

    pub fn written(&self) -> Written {
        self.tally.written()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Hashing<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled {
            this.saw(&buf.filled()[before..]);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Hashing<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled {
            this.saw(&buf[..*n]);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn objects_round_trip_with_their_size_and_hash() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let store = BackupStore::open(&StoreConfig::default(), &dir.path().join("b"))?;
        let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let written = store
            .put_stream("postgresql/manual/x/a.sql.gz", &mut body.as_slice())
            .await?;
        assert_eq!(written.size, body.len() as u64);
        assert_eq!(written.sha256, hex::encode(Sha256::digest(&body)));
        assert_eq!(
            store.size("postgresql/manual/x/a.sql.gz").await?,
            body.len() as u64
        );
        let mut reader = store.open_stream("postgresql/manual/x/a.sql.gz").await?;
        let mut back = Vec::new();
        reader.read_to_end(&mut back).await?;
        assert_eq!(back, body);
        assert_eq!(reader.written().sha256, written.sha256);
        store.delete("postgresql/manual/x/a.sql.gz").await?;
        store.delete("postgresql/manual/x/a.sql.gz").await?;
        assert!(matches!(
            store.open_stream("postgresql/manual/x/a.sql.gz").await,
            Err(StoreError::Missing(_))
        ));
        Ok(())
    }

    #[test]
    fn unknown_schemes_are_refused() {
        let config = StoreConfig {
            url: Some("ftp://host/dir".into()),
            ..StoreConfig::default()
        };
        let err = BackupStore::open(&config, std::path::Path::new("/tmp"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("file:///dir or s3://"), "{err}");
    }
}
