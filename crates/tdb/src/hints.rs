//! The API's messages send an HTTP client to another call (`use POST /login`); the CLI shows the
//! command that makes that call instead (`tdb login`), so its user is never sent to an HTTP path.

/// The calls an API message may name and the command that makes each. A `{}` in the path stands
/// for one name (a path segment); the same name goes where the command has its `{}`. Longer
/// paths come first, as `/tenants/{}` would also match the start of `/tenants/{}/backups`.
const CALLS: &[(&str, &str, &str)] = &[
    ("POST", "/login", "tdb login"),
    ("POST", "/signup", "tdb signup"),
    ("POST", "/invitations", "tdb invitations create"),
    ("POST", "/deployments", "tdb deployments create"),
    ("POST", "/tenants/{}/restore", "tdb tenants restore {}"),
    ("POST", "/tenants/{}/resume", "tdb tenants resume {}"),
    (
        "DELETE",
        "/tenants/{}?hard=true",
        "tdb tenants delete {} --hard",
    ),
    ("GET", "/tenants/{}/backups", "tdb tenants backups {}"),
    ("GET", "/tenants/{}", "tdb tenants get {}"),
];

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// `message` with every call it names that a command makes replaced by that command, in
/// backquotes; calls without a command stay as they are.
pub fn for_cli(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some((start, method)) = next_method(rest) {
        let after = &rest[start + method.len() + 1..];
        let len = after
            .find(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | ')' | '"' | '\''))
            .unwrap_or(after.len());
        // A sentence may end right after the path.
        let path = after[..len].trim_end_matches(['.', ':']);
        out.push_str(&rest[..start]);
        match command(method, path) {
            Some(cmd) => out.push_str(&format!("`{cmd}`")),
            None => out.push_str(&rest[start..start + method.len() + 1 + path.len()]),
        }
        rest = &after[path.len()..];
    }
    out.push_str(rest);
    out
}

/// The first `METHOD /` in `text` that starts a word: its offset and the method.
fn next_method(text: &str) -> Option<(usize, &'static str)> {
    METHODS
        .iter()
        .filter_map(|m| {
            let needle = format!("{m} /");
            let mut from = 0;
            while let Some(at) = text[from..].find(&needle) {
                let at = from + at;
                let starts_word = text[..at]
                    .chars()
                    .next_back()
                    .is_none_or(|c| !c.is_alphanumeric());
                if starts_word {
                    return Some((at, *m));
                }
                from = at + needle.len();
            }
            None
        })
        .min_by_key(|(at, _)| *at)
}

/// The command that makes the call `method path`, if there is one.
fn command(method: &str, path: &str) -> Option<String> {
    CALLS
        .iter()
        .filter(|(m, _, _)| *m == method)
        .find_map(|(_, pattern, cmd)| match pattern.split_once("{}") {
            None => (path == *pattern).then(|| cmd.to_string()),
            Some((before, after)) => {
                let name = path.strip_prefix(before)?.strip_suffix(after)?;
                let plain = !name.is_empty() && !name.contains(['/', '?', '&']);
                plain.then(|| cmd.replace("{}", name))
            }
        })
}

#[cfg(test)]
mod tests {
    use super::for_cli;

    #[test]
    fn calls_with_a_command_become_the_command() {
        assert_eq!(
            for_cli("an account with this e-mail already exists; use POST /login"),
            "an account with this e-mail already exists; use `tdb login`"
        );
        assert_eq!(
            for_cli(
                "Tenant 'acme' is in trash. Use POST /tenants/acme/restore or \
                 DELETE /tenants/acme?hard=true"
            ),
            "Tenant 'acme' is in trash. Use `tdb tenants restore acme` or \
             `tdb tenants delete acme --hard`"
        );
        assert_eq!(
            for_cli("no backup at 'x'; see GET /tenants/acme/backups."),
            "no backup at 'x'; see `tdb tenants backups acme`."
        );
        assert_eq!(
            for_cli("behind (see GET /tenants/acme)"),
            "behind (see `tdb tenants get acme`)"
        );
    }

    #[test]
    fn other_text_is_left_alone() {
        for text in [
            "unknown region 'x'; see GET /regions",
            "record it again with POST /workspaces/{id}/queries",
            "REPOST /login is not a call",
            "GET /tenants/a/b/c",
            "",
            "POST",
        ] {
            assert_eq!(for_cli(text), text);
        }
    }
}
