//! A namespace's key settings, kept on its server where the proxy reads them: the hash
//! `tdb:settings:<name>`, which only the administrator reaches (no namespace may be named
//! `tdb`, so no tenant's key pattern `~<name>:*` covers it). The proxy enforces them: it gives
//! `default_ttl` or the first matching pattern's TTL to keys written without an expiry, and
//! refuses writes that would create a key past `max_keys`.
//!
//! Fields: `default_ttl_ms`, `max_keys`, and `ttl_ms:<pattern>` per pattern, in the order
//! given (`patterns_order`, the patterns as a JSON list, keeps it: hash fields have none).
//! A namespace without settings has no hash.

use std::time::Duration;

use super::conn::{self, RedisConn};
use crate::capability::KeySettings;
use crate::engine::{EngineError, Result};

/// The hash that holds namespace `name`'s settings.
pub fn settings_key(name: &str) -> String {
    format!("tdb:settings:{name}")
}

const DEFAULT_TTL: &str = "default_ttl_ms";
const MAX_KEYS: &str = "max_keys";
const PATTERN: &str = "ttl_ms:";
const ORDER: &str = "patterns_order";

/// The hash's fields for `settings`.
fn fields(settings: &KeySettings) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(ttl) = settings.default_ttl {
        out.push((DEFAULT_TTL.into(), ttl.as_millis().to_string()));
    }
    if let Some(max) = settings.max_keys {
        out.push((MAX_KEYS.into(), max.to_string()));
    }
    for (pattern, ttl) in &settings.patterns {
        out.push((format!("{PATTERN}{pattern}"), ttl.as_millis().to_string()));
    }
    if !settings.patterns.is_empty() {
        let order: Vec<&str> = settings.patterns.iter().map(|(p, _)| p.as_str()).collect();
        out.push((ORDER.into(), serde_json::Value::from(order).to_string()));
    }
    out
}

/// Replaces namespace `name`'s settings in one transaction.
pub async fn write(admin: &mut RedisConn, name: &str, settings: &KeySettings) -> Result<()> {
    let key = settings_key(name);
    let fields = fields(settings);
    admin.send(&["MULTI"]);
    admin.send(&["DEL", key.as_str()]);
    if !fields.is_empty() {
        let mut args = vec!["HSET".to_string(), key.clone()];
        for (field, value) in fields {
            args.extend([field, value]);
        }
        admin.send(&args);
    }
    admin.send(&["EXEC"]);
    let queued = 2 + usize::from(!settings_empty(settings));
    for _ in 0..queued {
        conn::check(admin.read().await?)?;
    }
    for reply in conn::items(admin.read().await?, "EXEC")? {
        conn::check(reply)?;
    }
    Ok(())
}

fn settings_empty(settings: &KeySettings) -> bool {
    settings.default_ttl.is_none() && settings.max_keys.is_none() && settings.patterns.is_empty()
}

/// Namespace `name`'s settings (the defaults when it has none).
pub async fn read(conn: &mut RedisConn, name: &str) -> Result<KeySettings> {
    let reply = conn.call(&["HGETALL", settings_key(name).as_str()]).await?;
    let items = conn::items(reply, "HGETALL")?;
    let pairs: Vec<(String, String)> = items
        .chunks_exact(2)
        .filter_map(|kv| Some((conn::text(&kv[0])?, conn::text(&kv[1])?)))
        .collect();
    parse(&pairs)
}

fn parse(pairs: &[(String, String)]) -> Result<KeySettings> {
    let bad = |field: &str| EngineError::Internal(format!("settings field {field} is malformed"));
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(f, _)| f == name)
            .map(|(_, v)| v.as_str())
    };
    let millis =
        |field: &str, v: &str| v.parse().map(Duration::from_millis).map_err(|_| bad(field));
    let mut settings = KeySettings::default();
    if let Some(v) = get(DEFAULT_TTL) {
        settings.default_ttl = Some(millis(DEFAULT_TTL, v)?);
    }
    if let Some(v) = get(MAX_KEYS) {
        settings.max_keys = Some(v.parse().map_err(|_| bad(MAX_KEYS))?);
    }
    if let Some(order) = get(ORDER) {
        let order: Vec<String> = serde_json::from_str(order).map_err(|_| bad(ORDER))?;
        for pattern in order {
            let field = format!("{PATTERN}{pattern}");
            let v = get(&field).ok_or_else(|| bad(&field))?;
            settings.patterns.push((pattern, millis(&field, v)?));
        }
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_through_the_fields_in_order() {
        let settings = KeySettings {
            default_ttl: Some(Duration::from_secs(60)),
            max_keys: Some(1000),
            patterns: vec![
                ("session:*".into(), Duration::from_secs(1800)),
                ("cache:*".into(), Duration::from_millis(300_500)),
            ],
        };
        let pairs = fields(&settings);
        assert!(pairs.contains(&("ttl_ms:cache:*".into(), "300500".into())));
        assert_eq!(parse(&pairs).expect("parsed"), settings);
        assert_eq!(parse(&[]).expect("none"), KeySettings::default());
        assert!(fields(&KeySettings::default()).is_empty());
    }
}
