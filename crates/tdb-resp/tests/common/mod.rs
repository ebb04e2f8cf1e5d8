//! A private redis-server for the tests: started on a free port in a temporary directory,
//! ready once it logs that it accepts connections and answers PING, killed on drop. And a
//! blocking connection that speaks through the crate's own codec.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tdb_resp::frame::{Frame, Limits, ReplyDecoder, Request};

pub struct RedisServer {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> Self {
        // Another process may take the port between our probe and the server's bind; then
        // the server exits without becoming ready and we try another port.
        for _ in 0..5 {
            if let Some(server) = Self::try_start() {
                return server;
            }
        }
        panic!("redis-server did not start");
    }

    fn try_start() -> Option<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = lines
            .by_ref()
            .map_while(Result::ok)
            .any(|line| line.contains("Ready to accept connections"));
        if !ready {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let server = Self {
            child,
            port,
            _dir: dir,
        };
        let pong = server.connect().call(&["PING"]);
        assert_eq!(pong, Frame::Simple("PONG".into()));
        Some(server)
    }

    pub fn connect(&self) -> Conn {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        Conn {
            stream,
            buf: BytesMut::new(),
            decoder: ReplyDecoder::new(Limits::default()),
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    decoder: ReplyDecoder,
}

impl Conn {
    pub fn call(&mut self, args: &[&str]) -> Frame {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.call_bytes(&args)
    }

    pub fn call_bytes(&mut self, args: &[&[u8]]) -> Frame {
        let request = Request::new(args.iter().map(|a| Bytes::copy_from_slice(a)).collect())
            .expect("a command name");
        let mut out = BytesMut::new();
        request.encode(&mut out);
        self.stream.write_all(&out).expect("write");
        self.read_reply()
    }

    pub fn read_reply(&mut self) -> Frame {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf).expect("a valid reply") {
                return frame;
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk).expect("read");
            assert!(n > 0, "server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Splits a command line on spaces.
pub fn words(line: &str) -> Vec<&str> {
    line.split(' ').collect()
}
