//! The run-time parameters a client asks for when it connects: as startup parameters
//! (`application_name`, node-postgres' `statement_timeout`, asyncpg's `server_settings`) and in
//! libpq's `options` (`-c name=value`, `--name=value`; `PGOPTIONS`). Each one is applied on the
//! server connection, or the login is refused with an error that names it: none is dropped
//! silently. What a tenant may not choose at all (its role) and what it may not lift (the
//! statement timeout past `query_timeout_ms`) is refused here (and a provisioned database's
//! `search_path` outside its schema, by the session); the server refuses what it does not know
//! or does not let the tenant's role set.

use super::frame::PgError;
use super::sqlstate;

/// Startup parameters that belong to the protocol, not to the server's configuration.
const PROTOCOL: [&str; 4] = ["user", "database", "options", "replication"];

/// Parameters no client may set when it connects through tdb, and why: the route decides who it
/// is; and the two a role may set only as a backend starts (never with `SET`), one of which
/// would keep a server connection asleep for up to 35 minutes after the proxy gave up on it.
pub const REFUSED: [(&str, &str); 4] = [
    ("role", "the credential decides the role"),
    ("session_authorization", "the credential decides the role"),
    ("post_auth_delay", "it is for the server's administrator"),
    (
        "ignore_system_indexes",
        "it is for the server's administrator",
    ),
];

/// The parameters a client's startup packet asks the server for, lower-cased, in the order
/// given (a later one wins), `options` expanded; or the refusal of the login.
pub fn requested(startup: &[(String, String)]) -> Result<Vec<(String, String)>, PgError> {
    let mut asked = Vec::new();
    for (name, value) in startup {
        let name = name.to_ascii_lowercase();
        if name == "options" {
            asked.extend(parse_options(value)?);
        } else if !PROTOCOL.contains(&name.as_str()) && !name.starts_with("_pq_.") {
            asked.push((name, value.clone()));
        }
    }
    for (name, _) in &asked {
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if !valid {
            return Err(PgError::fatal(
                sqlstate::UNDEFINED_OBJECT,
                format!("\"{name}\" is not a configuration parameter name"),
            ));
        }
        if let Some((_, why)) = REFUSED.iter().find(|(n, _)| n == name) {
            return Err(PgError::fatal(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                format!("parameter \"{name}\" cannot be set when connecting through tdb: {why}"),
            ));
        }
    }
    // One value per name, the last given, as the server would take them.
    let mut last: Vec<(String, String)> = Vec::with_capacity(asked.len());
    for (name, value) in asked {
        last.retain(|(n, _)| *n != name);
        last.push((name, value));
    }
    Ok(last)
}

/// The server parameters of a session on a database whose statements may run `limit_ms` at
/// most (0: no limit): the client's, with `statement_timeout` the client's when it is within
/// the limit, else the limit. A client that asks for more (or for none) is refused. Sorted by
/// name.
pub fn for_route(
    asked: &[(String, String)],
    limit_ms: u64,
) -> Result<Vec<(String, String)>, PgError> {
    let mut params = Vec::with_capacity(asked.len() + 1);
    let mut timeout = limit_ms;
    for (name, value) in asked {
        match name.as_str() {
            "statement_timeout" => {
                let ms = duration_ms(value).ok_or_else(|| {
                    PgError::fatal(
                        sqlstate::INVALID_PARAMETER_VALUE,
                        format!("invalid value for parameter \"statement_timeout\": \"{value}\""),
                    )
                })?;
                if limit_ms > 0 && (ms == 0 || ms > limit_ms) {
                    return Err(PgError::fatal(
                        sqlstate::INVALID_PARAMETER_VALUE,
                        format!(
                            "statement_timeout \"{value}\" is over this database's \
                             query_timeout_ms ({limit_ms} ms); ask for {limit_ms} ms or less"
                        ),
                    ));
                }
                timeout = ms;
            }
            _ => params.push((name.clone(), value.clone())),
        }
    }
    params.push(("statement_timeout".into(), timeout.to_string()));
    params.sort();
    Ok(params)
}

