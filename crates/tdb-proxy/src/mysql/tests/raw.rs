//! A bare MySQL client on the proxy's own codec, for what the real clients cannot be made to
//! send: broken handshakes, `COM_CHANGE_USER`, `COM_RESET_CONNECTION`, unknown commands, and
//! reading an OK's information.

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::mysql::auth;
use crate::mysql::capability::{Caps, ExtCaps};
use crate::mysql::handshake::{Handshake, HandshakeResponse};
use crate::mysql::packet::{self, Packet, PacketReader};
use crate::mysql::reply;
use crate::mysql::response::{Expect, Response, Seen, Step};

pub struct Raw {
    pub stream: TcpStream,
    reader: PacketReader,
    pub greeting: Handshake,
    /// The session agreed on MariaDB's metadata caching.
    cached_metadata: bool,
}

impl Raw {
    pub async fn connect(addr: std::net::SocketAddr) -> anyhow::Result<Self> {
        let mut stream = TcpStream::connect(addr).await?;
        let mut reader = PacketReader::default();
        let first = reader.next(&mut stream, 1 << 20).await?;
        let greeting = Handshake::decode(&first.payload)?;
        Ok(Self {
            stream,
            reader,
            greeting,
            cached_metadata: false,
        })
    }

    /// Logs in with `mysql_native_password` in plain text; the server's answer.
    pub async fn login(&mut self, user: &str, password: &str, db: &str) -> anyhow::Result<Packet> {
        self.login_with(user, password, db, ExtCaps::default())
            .await
    }

    /// [`Raw::login`], asking for MariaDB's extended capabilities `ext` of those the greeting
    /// offers.
    pub async fn login_with(
        &mut self,
        user: &str,
        password: &str,
        db: &str,
        ext: ExtCaps,
    ) -> anyhow::Result<Packet> {
        let ext = ext.and(self.greeting.ext);
        self.cached_metadata = ext.has(ExtCaps::CACHE_METADATA);
        let caps = match ext.is_empty() {
            true => Caps::OFFERED.with(Caps::LONG_PASSWORD),
            false => Caps::OFFERED,
        };
        let response = HandshakeResponse {
            caps,
            ext,
            max_packet: 1 << 24,
            collation: 45,
            user: user.into(),
            auth_response: auth::native_scramble(password.as_bytes(), &self.greeting.scramble)
                .to_vec(),
            database: Some(db.into()),
            auth_plugin: Some(auth::NATIVE.into()),
            attrs: vec![("_client_name".into(), "tdb-test".into())],
        };
        let mut payload = Vec::new();
        response.encode(&mut payload);
        self.send(1, &payload).await?;
        self.next().await
    }

    pub async fn send(&mut self, seq: u8, payload: &[u8]) -> anyhow::Result<()> {
        let mut out = Vec::new();
        packet::encode(&mut out, seq, payload);
        self.stream.write_all(&out).await?;
        Ok(())
    }

    pub async fn next(&mut self) -> anyhow::Result<Packet> {
        Ok(self.reader.next(&mut self.stream, 64 << 20).await?)
    }

    /// Sends a command and reads its whole answer.
    pub async fn command(&mut self, payload: &[u8], expect: Expect) -> anyhow::Result<Vec<Packet>> {
        self.send(0, payload).await?;
        let mut response = Response::new(expect).caching_metadata(self.cached_metadata);
        let mut packets = Vec::new();
        loop {
            let packet = self.next().await?;
            let step = response.step(Seen::Whole(&packet.payload))?;
            packets.push(packet);
            if let Step::Done(_) = step {
                return Ok(packets);
            }
        }
    }

    pub async fn query(&mut self, sql: &str) -> anyhow::Result<Vec<Packet>> {
        let mut payload = vec![0x03];
        payload.extend_from_slice(sql.as_bytes());
        self.command(&payload, Expect::Results).await
    }
}

/// The error a packet holds, if it is one.
pub fn error(packet: &Packet) -> Option<reply::Err> {
    (packet.payload.first() == Some(&reply::ERR_HEADER))
        .then(|| reply::Err::decode(&packet.payload).ok())
        .flatten()
}

/// The first column of each text row of an answer (after the definitions' EOF).
pub fn first_column(packets: &[Packet]) -> Vec<String> {
    let eofs: Vec<usize> = packets
        .iter()
        .enumerate()
        .filter(|(_, p)| reply::Eof::decode(&p.payload).is_some())
        .map(|(i, _)| i)
        .collect();
    let (Some(&start), Some(&end)) = (eofs.first(), eofs.get(1)) else {
        return Vec::new();
    };
    packets[start + 1..end]
        .iter()
        .map(|p| {
            let mut r = crate::mysql::wire::Reader::new(&p.payload);
            r.lenenc_bytes("value")
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_else(|_| "NULL".into())
        })
        .collect()
}
