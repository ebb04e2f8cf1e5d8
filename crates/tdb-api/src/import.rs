//! Schema import into a workspace from a built-in template, JSON table definitions, an external
//! database of the workspace's engine (its DDL as `pg_dump`, or MySQL's `SHOW CREATE TABLE`,
//! reports it), or a JSON document at a URL. The statements run one by one in the workspace and
//! are captured like any other DDL; tables that already exist are skipped. Each engine has its
//! own templates, in its own SQL.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

use axum::extract::State;
use serde_json::Value;
use tdb_core::KeyRole;
use tdb_engines::DatabaseAccess;
use tdb_types::{
    ExternalConnection, ImportDetails, ImportRequest, ImportResponse, StatementError, TableDef,
};

use crate::AppState;
use crate::envelope::{ApiError, ApiResult, Reply};
use crate::extract::{ApiJson, ApiPath, Auth};
use crate::workspace::{self, DdlTracker, Resolved, display_engine, engine_error};

const TEMPLATES: [(&str, &str); 4] = [
    ("ecommerce", include_str!("../templates/ecommerce.sql")),
    ("saas", include_str!("../templates/saas.sql")),
    ("blog", include_str!("../templates/blog.sql")),
    ("fintech", include_str!("../templates/fintech.sql")),
];
const MYSQL_TEMPLATES: [(&str, &str); 4] = [
    (
        "ecommerce",
        include_str!("../templates/mysql/ecommerce.sql"),
    ),
    ("saas", include_str!("../templates/mysql/saas.sql")),
    ("blog", include_str!("../templates/mysql/blog.sql")),
    ("fintech", include_str!("../templates/mysql/fintech.sql")),
];
const URL_LIMIT_BYTES: usize = 1 << 20;
const URL_TIMEOUT: Duration = Duration::from_secs(10);

/// Imports a schema into the workspace; each statement that runs is captured as DDL.
#[utoipa::path(post, path = "/workspaces/{id}/schema", tag = "workspaces",
    params(("id" = String, Path, description = "workspace name")), request_body = ImportRequest,
    responses((status = 200, body = ImportResponse), (status = 400)))]
pub async fn import_schema(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<ImportRequest>,
) -> ApiResult<ImportResponse> {
    auth.require_workspace(&name)?;
    auth.require_role(KeyRole::Write)?;
    let r = workspace::resolve(&state, &auth.project_id, &name).await?;
    if r.ws.engine == tdb_core::Engine::Redis {
        return Err(ApiError::bad_request(format!(
            "workspace '{name}' is a Redis workspace: it has keys, not a schema to import \
             (write them with POST /workspaces/{name}/queries; its rules for keys are its \
             settings)"
        )));
    }
    let dialect = workspace::dialect(r.ws.engine);
    let source = req.source.to_ascii_lowercase();
    let statements = match source.as_str() {
        "template" => template(req.template.as_deref(), dialect)?,
        "json" => tables_ddl(
            req.tables
                .as_deref()
                .ok_or_else(|| ApiError::field("tables", "is required when source is 'json'"))?,
            dialect,
        )?,
        "database" => external(&r, req.connection, state.config.import_allow_private_urls).await?,
        "url" => {
            let url = req
                .url
                .ok_or_else(|| ApiError::field("url", "is required when source is 'url'"))?;
            let doc = fetch_json(&url, state.config.import_allow_private_urls).await?;
            let tables: Vec<TableDef> = doc
                .get("tables")
                .cloned()
                .ok_or_else(|| ApiError::field("url", "the document has no 'tables' array"))
                .and_then(|t| {
                    serde_json::from_value::<Vec<TableDef>>(t).map_err(|e| {
                        ApiError::field("url", format!("the document's tables are invalid: {e}"))
                    })
                })?;
            tables_ddl(&tables, dialect)?
        }
        _ => {
            return Err(ApiError::field(
                "source",
                "must be one of: template, json, database, url",
            ));
        }
    };
    if req.collections.is_some() {
        return Err(ApiError::field(
            "collections",
            "apply to MongoDB workspaces; this one is PostgreSQL",
        ));
    }
    let outcome = apply(&state, &r, statements).await?;
    let kind = r.ws.engine;
    Ok(Reply::ok(ImportResponse {
        message: format!("Schema imported to workspace '{name}'"),
        details: ImportDetails {
            workspace: name.clone(),
            database_type: display_engine(kind).to_string(),
            statements_executed: outcome.executed,
            statements_skipped: outcome.skipped_statements,
            statements_failed: outcome.errors.len(),
            statements_total: outcome.total,
            ddl_captured: outcome.captured,
        },
        source,
        created: outcome.created,
        skipped: outcome.skipped,
        errors: outcome.errors,
    }))
}

