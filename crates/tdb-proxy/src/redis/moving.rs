//! A client connection that can move from one proxy worker to another. A socket is registered
//! with the event loop of the worker that accepted it; a Redis session that must join its user's
//! lane on another worker (see [`super::lane`]) takes the socket out of its stream, TLS state and
//! all left in place, and registers it again on the other worker.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::mysql::stream::ClientIo;

/// A client's TCP stream, which is out only while its session moves between workers.
pub struct Movable(Option<TcpStream>);

impl Movable {
    pub fn new(stream: TcpStream) -> Self {
        Self(Some(stream))
    }

    fn stream(&mut self) -> io::Result<&mut TcpStream> {
        self.0
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "the session is moving"))
    }
}

/// Takes the client's socket off the calling worker's event loop.
pub fn detach(io: &mut ClientIo<Movable>) -> io::Result<std::net::TcpStream> {
    let slot = match io {
        ClientIo::Plain(movable) => &mut movable.0,
        ClientIo::Tls(tls) => &mut tls.get_mut().0.inner.0,
    };
    let stream = slot
        .take()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "the session is moving"))?;
    stream.into_std()
}

/// Registers the client's socket with the calling worker's event loop.
pub fn attach(io: &mut ClientIo<Movable>, socket: std::net::TcpStream) -> io::Result<()> {
    let stream = TcpStream::from_std(socket)?;
    let slot = match io {
        ClientIo::Plain(movable) => &mut movable.0,
        ClientIo::Tls(tls) => &mut tls.get_mut().0.inner.0,
    };
    *slot = Some(stream);
    Ok(())
}

impl AsyncRead for Movable {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(stream) => Pin::new(stream).poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for Movable {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().stream() {
            Ok(stream) => Pin::new(stream).poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(stream) => Pin::new(stream).poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(stream) => Pin::new(stream).poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}
