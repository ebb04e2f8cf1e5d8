//! The MySQL error numbers (with their SQLSTATEs) the proxy answers with itself. Numbers and
//! states are MariaDB's (`perror` on 10.11), so clients that act on them (retry on 1040, ask for
//! a password again on 1045) do the right thing; 3159 is MySQL's, which MariaDB shares.

/// The SQLSTATE of errors that name no other ("general error").
pub const GENERAL_SQLSTATE: &str = "HY000";

/// An error number and its SQLSTATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code {
    pub code: u16,
    pub sqlstate: &'static str,
}

const fn code(code: u16, sqlstate: &'static str) -> Code {
    Code { code, sqlstate }
}

/// `ER_CON_COUNT_ERROR`: too many connections (a tenant's `max_connections`, an address's rate).
pub const CON_COUNT: Code = code(1040, "08004");
/// `ER_HANDSHAKE_ERROR`: a malformed or out-of-order handshake.
pub const HANDSHAKE: Code = code(1043, "08S01");
/// `ER_DBACCESS_DENIED_ERROR`: another database than the one connected to.
pub const DBACCESS_DENIED: Code = code(1044, "42000");
/// `ER_ACCESS_DENIED_ERROR`: wrong user or password.
pub const ACCESS_DENIED: Code = code(1045, "28000");
/// `ER_NO_DB_ERROR`: no database named at connect.
pub const NO_DB: Code = code(1046, "3D000");
/// `ER_UNKNOWN_COM_ERROR`: a command the proxy does not relay.
pub const UNKNOWN_COM: Code = code(1047, "08S01");
/// `ER_BAD_DB_ERROR`: no such database.
pub const BAD_DB: Code = code(1049, "42000");
/// `ER_SERVER_SHUTDOWN`: tdb is shutting down.
pub const SERVER_SHUTDOWN: Code = code(1053, "08S01");
/// `ER_KILL_DENIED_ERROR`: KILL of a thread that is not the session's own.
pub const KILL_DENIED: Code = code(1095, "HY000");
/// `ER_UNKNOWN_ERROR`: a fault inside tdb, or a server that cannot be reached.
pub const UNKNOWN: Code = code(1105, "HY000");
/// `ER_UNKNOWN_CHARACTER_SET`: a character set the proxy cannot read statements in.
pub const UNKNOWN_CHARACTER_SET: Code = code(1115, "42000");
/// `ER_HOST_IS_BLOCKED`: too many failed logins from the address.
pub const HOST_BLOCKED: Code = code(1129, "HY000");
/// `ER_TABLEACCESS_DENIED_ERROR`: DDL on a tenant database.
pub const TABLEACCESS_DENIED: Code = code(1142, "42000");
/// `ER_NET_PACKET_TOO_LARGE`: a packet over the proxy's limit.
pub const PACKET_TOO_LARGE: Code = code(1153, "08S01");
/// `ER_SPECIFIC_ACCESS_DENIED_ERROR`: a statement no tdb connection may run.
pub const SPECIFIC_ACCESS_DENIED: Code = code(1227, "42000");
/// `ER_NOT_SUPPORTED_YET`: something the proxy cannot relay faithfully.
pub const NOT_SUPPORTED_YET: Code = code(1235, "42000");
/// `ER_QUERY_INTERRUPTED`: what MariaDB answers a killed statement with.
pub const QUERY_INTERRUPTED: u16 = 1317;
/// `ER_MALFORMED_PACKET`: a command whose body does not parse.
pub const MALFORMED_PACKET: Code = code(1835, "08S01");
/// `ER_CONNECTION_KILLED`: the session was ended (its tenant suspended or deleted).
pub const CONNECTION_KILLED: Code = code(1927, "70100");
/// `ER_STATEMENT_TIMEOUT`: a statement outlived `query_timeout_ms`.
pub const STATEMENT_TIMEOUT: Code = code(1969, "70100");
/// `ER_SECURE_TRANSPORT_REQUIRED`: plain text refused.
pub const SECURE_TRANSPORT_REQUIRED: Code = code(3159, "HY000");

/// The error a client is told for a refusal of the proxy's core (admission, routing, gates,
/// slots).
#[cfg(feature = "server")]
pub fn of_refusal(refusal: crate::refusal::Refusal) -> super::reply::Err {
    use crate::refusal::Reason;
    let code = match refusal.reason {
        Reason::TooMany => CON_COUNT,
        Reason::Unavailable | Reason::Internal => UNKNOWN,
        Reason::NoSuchDatabase => BAD_DB,
        Reason::NotAllowed => DBACCESS_DENIED,
        Reason::LoginsThrottled => HOST_BLOCKED,
        Reason::ShuttingDown => SERVER_SHUTDOWN,
    };
    super::reply::Err::new(code, refusal.message)
}
