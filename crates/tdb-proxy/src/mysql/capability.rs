//! Capability flags, and the sets the proxy offers its clients and asks of its servers.
//!
//! Never offered: `CLIENT_LOCAL_FILES` (a server could then read files from the client's
//! machine, and a tenant could ask for `LOAD DATA LOCAL`), compression, session tracking,
//! `CLIENT_DEPRECATE_EOF` (without it every client and server use the classic EOF packets, so
//! the relay reads result sets one way only, cursors included), MySQL 8's query attributes
//! (they change `COM_QUERY`'s layout) and MariaDB's extended capabilities (progress reports,
//! bulk execution): the proxy sets `CLIENT_MYSQL`, which tells MariaDB clients and servers to
//! keep to the common protocol.

/// A set of capability flags (the low 32 bits; MariaDB's extended ones are never used).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Caps(pub u32);

impl Caps {
    /// `CLIENT_LONG_PASSWORD`; MariaDB reads it as `CLIENT_MYSQL`.
    pub const LONG_PASSWORD: Caps = Caps(1);
    pub const FOUND_ROWS: Caps = Caps(1 << 1);
    pub const LONG_FLAG: Caps = Caps(1 << 2);
    pub const CONNECT_WITH_DB: Caps = Caps(1 << 3);
    pub const NO_SCHEMA: Caps = Caps(1 << 4);
    pub const COMPRESS: Caps = Caps(1 << 5);
    pub const LOCAL_FILES: Caps = Caps(1 << 7);
    pub const IGNORE_SPACE: Caps = Caps(1 << 8);
    pub const PROTOCOL_41: Caps = Caps(1 << 9);
    pub const INTERACTIVE: Caps = Caps(1 << 10);
    pub const SSL: Caps = Caps(1 << 11);
    pub const TRANSACTIONS: Caps = Caps(1 << 13);
    pub const SECURE_CONNECTION: Caps = Caps(1 << 15);
    pub const MULTI_STATEMENTS: Caps = Caps(1 << 16);
    pub const MULTI_RESULTS: Caps = Caps(1 << 17);
    pub const PS_MULTI_RESULTS: Caps = Caps(1 << 18);
    pub const PLUGIN_AUTH: Caps = Caps(1 << 19);
    pub const CONNECT_ATTRS: Caps = Caps(1 << 20);
    pub const PLUGIN_AUTH_LENENC_DATA: Caps = Caps(1 << 21);
    pub const SESSION_TRACK: Caps = Caps(1 << 23);
    pub const DEPRECATE_EOF: Caps = Caps(1 << 24);
    pub const QUERY_ATTRIBUTES: Caps = Caps(1 << 27);

    /// What the proxy offers a client (plus [`Caps::SSL`] when it has a certificate).
    pub const OFFERED: Caps = Caps(
        Self::LONG_PASSWORD.0
            | Self::FOUND_ROWS.0
            | Self::LONG_FLAG.0
            | Self::CONNECT_WITH_DB.0
            | Self::IGNORE_SPACE.0
            | Self::PROTOCOL_41.0
            | Self::INTERACTIVE.0
            | Self::TRANSACTIONS.0
            | Self::SECURE_CONNECTION.0
            | Self::MULTI_STATEMENTS.0
            | Self::MULTI_RESULTS.0
            | Self::PS_MULTI_RESULTS.0
            | Self::PLUGIN_AUTH.0
            | Self::CONNECT_ATTRS.0
            | Self::PLUGIN_AUTH_LENENC_DATA.0,
    );

    /// What a client asked for that changes how the server reads its statements or answers
    /// them: passed on to the server as the client chose.
    pub const CLIENT_CHOICES: Caps = Caps(
        Self::FOUND_ROWS.0
            | Self::LONG_FLAG.0
            | Self::IGNORE_SPACE.0
            | Self::INTERACTIVE.0
            | Self::MULTI_STATEMENTS.0
            | Self::MULTI_RESULTS.0
            | Self::PS_MULTI_RESULTS.0,
    );

    /// What the proxy always asks of a server as its client.
    pub const TO_SERVER: Caps = Caps(
        Self::LONG_PASSWORD.0
            | Self::CONNECT_WITH_DB.0
            | Self::PROTOCOL_41.0
            | Self::TRANSACTIONS.0
            | Self::SECURE_CONNECTION.0
            | Self::PLUGIN_AUTH.0
            | Self::PLUGIN_AUTH_LENENC_DATA.0,
    );

    pub fn has(self, other: Caps) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn with(self, other: Caps) -> Caps {
        Caps(self.0 | other.0)
    }

    pub fn and(self, other: Caps) -> Caps {
        Caps(self.0 & other.0)
    }

    pub fn without(self, other: Caps) -> Caps {
        Caps(self.0 & !other.0)
    }

    /// The flags a server connection asks for on behalf of a client that asked for `client`,
    /// of a server that offers `server`.
    pub fn for_server(client: Caps, server: Caps) -> Caps {
        let wanted = Self::TO_SERVER.with(client.and(Self::CLIENT_CHOICES));
        wanted.and(server).with(Self::LONG_PASSWORD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_dangerous_is_offered_or_passed_on() {
        for caps in [
            Caps::OFFERED,
            Caps::for_server(Caps(u32::MAX), Caps(u32::MAX)),
        ] {
            for bad in [
                Caps::LOCAL_FILES,
                Caps::COMPRESS,
                Caps::SESSION_TRACK,
                Caps::DEPRECATE_EOF,
                Caps::QUERY_ATTRIBUTES,
                Caps::SSL,
            ] {
                assert!(!caps.has(bad), "{bad:?} in {caps:?}");
            }
            assert!(
                caps.has(Caps::LONG_PASSWORD),
                "CLIENT_MYSQL: no MariaDB extensions"
            );
        }
        let server = Caps::for_server(Caps::PROTOCOL_41, Caps(u32::MAX));
        assert!(
            !server.has(Caps::MULTI_STATEMENTS),
            "only when the client asked"
        );
    }
}