/// Splits `options` as the server does (whitespace separates arguments; a backslash takes the
/// next character as it is) and reads its settings: `-c name=value`, `-cname=value` or
/// `--name=value`, with dashes in names meaning underscores. Any other switch is refused.
fn parse_options(options: &str) -> Result<Vec<(String, String)>, PgError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.extend(chars.next()),
            c if c.is_ascii_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let refuse = |what: &str| {
        PgError::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            format!(
                "the startup option \"{what}\" is not supported through tdb: only -c name=value \
                 and --name=value are"
            ),
        )
    };
    let mut settings = Vec::new();
    let mut words = words.into_iter();
    while let Some(w) = words.next() {
        let setting = if w == "-c" {
            words.next().ok_or_else(|| refuse("-c"))?
        } else if let Some(rest) = w.strip_prefix("--").or_else(|| w.strip_prefix("-c")) {
            rest.to_string()
        } else {
            return Err(refuse(&w));
        };
        let Some((name, value)) = setting.split_once('=') else {
            return Err(refuse(&setting));
        };
        settings.push((
            name.replace('-', "_").to_ascii_lowercase(),
            value.to_string(),
        ));
    }
    Ok(settings)
}

/// A `statement_timeout` value in milliseconds: a number (milliseconds) or a number with one of
/// the server's units (`us`, `ms`, `s`, `min`, `h`, `d`); `None` when it is neither.
pub fn duration_ms(value: &str) -> Option<u64> {
    let v = value.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match unit.trim() {
        "" | "ms" => 1.0,
        "us" => 0.001,
        "s" => 1_000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return None,
    };
    let ms = (number * factor).round();
    (ms.is_finite() && ms >= 0.0 && ms <= u64::MAX as f64).then_some(ms as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn options_are_read_as_the_server_reads_them() {
        let asked = requested(&pairs(&[
            ("user", "u"),
            (
                "options",
                "-c statement_timeout=300 --lock-timeout=5s -cwork_mem=8MB",
            ),
            ("Application_Name", "app"),
            ("options_not", "x"),
        ]))
        .expect("accepted");
        assert_eq!(
            asked,
            pairs(&[
                ("statement_timeout", "300"),
                ("lock_timeout", "5s"),
                ("work_mem", "8MB"),
                ("application_name", "app"),
                ("options_not", "x"),
            ])
        );
        let spaced = requested(&pairs(&[("options", r"-c search_path=a,\ b")])).expect("ok");
        assert_eq!(spaced, pairs(&[("search_path", "a, b")]));
    }

    #[test]
    fn other_switches_roles_and_bad_names_are_refused() {
        for (options, says) in [
            ("-D /tmp", "-D"),
            ("-c", "-c"),
            ("-c statement_timeout", "statement_timeout"),
            ("-c role=postgres", "role"),
            ("--session-authorization=postgres", "session_authorization"),
            ("-c post_auth_delay=100", "post_auth_delay"),
            ("-c ignore_system_indexes=on", "ignore_system_indexes"),
        ] {
            let e = requested(&pairs(&[("options", options)])).expect_err(options);
            assert!(e.message.contains(says), "{options}: {}", e.message);
        }
        let e = requested(&pairs(&[("ROLE", "postgres")])).expect_err("role");
        assert_eq!(e.code, "42501");
        let e = requested(&pairs(&[("bad name", "1")])).expect_err("name");
        assert_eq!(e.code, "42704");
    }

    #[test]
    fn the_statement_timeout_stays_within_the_limit() {
        let within = for_route(&pairs(&[("statement_timeout", "2s")]), 30_000).expect("ok");
        assert_eq!(within, pairs(&[("statement_timeout", "2000")]));
        let none = for_route(&[], 30_000).expect("ok");
        assert_eq!(none, pairs(&[("statement_timeout", "30000")]));
        for over in ["0", "31s", "1h", "forever"] {
            let e = for_route(&pairs(&[("statement_timeout", over)]), 30_000).expect_err(over);
            assert_eq!(e.code, "22023", "{over}");
        }
        let unlimited = for_route(&pairs(&[("statement_timeout", "0")]), 0).expect("ok");
        assert_eq!(unlimited, pairs(&[("statement_timeout", "0")]));
    }
}
