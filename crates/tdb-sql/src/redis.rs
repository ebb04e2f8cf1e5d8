//! Redis commands as the REST API takes them (`/workspaces/{id}/queries`, `/admin/query`): one
//! command per line, blank lines and `#` comment lines left out. A command is a query when it
//! only reads; everything else counts as a change of data (Redis has no DDL, so nothing is ever
//! captured into a blueprint). The session that runs the commands (tdb-engines' Redis engine)
//! parses each line with the server's own quoting rules and checks it against the server's
//! command table; this only sorts lines for the API's role checks.

use crate::{Kind, SqlError, Statement};

/// Commands that only read (their first word, upper-cased; `OBJECT`, `MEMORY` and the like
/// read too, but are left to the session's own checks as changes).
const READS: &[&str] = &[
    "BITCOUNT",
    "BITPOS",
    "DBSIZE",
    "DUMP",
    "ECHO",
    "EXISTS",
    "EXPIRETIME",
    "GEODIST",
    "GEOHASH",
    "GEOPOS",
    "GEOSEARCH",
    "GET",
    "GETBIT",
    "GETRANGE",
    "HEXISTS",
    "HGET",
    "HGETALL",
    "HKEYS",
    "HLEN",
    "HMGET",
    "HRANDFIELD",
    "HSCAN",
    "HSTRLEN",
    "HVALS",
    "KEYS",
    "LINDEX",
    "LLEN",
    "LPOS",
    "LRANGE",
    "MGET",
    "PEXPIRETIME",
    "PFCOUNT",
    "PING",
    "PTTL",
    "SCAN",
    "SCARD",
    "SDIFF",
    "SINTER",
    "SINTERCARD",
    "SISMEMBER",
    "SMEMBERS",
    "SMISMEMBER",
    "SRANDMEMBER",
    "SSCAN",
    "STRLEN",
    "SUBSTR",
    "SUNION",
    "TIME",
    "TTL",
    "TYPE",
    "XINFO",
    "XLEN",
    "XPENDING",
    "XRANGE",
    "XREAD",
    "XREVRANGE",
    "ZCARD",
    "ZCOUNT",
    "ZDIFF",
    "ZINTER",
    "ZINTERCARD",
    "ZLEXCOUNT",
    "ZMSCORE",
    "ZRANDMEMBER",
    "ZRANGE",
    "ZRANGEBYLEX",
    "ZRANGEBYSCORE",
    "ZRANK",
    "ZREVRANGE",
    "ZREVRANGEBYLEX",
    "ZREVRANGEBYSCORE",
    "ZREVRANK",
    "ZSCAN",
    "ZSCORE",
    "ZUNION",
];

/// The commands of a batch, one per non-blank line that is not a `#` comment.
pub fn split(text: &str) -> Result<Vec<&str>, SqlError> {
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect())
}

/// The commands of a batch with their kind and tag (the command's name, upper-cased).
pub fn classify_all(text: &str) -> Result<Vec<Statement<'_>>, SqlError> {
    Ok(split(text)?
        .into_iter()
        .map(|line| {
            let tag = line
                .split_whitespace()
                .next()
                .unwrap_or("")
                .trim_matches(|c| c == '"' || c == '\'')
                .to_ascii_uppercase();
            let kind = if READS.contains(&tag.as_str()) {
                Kind::Query
            } else {
                Kind::Dml
            };
            Statement {
                text: line,
                kind,
                tag,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_command_per_line_sorted_into_reads_and_writes() {
        let batch = "SET user:1 alice\n\n  # a note\nget user:1\n\"KEYS\" *\nFLUSHDB";
        let commands = classify_all(batch).expect("commands");
        let seen: Vec<(&str, &Kind, &str)> = commands
            .iter()
            .map(|s| (s.text, &s.kind, s.tag.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                ("SET user:1 alice", &Kind::Dml, "SET"),
                ("get user:1", &Kind::Query, "GET"),
                ("\"KEYS\" *", &Kind::Query, "KEYS"),
                ("FLUSHDB", &Kind::Dml, "FLUSHDB"),
            ]
        );
        let mut sorted = READS.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, READS, "kept sorted, so a reader finds a command");
    }
}
