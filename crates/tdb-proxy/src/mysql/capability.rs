//! Capability flags, and the sets the proxy offers its clients and asks of its servers.
//!
//! Never offered: `CLIENT_LOCAL_FILES` (a server could then read files from the client's
//! machine, and a tenant could ask for `LOAD DATA LOCAL`), compression, session tracking,
//! `CLIENT_DEPRECATE_EOF` (without it every client and server use the classic EOF packets, so
//! the relay reads result sets one way only, cursors included) and MySQL 8's query attributes
//! (they change `COM_QUERY`'s layout).
//!
//! Of MariaDB's extended capabilities ([`ExtCaps`]) the proxy offers one, metadata caching: a
//! server may then leave out the column definitions of a prepared statement's result set when
//! the client already has them, which saves the server, the client and the relay a packet per
//! column on every execute. The rest (progress reports, bulk execution, extended type
//! information) change what flows in ways the relay does not read, and are never offered. A
//! greeting or handshake response carries extended capabilities only with `CLIENT_MYSQL`
//! (bit 0, [`Caps::LONG_PASSWORD`]) clear: the proxy's greeting clears it, as MariaDB's does,
//! and a MySQL client that sets it in its answer asks for none.

/// A set of capability flags (the low 32 bits; MariaDB's extended ones are [`ExtCaps`]).
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

    /// What the proxy offers a client (plus [`Caps::SSL`] when it has a certificate). Without
    /// `CLIENT_MYSQL`, so MariaDB's clients read [`ExtCaps::OFFERED`] from the greeting.
    pub const OFFERED: Caps = Caps(
        Self::FOUND_ROWS.0
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
    /// of a server that offers `server`; `extended` when it asks for extended capabilities too
    /// (then without `CLIENT_MYSQL`).
    pub fn for_server(client: Caps, server: Caps, extended: bool) -> Caps {
        let wanted = Self::TO_SERVER.with(client.and(Self::CLIENT_CHOICES));
        let wanted = wanted.and(server);
        match extended {
            true => wanted.without(Self::LONG_PASSWORD),
            false => wanted.with(Self::LONG_PASSWORD),
        }
    }

    /// Whether these flags may come with MariaDB's extended ones: `CLIENT_MYSQL` is clear.
    pub fn extensible(self) -> bool {
        !self.has(Self::LONG_PASSWORD)
    }
}

/// MariaDB's extended capability flags: bits 32-63 of its capabilities, shifted down. They are
/// sent in the greeting's and the handshake response's reserved bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExtCaps(pub u32);

impl ExtCaps {
    pub const PROGRESS: ExtCaps = ExtCaps(1);
    pub const STMT_BULK_OPERATIONS: ExtCaps = ExtCaps(1 << 2);
    pub const EXTENDED_METADATA: ExtCaps = ExtCaps(1 << 3);
    /// `MARIADB_CLIENT_CACHE_METADATA`: each column count carries a "metadata follows" byte,
    /// and an execute's result set may come without its column definitions.
    pub const CACHE_METADATA: ExtCaps = ExtCaps(1 << 4);

    /// What the proxy offers a client, and asks of a server for a client that took it.
    pub const OFFERED: ExtCaps = Self::CACHE_METADATA;

    pub fn has(self, other: ExtCaps) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn and(self, other: ExtCaps) -> ExtCaps {
        ExtCaps(self.0 & other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// What a server connection asks for on behalf of a client that took `client`, of a
    /// server that offers `server`.
    pub fn for_server(client: ExtCaps, server: ExtCaps) -> ExtCaps {
        client.and(server).and(Self::OFFERED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_dangerous_is_offered_or_passed_on() {
        for caps in [
            Caps::OFFERED,
            Caps::for_server(Caps(u32::MAX), Caps(u32::MAX), false),
            Caps::for_server(Caps(u32::MAX), Caps(u32::MAX), true),
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
        }
        // Extended capabilities go to a server only when asked for, and only the one offered.
        assert!(Caps::for_server(Caps(u32::MAX), Caps(u32::MAX), false).has(Caps::LONG_PASSWORD));
        assert!(Caps::for_server(Caps(u32::MAX), Caps(u32::MAX), true).extensible());
        let ext = ExtCaps::for_server(ExtCaps(u32::MAX), ExtCaps(u32::MAX));
        assert_eq!(ext, ExtCaps::CACHE_METADATA);
        for bad in [
            ExtCaps::PROGRESS,
            ExtCaps::STMT_BULK_OPERATIONS,
            ExtCaps::EXTENDED_METADATA,
        ] {
            assert!(!ext.has(bad) && !ExtCaps::OFFERED.has(bad), "{bad:?}");
        }
        let server = Caps::for_server(Caps::PROTOCOL_41, Caps(u32::MAX), false);
        assert!(
            !server.has(Caps::MULTI_STATEMENTS),
            "only when the client asked"
        );
    }
}
