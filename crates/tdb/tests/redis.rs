//! Redis workspaces and tenants on tdb's managed redis-server, through the real API: commands
//! through a workspace and admin queries, rules for keys carried to tenants by a deployment,
//! tenants that see only their own keys, and a backup that a rollback brings back key by key.

mod common;

use common::*;
use serde_json::{Value, json};
use tdb_testkit::TdbServer;

async fn redis_account(s: &TdbServer, email: &str) -> (String, Value) {
    let key = str_of(&signup(s, email, "Cache").await, "api_key").to_string();
    let body = json!({"name": "cache", "database": "Redis", "mode": "tenant"});
    let (st, ws) = post(s, "/workspaces", Some(&key), body).await;
    assert_eq!(st, 201, "{ws}\n{}", s.log_tail());
    (key, ws)
}

/// The replies of `commands` (one per line) on tenant `tenant`: the last command's rows.
async fn admin(s: &TdbServer, key: &str, tenant: &str, commands: &str) -> (u16, Value) {
    post(
        s,
        "/admin/query",
        Some(key),
        json!({"blueprint": "cache", "tenant_id": tenant, "query": commands}),
    )
    .await
}

/// The single reply of a command that must succeed.
async fn reply(s: &TdbServer, key: &str, tenant: &str, command: &str) -> Value {
    let (st, body) = admin(s, key, tenant, command).await;
    assert_eq!(st, 200, "{command}: {body}");
    let rows = body["rows"].as_array().cloned().unwrap_or_default();
    Value::Array(rows.into_iter().map(|r| r[0].clone()).collect())
}