fn template(name: Option<&str>, dialect: tdb_sql::Dialect) -> Result<Vec<String>, ApiError> {
    let name =
        name.ok_or_else(|| ApiError::field("template", "is required when source is 'template'"))?;
    let templates = match dialect {
        tdb_sql::Dialect::Postgres => &TEMPLATES,
        tdb_sql::Dialect::Mysql => &MYSQL_TEMPLATES,
        tdb_sql::Dialect::Redis => {
            return Err(ApiError::field(
                "template",
                "Redis workspaces have no templates",
            ));
        }
    };
    let sql = templates
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, sql)| *sql)
        .ok_or_else(|| {
            let names: Vec<&str> = TEMPLATES.iter().map(|(n, _)| *n).collect();
            ApiError::field(
                "template",
                format!(
                    "unknown template '{name}'; choose one of: {}",
                    names.join(", ")
                ),
            )
        })?;
    let statements = dialect.split(sql).map_err(ApiError::internal)?;
    Ok(statements.into_iter().map(str::to_string).collect())
}

/// `CREATE TABLE` (and `CREATE INDEX`) statements for JSON table definitions. Each statement is
/// checked to parse as exactly the one statement it should be, so a definition cannot smuggle
/// a second statement in through a type or a default. MySQL ignores `REFERENCES` written in a
/// column's definition, so there a reference becomes a `FOREIGN KEY` of the table.
fn tables_ddl(tables: &[TableDef], dialect: tdb_sql::Dialect) -> Result<Vec<String>, ApiError> {
    let quote = |name: &str| dialect.quote_ident(name);
    if tables.is_empty() {
        return Err(ApiError::field("tables", "must define at least one table"));
    }
    let mut out = Vec::new();
    for (i, t) in tables.iter().enumerate() {
        let field = format!("tables[{i}]");
        if t.columns.is_empty() {
            return Err(ApiError::field(
                &field,
                format!("table '{}' has no columns", t.name),
            ));
        }
        let mut parts: Vec<String> = Vec::new();
        let mut primary: Vec<String> = Vec::new();
        let mut foreign: Vec<String> = Vec::new();
        for c in &t.columns {
            let mut def = format!("{} {}", quote(&c.name), c.data_type);
            if c.nullable == Some(false) {
                def.push_str(" NOT NULL");
            }
            if let Some(d) = &c.default {
                def.push_str(&format!(" DEFAULT {d}"));
            }
            if c.unique == Some(true) {
                def.push_str(" UNIQUE");
            }
            match &c.references {
                Some(r) if dialect == tdb_sql::Dialect::Mysql => {
                    foreign.push(format!("FOREIGN KEY ({}) REFERENCES {r}", quote(&c.name)));
                }
                Some(r) => def.push_str(&format!(" REFERENCES {r}")),
                None => {}
            }
            if c.primary_key == Some(true) {
                primary.push(quote(&c.name));
            }
            parts.push(def);
        }
        if !primary.is_empty() {
            parts.push(format!("PRIMARY KEY ({})", primary.join(", ")));
        }
        parts.extend(foreign);
        let table = quote(&t.name);
        let create = format!("CREATE TABLE {table} (\n    {}\n)", parts.join(",\n    "));
        check_single(&create, "CREATE TABLE", &field, dialect)?;
        out.push(create);
        for (j, ix) in t.indexes.iter().flatten().enumerate() {
            let cols: Vec<String> = ix.columns.iter().map(|c| quote(c)).collect();
            let ix_name = ix
                .name
                .clone()
                .unwrap_or_else(|| format!("{}_{}_idx", t.name, ix.columns.join("_")));
            let sql = format!(
                "CREATE {}INDEX {} ON {table} ({})",
                if ix.unique == Some(true) {
                    "UNIQUE "
                } else {
                    ""
                },
                quote(&ix_name),
                cols.join(", ")
            );
            check_single(
                &sql,
                "CREATE INDEX",
                &format!("{field}.indexes[{j}]"),
                dialect,
            )?;
            out.push(sql);
        }
    }
    Ok(out)
}

