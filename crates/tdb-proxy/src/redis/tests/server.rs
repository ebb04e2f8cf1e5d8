//! A real redis-server for the proxy's tests: Debian's `redis-server` on a free loopback port
//! and a Unix socket in a temporary directory, ready once it logs so, killed when dropped; and
//! a bare async client on `tdb_resp`'s codec, for the administrator's checks and for what real
//! clients cannot be made to send.

use std::io::{BufRead, BufReader};
use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use tdb_engines::redis::acl::{Role, setuser_args};
use tdb_resp::frame::{Frame, Limits, ReplyDecoder, Request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub struct TestRedis {
    child: Child,
    pub port: u16,
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestRedis {
    pub fn start() -> anyhow::Result<Self> {
        for _ in 0..5 {
            if let Some(server) = Self::try_start()? {
                return Ok(server);
            }
        }
        bail!("redis-server did not start")
    }

    fn try_start() -> anyhow::Result<Option<Self>> {
        let port = StdListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("redis.sock");
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--unixsocketperm",
                "700",
            ])
            .arg("--unixsocket")
            .arg(&socket)
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("redis-server is installed")?;
        let stdout = child.stdout.take().context("piped stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = lines
            .by_ref()
            .map_while(Result::ok)
            .any(|line| line.contains("Ready to accept connections"));
        if !ready {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Some(Self {
            child,
            port,
            socket,
            _dir: dir,
        }))
    }

    /// Stops the server's process (`SIGSTOP`): it reads nothing until [`resume`](Self::resume).
    pub fn pause(&self) -> anyhow::Result<()> {
        self.signal("-STOP")
    }

    pub fn resume(&self) -> anyhow::Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .arg(signal)
            .arg(self.child.id().to_string())
            .status()?;
        anyhow::ensure!(status.success(), "kill {signal} failed: {status}");
        Ok(())
    }

    /// The administrator's connection (the default user, no password).
    pub async fn admin(&self) -> anyhow::Result<Raw<tokio::net::TcpStream>> {
        Ok(Raw::new(
            tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?,
        ))
    }

    /// Creates an ACL user of namespace `name` as the control plane does
    /// (`tdb_engines::redis::acl`): its keys and channels only, data commands only.
    pub async fn acl_user(
        &self,
        user: &str,
        role: Role,
        name: &str,
        password: &str,
    ) -> anyhow::Result<()> {
        let args = setuser_args(user, role, name, password);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let answer = self.admin().await?.call(&args).await?;
        if answer != Frame::Simple("OK".into()) {
            bail!("ACL SETUSER answered {answer:?}");
        }
        Ok(())
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bare RESP client.
pub struct Raw<S> {
    pub io: S,
    buf: BytesMut,
    decoder: ReplyDecoder,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Raw<S> {
    pub fn new(io: S) -> Self {
        Self {
            io,
            buf: BytesMut::new(),
            decoder: ReplyDecoder::new(Limits::default()),
        }
    }

    pub async fn call(&mut self, args: &[&str]) -> anyhow::Result<Frame> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.call_bytes(&args).await
    }

    pub async fn call_bytes(&mut self, args: &[&[u8]]) -> anyhow::Result<Frame> {
        self.send(args).await?;
        self.read().await
    }

    pub async fn send(&mut self, args: &[&[u8]]) -> anyhow::Result<()> {
        let request = Request::new(args.iter().map(|a| Bytes::copy_from_slice(a)).collect())
            .context("a command name")?;
        let mut out = BytesMut::new();
        request.encode(&mut out);
        self.io.write_all(&out).await?;
        Ok(())
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.io.write_all(bytes).await?;
        Ok(())
    }

    /// The next frame, or an error when the connection closed first.
    pub async fn read(&mut self) -> anyhow::Result<Frame> {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf)? {
                return Ok(frame);
            }
            let read = tokio::time::timeout(
                std::time::Duration::from_secs(20),
                self.io.read_buf(&mut self.buf),
            )
            .await
            .context("no reply within 20 s")??;
            if read == 0 {
                bail!("connection closed");
            }
        }
    }

    /// Whether the peer closed the connection (after whatever it sent last).
    pub async fn closed(&mut self) -> bool {
        loop {
            match self.read().await {
                Ok(_) => continue,
                Err(_) => return true,
            }
        }
    }
}

/// A frame's text, for assertions.
pub fn text(frame: &Frame) -> String {
    match frame {
        Frame::Error(e) | Frame::BlobError(e) => String::from_utf8_lossy(e).into_owned(),
        other => other
            .as_bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_else(|| format!("{other:?}")),
    }
}
