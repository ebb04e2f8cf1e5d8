//! Where backups live: an object store, a local directory under the data dir by default or an
//! S3 (or S3-compatible) bucket by configuration. Objects are written and read as streams; the
//! bytes stored are counted and hashed on the way, so the catalog can record their size and
//! SHA-256 and a restore can check both.
//!
//! A local store writes an object as a staged file `<key>#<n>` and renames it into place when
//! the upload completes. An upload cut off by `kill -9` leaves that file behind, so staged files
//! are removed when tdb starts ([`BackupStore::clean_staged`], before any job runs) and after an
//! upload fails. An S3 bucket keeps the parts of unfinished multipart uploads until they are
//! aborted: tdb aborts them when an upload fails, and a lifecycle rule must abort the rest (see
//! README).

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
    /// The directory of a local store.
    local_root: Option<std::path::PathBuf>,
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
            local_root: Some(dir.to_path_buf()),
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
            local_root: None,
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
                self.remove_staged(key).await;
                Err(StoreError::Store(format!("writing '{key}': {e}")))
            }
        }
    }

    /// Removes every staged file of a local store (none exist for S3): what uploads cut off
    /// before they completed left. Only for when no upload runs, that is at start. Returns how
    /// many it removed.
    pub async fn clean_staged(&self) -> Result<usize, StoreError> {
        let Some(root) = self.local_root.clone() else {
            return Ok(0);
        };
        tokio::task::spawn_blocking(move || remove_staged_under(&root))
            .await
            .map_err(|e| StoreError::Store(format!("cleaning staged uploads: {e}")))?
            .map_err(|e| StoreError::Store(format!("cleaning staged uploads: {e}")))
    }

    /// Removes a local store's staged files of one key, after its upload failed: an upload
    /// whose completion failed (a full disk at the rename) keeps its staged file otherwise.
    async fn remove_staged(&self, key: &str) {
        let Some(target) = self.local_root.as_ref().map(|root| root.join(key)) else {
            return;
        };
        let removed = tokio::task::spawn_blocking(move || {
            let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
                return Ok(0);
            };
            remove_staged_in(dir, |file| {
                staged_of(file) == Some(&*name.to_string_lossy())
            })
        })
        .await;
        if let Ok(Err(e)) = removed {
            tracing::warn!(key, error = %e, "could not remove a failed upload's staged file");
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

/// The object a staged file belongs to: `a.sql.gz` for `a.sql.gz#3`; `None` for other names.
fn staged_of(file_name: &str) -> Option<&str> {
    let (object, n) = file_name.rsplit_once('#')?;
    (!object.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then_some(object)
}

/// Removes the staged files directly in `dir` whose name `belongs`; returns how many.
fn remove_staged_in(
    dir: &std::path::Path,
    belongs: impl Fn(&str) -> bool,
) -> std::io::Result<usize> {
    let mut removed = 0;
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if entry.file_type()?.is_file() && belongs(&name.to_string_lossy()) {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}

/// Removes every staged file under `root`, in every directory; returns how many.
fn remove_staged_under(root: &std::path::Path) -> std::io::Result<usize> {
    let mut removed = 0;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        removed += remove_staged_in(&dir, |name| staged_of(name).is_some())?;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                dirs.push(entry.path());
            }
        }
    }
    Ok(removed)
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

    #[tokio::test]
    async fn staged_files_are_cleaned_and_objects_kept() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("b");
        let store = BackupStore::open(&StoreConfig::default(), &root)?;
        store
            .put_stream("postgresql/manual/t/a.sql.gz", &mut &b"whole"[..])
            .await?;
        let day = root.join("postgresql/manual/t");
        for name in ["a.sql.gz#1", "b.sql.gz#12", "odd#name", "c#", "#4"] {
            std::fs::write(day.join(name), b"part")?;
        }
        std::fs::create_dir_all(root.join("deeper/x"))?;
        std::fs::write(root.join("deeper/x/d.sql.gz#2"), b"part")?;
        assert_eq!(store.clean_staged().await?, 3);
        let mut left: Vec<String> = std::fs::read_dir(&day)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()?;
        left.sort();
        assert_eq!(left, ["#4", "a.sql.gz", "c#", "odd#name"]);
        assert_eq!(store.clean_staged().await?, 0);
        Ok(())
    }

    /// Fails after handing over more than one part's worth of bytes.
    struct Breaks(usize);

    impl AsyncRead for Breaks {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            if self.0 == 0 {
                return Poll::Ready(Err(std::io::Error::other("the dump broke off")));
            }
            let n = self.0.min(buf.remaining()).min(64 * 1024);
            buf.put_slice(&vec![7u8; n]);
            self.0 -= n;
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_failed_upload_leaves_nothing() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("b");
        let store = BackupStore::open(&StoreConfig::default(), &root)?;
        let failed = store
            .put_stream(
                "postgresql/manual/t/a.sql.gz",
                &mut Breaks(20 * 1024 * 1024),
            )
            .await;
        assert!(failed.is_err());
        let day = root.join("postgresql/manual/t");
        let left = std::fs::read_dir(&day).map_or(0, |entries| entries.count());
        assert_eq!(left, 0, "{}", day.display());
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