fn check_single(
    sql: &str,
    tag: &str,
    field: &str,
    dialect: tdb_sql::Dialect,
) -> Result<(), ApiError> {
    match dialect.classify_all(sql) {
        Ok(s) if s.len() == 1 && s[0].tag == tag => Ok(()),
        Ok(_) => Err(ApiError::field(
            field,
            "the definition does not form a single statement",
        )),
        Err(e) => Err(ApiError::field(field, format!("invalid definition: {e}"))),
    }
}

async fn external(
    r: &Resolved,
    connection: Option<ExternalConnection>,
    allow_internal: bool,
) -> Result<Vec<String>, ApiError> {
    let c = connection
        .ok_or_else(|| ApiError::field("connection", "is required when source is 'database'"))?;
    let mysql = r.ws.engine == tdb_core::Engine::Mysql;
    let (default_kind, kinds, default_port): (&str, &[&str], u16) = if mysql {
        ("mysql", &["mysql", "mariadb"], 3306)
    } else {
        ("postgresql", &["postgresql", "postgres"], 5432)
    };
    let kind = c
        .kind
        .as_deref()
        .unwrap_or(default_kind)
        .to_ascii_lowercase();
    if !kinds.contains(&kind.as_str()) {
        return Err(ApiError::field(
            "connection.type",
            format!(
                "must be {default_kind} for a {} workspace",
                display_engine(r.ws.engine)
            ),
        ));
    }
    // Plain names only: no socket paths, and nothing libpq would read as a connection string.
    for (field, value) in [
        ("host", &c.host),
        ("database", &c.database),
        ("user", &c.user),
    ] {
        let bad = value.is_empty()
            || value.len() > 255
            || value.starts_with('/')
            || value.contains(['=', ' ', '\'', '\\'])
            || value.contains("://")
            || value.chars().any(char::is_control);
        if bad {
            return Err(ApiError::field(
                &format!("connection.{field}"),
                "must be a plain name",
            ));
        }
    }
    let port = c.port.unwrap_or(default_port);
    let ip = resolve_checked(&c.host, port, allow_internal, "import_allow_private_urls")
        .await
        .map_err(|m| ApiError::field("connection.host", m))?;
    let source = DatabaseAccess {
        host: ip.to_string(),
        port,
        database: c.database,
        user: c.user,
        password: c.password.unwrap_or_default(),
    };
    let sql = r.engine.require_sql().map_err(engine_error)?;
    sql.export_schema(&source).await.map_err(|e| match e {
        tdb_engines::EngineError::Connect(m)
        | tdb_engines::EngineError::Query { message: m, .. } => ApiError::field(
            "connection",
            format!("cannot read the source database: {m}"),
        ),
        other => engine_error(other),
    })
}

/// Resolves `host` once and refuses internal addresses unless allowed; the caller connects to
/// the returned address, so a second lookup cannot answer differently.
pub(crate) async fn resolve_checked(
    host: &str,
    port: u16,
    allow_internal: bool,
    setting: &str,
) -> Result<IpAddr, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addr = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {host}"))?;
    if !allow_internal && is_internal(addr.ip()) {
        return Err(format!(
            "{host} resolves to an internal address ({}); reaching it is not allowed \
             (set {setting} to allow internal addresses)",
            addr.ip()
        ));
    }
    Ok(addr.ip())
}

