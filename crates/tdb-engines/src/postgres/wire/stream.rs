//! The byte stream to a PostgreSQL server: TCP, or a Unix socket when the server's host is a
//! directory (as libpq reads a host that starts with `/`). tdb's managed servers listen on a
//! socket in a private directory only, so nothing reaches them around tdb. The proxy relays over
//! it; tdb's own client sessions wrap it in TLS where a server asks for that.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream, tcp, unix};

/// A connected server stream.
pub enum ServerStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl ServerStream {
    /// Connects to `host:port`, or to the socket `<host>/.s.PGSQL.<port>` when `host` is a
    /// directory path.
    pub async fn connect(host: &str, port: u16) -> io::Result<Self> {
        if host.starts_with('/') {
            let path = format!("{host}/.s.PGSQL.{port}");
            return Ok(Self::Unix(UnixStream::connect(path).await?));
        }
        Self::tcp(TcpStream::connect((host, port)).await?)
    }

    /// Connects to `ip:port` (an address already resolved and checked).
    pub async fn connect_ip(ip: std::net::IpAddr, port: u16) -> io::Result<Self> {
        Self::tcp(TcpStream::connect((ip, port)).await?)
    }

    fn tcp(stream: TcpStream) -> io::Result<Self> {
        stream.set_nodelay(true)?;
        Ok(Self::Tcp(stream))
    }

    /// The same socket, registered with the calling thread's runtime instead of the one that
    /// opened it: an idle connection one event loop kept, taken over by another. The socket is
    /// read once without waiting first: an idle session is owed nothing, so end of file or any
    /// byte means the server closed it (or is closing it), and that is an error.
    pub fn rehome(self) -> io::Result<Self> {
        fn silent(socket: &mut impl io::Read) -> io::Result<()> {
            let mut byte = [0u8; 1];
            match socket.read(&mut byte) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
                Err(e) => Err(e),
                Ok(_) => Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "the server closed the idle connection",
                )),
            }
        }
        Ok(match self {
            Self::Tcp(s) => {
                let mut s = s.into_std()?;
                silent(&mut s)?;
                Self::Tcp(TcpStream::from_std(s)?)
            }
            Self::Unix(s) => {
                let mut s = s.into_std()?;
                silent(&mut s)?;
                Self::Unix(UnixStream::from_std(s)?)
            }
        })
    }

    /// Borrowed read and write halves (no lock between them, unlike `tokio::io::split`).
    pub fn split(&mut self) -> (ServerReadHalf<'_>, ServerWriteHalf<'_>) {
        match self {
            Self::Tcp(s) => {
                let (r, w) = s.split();
                (ServerReadHalf::Tcp(r), ServerWriteHalf::Tcp(w))
            }
            Self::Unix(s) => {
                let (r, w) = s.split();
                (ServerReadHalf::Unix(r), ServerWriteHalf::Unix(w))
            }
        }
    }
}

pub enum ServerReadHalf<'a> {
    Tcp(tcp::ReadHalf<'a>),
    Unix(unix::ReadHalf<'a>),
}

pub enum ServerWriteHalf<'a> {
    Tcp(tcp::WriteHalf<'a>),
    Unix(unix::WriteHalf<'a>),
}

impl AsyncRead for ServerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Self::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

impl AsyncRead for ServerReadHalf<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerWriteHalf<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Self::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
