//! What a client may read of a job's failure. A dump or restore that cannot connect is told so by
//! PostgreSQL in words that name the server's socket (with its port) and the roles tdb keeps for
//! the tenant; those are tdb's own business and stay in its log, which has the whole message.

/// `detail` without the server's address and tdb's role names.
pub fn scrub(detail: &str) -> String {
    // `pg_dump: connection to server on socket "/…/.s.PGSQL.5433" failed: FATAL:  role "…" …`
    let text = match detail.split_once(" failed: ") {
        Some((head, reason)) if head.contains("connection to server") => {
            let tool = head.split_once(": ").map_or("", |(tool, _)| tool);
            let who = if tool.is_empty() { "tdb" } else { tool };
            format!(
                "{who} could not connect to the tenant's database: {}",
                reason.trim()
            )
        }
        _ => detail.to_string(),
    };
    let text = unname(&text, "role");
    unname(&text, "user")
}

/// `kind "name"` becomes `the tenant's kind`: the names are tdb's, not the client's.
fn unname(text: &str, kind: &str) -> String {
    let marker = format!("{kind} \"");
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(&marker) {
        let name_start = at + marker.len();
        let Some(len) = rest[name_start..].find('"') else {
            break;
        };
        out.push_str(&rest[..at]);
        out.push_str("the tenant's ");
        out.push_str(kind);
        rest = &rest[name_start + len + 1..];
    }
    out.push_str(rest);
    // PostgreSQL pads "FATAL:  " with two spaces.
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::scrub;

    #[test]
    fn a_refused_connection_keeps_its_reason_without_address_or_roles() {
        let raw = "pg_dump: connection to server on socket \
                   \"/srv/tdb-data/servers/postgresql-shared/socket/.s.PGSQL.40123\" failed: \
                   FATAL:  role \"tdb_t_4f2a_owner\" is not permitted to log in";
        let shown = scrub(raw);
        assert_eq!(
            shown,
            "pg_dump could not connect to the tenant's database: FATAL: the tenant's role is \
             not permitted to log in"
        );
        let tcp = "pg_dump: connection to server at \"10.0.0.5\", port 5432 failed: FATAL: \
                   password authentication failed for user \"tdb_t_owner\"";
        let shown = scrub(tcp);
        assert!(
            !shown.contains("10.0.0.5") && !shown.contains("5432"),
            "{shown}"
        );
        assert!(!shown.contains("tdb_t_owner"), "{shown}");
        assert!(shown.contains("password authentication failed"), "{shown}");
    }

    #[test]
    fn other_failures_are_left_as_they_are() {
        let raw = "pg_dump: query failed: ERROR: permission denied for table orders";
        assert_eq!(scrub(raw), raw);
        assert_eq!(scrub("the dump failed"), "the dump failed");
    }
}