/// True for addresses a server-side fetch must not reach by default.
fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || o[0] == 0
                || o[0] >= 240
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 198 && (o[1] == 18 || o[1] == 19))
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            let nat64 = seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6] == [0, 0, 0, 0];
            let embedded = std::net::Ipv4Addr::new(
                (seg[6] >> 8) as u8,
                seg[6] as u8,
                (seg[7] >> 8) as u8,
                seg[7] as u8,
            );
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00
                || (seg[0] & 0xffc0) == 0xfe80
                || (seg[0] & 0xffc0) == 0xfec0
                || (nat64 && is_internal(IpAddr::V4(embedded)))
                // IPv4-mapped (::ffff:a.b.c.d) and the deprecated IPv4-compatible form
                // (::a.b.c.d) both name an IPv4 address, which decides.
                || v6
                    .to_ipv4()
                    .is_some_and(|v4| is_internal(IpAddr::V4(v4)))
        }
    }
}

/// Fetches a JSON document: http(s) only, no redirects, pinned to the address checked, bounded
/// in size and time.
async fn fetch_json(url: &str, allow_internal: bool) -> Result<Value, ApiError> {
    let bad = |m: String| ApiError::field("url", m);
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(format!("invalid URL: {e}")))?;
    if !["http", "https"].contains(&parsed.scheme()) {
        return Err(bad("must be an http or https URL".into()));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| bad("has no host".into()))?
        .to_string();
    let port = parsed.port_or_known_default().unwrap_or(80);
    let lookup_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let ip = resolve_checked(&host, port, allow_internal, "import_allow_private_urls")
        .await
        .map_err(bad)?;
    let addr = std::net::SocketAddr::new(ip, port);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(URL_TIMEOUT)
        .resolve(&lookup_host, addr)
        .build()
        .map_err(ApiError::internal)?;
    let mut resp = client
        .get(parsed)
        .send()
        .await
        .map_err(|e| bad(format!("cannot fetch: {e}")))?;
    if !resp.status().is_success() {
        return Err(bad(format!(
            "the server answered HTTP {}",
            resp.status().as_u16()
        )));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| bad(format!("cannot fetch: {e}")))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > URL_LIMIT_BYTES {
            return Err(bad("the document is larger than 1 MiB".into()));
        }
    }
    serde_json::from_slice(&body).map_err(|e| bad(format!("the document is not JSON: {e}")))
}

struct Applied {
    created: Vec<String>,
    skipped: Vec<String>,
    errors: Vec<StatementError>,
    executed: usize,
    skipped_statements: usize,
    total: usize,
    captured: Vec<i64>,
}