#[tokio::test]
async fn a_redis_workspace_carries_its_rules_to_tenants_that_see_only_their_keys() {
    let s = start().await;
    let (key, ws) = redis_account(&s, "cache@example.com").await;
    let url = str_of(&ws, "connection_string");
    assert!(
        url.starts_with("rediss://cache_workspace:") && url.ends_with("/0"),
        "{ws}"
    );
    // The managed server has a memory ceiling (a quarter of the machine's memory by default)
    // and refuses writes past it instead of evicting some tenant's keys.
    let conf = std::fs::read_to_string(s.data_dir().join("servers/redis-shared/redis.conf"))
        .expect("the managed server's configuration");
    let max_memory = conf
        .lines()
        .find_map(|l| l.strip_prefix("maxmemory \""))
        .and_then(|v| v.strip_suffix("mb\""))
        .and_then(|mb| mb.parse::<u64>().ok());
    assert!(max_memory.is_some_and(|mb| mb >= 64), "{conf}");
    assert!(conf.contains("maxmemory-policy \"noeviction\""), "{conf}");

    // Commands, one per line; the last one's reply comes back as rows.
    let (st, out) = post(
        &s,
        "/workspaces/cache/queries",
        Some(&key),
        json!({"query": "SET greeting hello\nRPUSH list a b c\nLRANGE list 0 -1"}),
    )
    .await;
    assert_eq!(st, 200, "{out}");
    assert_eq!(out["statements_executed"], 3, "{out}");
    assert_eq!(out["rows"], json!([["a"], ["b"], ["c"]]), "{out}");
    // Or one command per element of an array (quotes and spaces stay inside one argument).
    let (st, out) = post(
        &s,
        "/workspaces/cache/queries",
        Some(&key),
        json!({"query": ["SET \"two words\" v", "GET \"two words\""]}),
    )
    .await;
    assert_eq!((st, &out["rows"]), (200, &json!([["v"]])), "{out}");
    let (st, out) = post(
        &s,
        "/workspaces/cache/queries",
        Some(&key),
        json!({"query": ["GET a\nFLUSHALL"]}),
    )
    .await;
    assert_eq!((st, out["field"].as_str()), (400, Some("query")), "{out}");
    // Nothing that is not the workspace's own: the server-wide commands are refused.
    let (st, refused) = post(
        &s,
        "/workspaces/cache/queries",
        Some(&key),
        json!({"query": "FLUSHALL"}),
    )
    .await;
    assert_eq!(st, 400, "{refused}");

    // Rules for keys: validated, saved, and pending until a deployment.
    let (st, bad) = call(
        &s,
        reqwest::Method::PATCH,
        "/workspaces/cache/settings",
        Some(&key),
        Some(r#"{"patterns": {"a[": {"ttl": 5}}}"#),
    )
    .await;
    assert_eq!(
        (st, bad["field"].as_str()),
        (400, Some("patterns.a[")),
        "{bad}"
    );
    let (st, saved) = call(
        &s,
        reqwest::Method::PATCH,
        "/workspaces/cache/settings",
        Some(&key),
        Some(r#"{"default_ttl": 3600, "max_keys": 1000, "patterns": {"session:*": {"ttl": 60}}}"#),
    )
    .await;
    assert_eq!(st, 200, "{saved}");
    assert_eq!(saved["pending_deploy"], true, "{saved}");
    assert_eq!(
        saved["message"],
        "Settings saved. Deploy to apply to tenants."
    );
    let (_, settings) = get(&s, "/workspaces/cache/settings", &key).await;
    assert_eq!(settings["database_type"], "Redis", "{settings}");
    assert_eq!(settings["settings"]["default_ttl"], 3600, "{settings}");
    assert_eq!(
        settings["settings"]["patterns"],
        json!({"session:*": {"ttl": 60}})
    );
    assert!(
        settings["available_fields"]
            .as_array()
            .is_some_and(|f| f.contains(&json!("max_keys")) && !f.contains(&json!("pool_mode"))),
        "{settings}"
    );
    let (st, refused) = call(
        &s,
        reqwest::Method::PATCH,
        "/workspaces/cache/settings",
        Some(&key),
        Some(r#"{"pool_mode": "transaction"}"#),
    )
    .await;
    assert_eq!((st, refused["field"].as_str()), (400, Some("pool_mode")));

    let d = deploy_and_wait(&s, &key, "cache").await;
    assert_eq!(d["status"], "completed", "{d}\n{}", s.log_tail());
    let (_, versions) = get(&s, "/blueprints/cache/versions", &key).await;
    assert!(versions.to_string().contains("\"version\":1"), "{versions}");
    // Nothing changed since: nothing to deploy.
    let (st, _) = post(
        &s,
        "/deployments",
        Some(&key),
        json!({"blueprint_name": "cache"}),
    )
    .await;
    assert_eq!(st, 201, "a redeploy of the same version is allowed");

    // Tenants: a key prefix each, reached by the reference's login.
    for tenant in ["acme", "beta"] {
        let body = json!({"tenant_id": tenant, "databases": [{"blueprint": "cache"}]});
        let (st, t) = post(&s, "/tenants", Some(&key), body).await;
        assert_eq!(st, 201, "{t}\n{}", s.log_tail());
        let conn = &t["databases"][0]["connection"];
        let url = str_of(conn, "connection_string");
        assert!(
            url.starts_with(&format!("rediss://{tenant}:")) && url.ends_with("/0"),
            "{t}"
        );
        assert_eq!(conn["database"], "0", "{t}");
    }
    assert_eq!(
        reply(&s, &key, "acme", "SET secret acme-only").await,
        json!(["OK"])
    );
    assert_eq!(
        reply(&s, &key, "acme", "GET secret").await,
        json!(["acme-only"])
    );
    assert_eq!(reply(&s, &key, "beta", "GET secret").await, json!([null]));
    assert_eq!(reply(&s, &key, "beta", "KEYS *").await, json!([]));
    assert_eq!(reply(&s, &key, "acme", "KEYS *").await, json!(["secret"]));
    assert_eq!(reply(&s, &key, "beta", "DBSIZE").await, json!([0]));
    // Another tenant's key spelled out is still this tenant's own key.
    let (st, _) = admin(&s, &key, "beta", "KEYS *secret*").await;
    assert_eq!(st, 200);
    assert_eq!(reply(&s, &key, "beta", "KEYS *secret*").await, json!([]));

    // Backup, break, roll back: every key and value comes back.
    for command in [
        "HSET user:1 name ada plan pro",
        "SADD tags a b c",
        "SET counter 41",
        "SET temp x EX 5000",
    ] {
        assert_eq!(admin(&s, &key, "acme", command).await.0, 200, "{command}");
    }
    let (st, b) = post(&s, "/tenants/acme/backup", Some(&key), json!({})).await;
    assert_eq!(st, 200, "{b}");
    let path = b["paths"][0].as_str().expect("a path").to_string();
    assert!(
        path.starts_with("redis/manual/") && path.ends_with(".resp.gz"),
        "{path}"
    );
    let list = wait_for(&s, &key, "/tenants/acme/backups", |l| {
        l["backups"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|b| b["storage_path"] == path.as_str() && b["status"] != "pending")
    })
    .await;
    assert!(
        list.to_string().contains("completed"),
        "{list}\n{}",
        s.log_tail()
    );
    for command in [
        "DEL secret",
        "HSET user:1 plan free",
        "SET intruder 1",
        "INCR counter",
    ] {
        assert_eq!(admin(&s, &key, "acme", command).await.0, 200, "{command}");
    }
    let (st, r) = post(
        &s,
        "/tenants/acme/rollback",
        Some(&key),
        json!({ "storage_path": path }),
    )
    .await;
    assert_eq!(st, 200, "{r}");
    let id = r["rollback_id"].as_str().expect("rollback id").to_string();
    let t = wait_for(&s, &key, "/tenants/acme", |t| {
        t["last_rollback"]["rollback_id"] == id.as_str()
            && matches!(
                t["last_rollback"]["step"].as_str(),
                Some("completed" | "failed")
            )
    })
    .await;
    assert_eq!(
        t["last_rollback"]["step"],
        "completed",
        "{t}\n{}",
        s.log_tail()
    );
    assert_eq!(
        reply(&s, &key, "acme", "GET secret").await,
        json!(["acme-only"])
    );
    assert_eq!(
        reply(&s, &key, "acme", "HGET user:1 plan").await,
        json!(["pro"])
    );
    assert_eq!(reply(&s, &key, "acme", "GET counter").await, json!(["41"]));
    assert_eq!(reply(&s, &key, "acme", "EXISTS intruder").await, json!([0]));
    assert_eq!(reply(&s, &key, "acme", "SCARD tags").await, json!([3]));
    // Expiries come back as they were (a deadline, not a fresh TTL).
    let ttl = reply(&s, &key, "acme", "TTL temp").await[0]
        .as_i64()
        .expect("a TTL");
    assert!((4000..=5000).contains(&ttl), "TTL temp = {ttl}");
    // The other tenant never saw any of it.
    assert_eq!(reply(&s, &key, "beta", "DBSIZE").await, json!([0]));

    // Suspended, no admin query; a hard delete removes the keys, and the name is free again.
    let (st, _) = post(&s, "/tenants/acme/suspend", Some(&key), json!({})).await;
    assert_eq!(st, 200);
    assert_eq!(admin(&s, &key, "acme", "GET secret").await.0, 409);
    let (st, _) = post(&s, "/tenants/acme/resume", Some(&key), json!({})).await;
    assert_eq!(st, 200);
    // The trash keeps the keys out of reach; a restore brings them back.
    let (st, _) = delete(&s, "/tenants/acme", &key).await;
    assert_eq!(st, 200);
    assert_eq!(admin(&s, &key, "acme", "GET secret").await.0, 404);
    let (st, restored) = post(&s, "/tenants/acme/restore", Some(&key), json!({})).await;
    assert_eq!(st, 200, "{restored}");
    assert_eq!(
        reply(&s, &key, "acme", "GET secret").await,
        json!(["acme-only"])
    );
    let (st, gone) = delete(&s, "/tenants/acme?hard=true", &key).await;
    assert_eq!(st, 200, "{gone}");
    let body = json!({"tenant_id": "acme", "databases": [{"blueprint": "cache"}]});
    let (st, t) = post(&s, "/tenants", Some(&key), body).await;
    assert_eq!(st, 201, "{t}");
    assert_eq!(reply(&s, &key, "acme", "DBSIZE").await, json!([0]));
}

/// `redis-cli` with the URL `POST /tenants` handed out, over TLS with tdb's CA.
fn redis_cli(s: &TdbServer, url: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .arg("-u")
        .arg(url)
        .arg("--tls")
        .arg("--cacert")
        .arg(s.data_dir().join("tls/ca.crt"))
        .arg("--no-auth-warning")
        .args(args)
        .output()
        .expect("redis-cli runs");
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

#[tokio::test]
async fn a_tenant_connection_string_works_through_the_redis_proxy_with_the_rules() {
    let s = start().await;
    let (key, _) = redis_account(&s, "proxy@example.com").await;
    let rules = r#"{"default_ttl": 3600, "max_keys": 3, "patterns": {"session:*": {"ttl": 60}}}"#;
    let (st, saved) = call(
        &s,
        reqwest::Method::PATCH,
        "/workspaces/cache/settings",
        Some(&key),
        Some(rules),
    )
    .await;
    assert_eq!(st, 200, "{saved}");
    assert_eq!(
        deploy_and_wait(&s, &key, "cache").await["status"],
        "completed"
    );
    let mut urls = Vec::new();
    for tenant in ["acme", "beta"] {
        let body = json!({"tenant_id": tenant, "databases": [{"blueprint": "cache"}]});
        let (st, t) = post(&s, "/tenants", Some(&key), body).await;
        assert_eq!(st, 201, "{t}");
        let url = str_of(&t["databases"][0]["connection"], "connection_string").to_string();
        assert!(
            url.ends_with(&format!("@127.0.0.1:{}/0", s.redis_port)),
            "the Redis proxy's port: {url}"
        );
        urls.push(url);
    }
    let (acme, beta) = (&urls[0], &urls[1]);

    assert_eq!(redis_cli(&s, acme, &["SET", "a", "1"]), "OK");
    assert_eq!(redis_cli(&s, acme, &["GET", "a"]), "1");
    // A key written without a TTL gets the default, or its pattern's.
    let ttl: i64 = redis_cli(&s, acme, &["TTL", "a"]).parse().expect("a TTL");
    assert!((3500..=3600).contains(&ttl), "TTL a = {ttl}");
    assert_eq!(redis_cli(&s, acme, &["SET", "session:x", "1"]), "OK");
    let ttl: i64 = redis_cli(&s, acme, &["TTL", "session:x"])
        .parse()
        .expect("a TTL");
    assert!((1..=60).contains(&ttl), "TTL session:x = {ttl}");
    // max_keys 3: the third key is the last; overwriting still works.
    assert_eq!(redis_cli(&s, acme, &["SET", "b", "1"]), "OK");
    let refused = redis_cli(&s, acme, &["SET", "c", "1"]);
    assert!(refused.contains("max_keys"), "{refused}");
    assert_eq!(redis_cli(&s, acme, &["SET", "a", "2"]), "OK");
    let mut keys: Vec<String> = redis_cli(&s, acme, &["KEYS", "*"])
        .lines()
        .map(str::to_string)
        .collect();
    keys.sort();
    assert_eq!(keys, ["a", "b", "session:x"]);
    // The other tenant sees nothing of it.
    assert_eq!(redis_cli(&s, beta, &["GET", "a"]), "");
    assert_eq!(redis_cli(&s, beta, &["DBSIZE"]), "0");
    // A wrong key is refused as Redis refuses one.
    let wrong = acme.replacen("acme:", "acme:x", 1);
    let out = std::process::Command::new("redis-cli")
        .arg("-u")
        .arg(&wrong)
        .arg("--tls")
        .arg("--cacert")
        .arg(s.data_dir().join("tls/ca.crt"))
        .arg("--no-auth-warning")
        .arg("PING")
        .output()
        .expect("redis-cli runs");
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("WRONGPASS"), "{said}");
    // Each command reaches the tenant's query log, from the proxy.
    let logs = wait_for(&s, &key, "/tenants/acme/logs?search=SET", |l| {
        l.to_string().contains("proxy")
    })
    .await;
    assert!(logs.to_string().contains("SET"), "{logs}");
    // A suspended tenant is not served.
    let (st, _) = post(&s, "/tenants/acme/suspend", Some(&key), json!({})).await;
    assert_eq!(st, 200);
    let out = std::process::Command::new("redis-cli")
        .arg("-u")
        .arg(acme)
        .arg("--tls")
        .arg("--cacert")
        .arg(s.data_dir().join("tls/ca.crt"))
        .arg("--no-auth-warning")
        .arg("GET")
        .arg("a")
        .output()
        .expect("redis-cli runs");
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !said.contains('2') && said.contains("suspended"),
        "a suspended tenant answered: {said}"
    );
}