/// Runs each statement on its own (a failure does not stop the rest), skipping tables that
/// exist, and captures the DDL that ran.
async fn apply(
    state: &AppState,
    r: &Resolved,
    statements: Vec<String>,
) -> Result<Applied, ApiError> {
    let existing: HashSet<String> = r
        .engine
        .require_introspection()
        .map_err(engine_error)?
        .introspect(&r.access)
        .await
        .map_err(engine_error)?
        .tables
        .into_iter()
        .map(|t| t.name)
        .collect();
    let mut out = Applied {
        created: Vec::new(),
        skipped: Vec::new(),
        errors: Vec::new(),
        executed: 0,
        skipped_statements: 0,
        total: statements.len(),
        captured: Vec::new(),
    };
    let mut session = r
        .engine
        .open(
            &r.access,
            crate::workspace::limits(state, &r.ws.project_id, &r.settings),
            Some(&r.admin),
        )
        .await
        .map_err(engine_error)?;
    let dialect = workspace::dialect(r.ws.engine);
    let mut tracker = DdlTracker::new(dialect);
    for text in &statements {
        let classified = match dialect.classify_all(text) {
            Ok(mut s) if s.len() == 1 => s.remove(0),
            Ok(_) | Err(_) => {
                out.errors.push(StatementError {
                    statement: text.clone(),
                    error: "not a single valid statement".into(),
                });
                continue;
            }
        };
        let table = dialect
            .created_table(text)
            .map(|(schema, name)| match schema.as_str() {
                "" | "public" => name,
                _ => format!("{schema}.{name}"),
            });
        if let Some(t) = table.as_ref().filter(|t| existing.contains(*t)) {
            out.skipped.push(t.clone());
            out.skipped_statements += 1;
            continue;
        }
        match session.run(text).await {
            Ok(_) => {
                out.executed += 1;
                tracker.ran(&classified);
                out.created.extend(table);
            }
            Err(e) => out.errors.push(StatementError {
                statement: text.clone(),
                error: e.to_string(),
            }),
        }
    }
    session.close().await;
    out.captured = workspace::queue(state, r, tracker.finish()).await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_recognised() {
        let internal = [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "240.0.0.1",
            "198.18.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            // IPv4-compatible (deprecated): the IPv4 address in the low 32 bits.
            "::127.0.0.1",
            "::10.0.0.1",
            "::169.254.169.254",
            "::192.168.0.1",
        ];
        for ip in internal {
            assert!(is_internal(ip.parse().expect("ip")), "{ip}");
        }
        for ip in [
            "1.1.1.1",
            "93.184.216.34",
            "2606:4700::1111",
            "64:ff9b::101:101",
            "::1.1.1.1",
        ] {
            assert!(!is_internal(ip.parse().expect("ip")), "{ip}");
        }
    }

    #[test]
    fn templates_parse_and_create_tables() {
        for dialect in [tdb_sql::Dialect::Postgres, tdb_sql::Dialect::Mysql] {
            for (name, _) in TEMPLATES {
                let statements = template(Some(name), dialect).expect(name);
                assert!(
                    statements
                        .iter()
                        .filter(|s| dialect.created_table(s).is_some())
                        .count()
                        >= 5,
                    "{name} {dialect:?}"
                );
                for s in &statements {
                    let kinds = dialect.classify_all(s).expect("classifies");
                    assert_eq!(kinds.len(), 1, "{s}");
                    assert_eq!(kinds[0].kind, tdb_sql::Kind::Ddl, "{s}");
                }
            }
            assert!(template(Some("ecommmerce"), dialect).is_err());
        }
    }

    #[test]
    fn json_definitions_cannot_smuggle_statements() {
        let def: Vec<TableDef> = serde_json::from_value(serde_json::json!([
            {"name": "t", "columns": [{"name": "a", "type": "int); DROP TABLE users; --"}]}
        ]))
        .expect("parse");
        assert!(tables_ddl(&def, tdb_sql::Dialect::Postgres).is_err());
        assert!(tables_ddl(&def, tdb_sql::Dialect::Mysql).is_err());
        let ok: Vec<TableDef> = serde_json::from_value(serde_json::json!([
            {"name": "users", "columns": [
                {"name": "id", "type": "bigserial", "primary_key": true},
                {"name": "email", "type": "text", "nullable": false, "unique": true}
            ], "indexes": [{"columns": ["email"]}]}
        ]))
        .expect("parse");
        let ddl = tables_ddl(&ok, tdb_sql::Dialect::Postgres).expect("valid");
        assert_eq!(ddl.len(), 2);
        assert!(ddl[0].contains("PRIMARY KEY (id)"), "{}", ddl[0]);
    }

    #[test]
    fn mysql_definitions_quote_with_backticks_and_make_foreign_keys() {
        let def: Vec<TableDef> = serde_json::from_value(serde_json::json!([
            {"name": "orders", "columns": [
                {"name": "id", "type": "bigint AUTO_INCREMENT", "primary_key": true},
                {"name": "user_id", "type": "bigint", "references": "users (id)"},
                {"name": "a`b", "type": "int"}
            ], "indexes": [{"columns": ["user_id"], "unique": true}]}
        ]))
        .expect("parse");
        let ddl = tables_ddl(&def, tdb_sql::Dialect::Mysql).expect("valid");
        assert!(ddl[0].contains("PRIMARY KEY (`id`)"), "{}", ddl[0]);
        assert!(
            ddl[0].contains("FOREIGN KEY (`user_id`) REFERENCES users (id)"),
            "{}",
            ddl[0]
        );
        assert!(ddl[0].contains("`a``b` int"), "{}", ddl[0]);
        assert!(ddl[1].starts_with("CREATE UNIQUE INDEX"), "{}", ddl[1]);
    }
}
