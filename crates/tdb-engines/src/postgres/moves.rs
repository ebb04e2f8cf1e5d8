//! Moving a database to another server with PostgreSQL's logical replication: a publication of
//! its tables on the source, a subscription (with the initial copy) on the target, a marker row
//! that says when the target has applied everything the source committed, sequence values
//! copied by hand (replication does not carry them), and a count and checksum of every table on
//! both sides. Everything here is named after the move, so a resumed move finds what it made.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::{Connection, PgConnection, Row};

use super::{PostgresEngine, admin_access, connect, from_sqlx, quote_ident, quote_literal};
use crate::AdminEndpoint;
use crate::capability::{DatabaseMoves, MoveEnds, RoleState, TableSums};
use crate::engine::{EngineError, Result};

/// The marker's table, in the schema tdb keeps in every tenant database.
const MARKER: &str = "tdb_meta.move_marker";

/// The tables a move carries: every table outside the system's schemas and tdb's own.
const TABLES: &str = "SELECT format('%I.%I', n.nspname, c.relname)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
       AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'tdb_meta')
       AND n.nspname NOT LIKE 'pg\\_%'
     ORDER BY 1";

async fn admin(server: &AdminEndpoint, database: &str) -> Result<PgConnection> {
    connect(&admin_access(server, database)).await
}

async fn tables(conn: &mut PgConnection) -> Result<Vec<String>> {
    sqlx::query_scalar(TABLES)
        .fetch_all(conn)
        .await
        .map_err(from_sqlx)
}

/// Ends the sessions `roles` hold on `database` and waits (10 s at most) until they are gone.
async fn end_sessions(conn: &mut PgConnection, database: &str, roles: &[&str]) -> Result<()> {
    let started = Instant::now();
    loop {
        let left: i64 = sqlx::query_scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
              WHERE datname = $1 AND usename = ANY($2)",
        )
        .bind(database)
        .bind(roles)
        .fetch_one(&mut *conn)
        .await
        .map_err(from_sqlx)?;
        if left == 0 {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(10) {
            return Err(EngineError::Internal(format!(
                "{left} sessions on {database} did not end"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn exec(conn: &mut PgConnection, sql: &str) -> Result<()> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(from_sqlx)
}

/// A table's row count and the XOR of its rows' hashes (`hash` over the row `t`).
async fn table_sum(conn: &mut PgConnection, table: &str, hash: &str) -> Result<(i64, i64)> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT count(*), COALESCE(bit_xor({hash}), 0) FROM {table} AS t"
    )))
    .fetch_one(conn)
    .await
    .map_err(from_sqlx)
}

/// What a move makes on a server, by name.
enum Made {
    Publication,
    Subscription,
}

async fn exists(conn: &mut PgConnection, what: Made, name: &str) -> Result<bool> {
    let sql = match what {
        Made::Publication => "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)",
        Made::Subscription => "SELECT EXISTS (SELECT 1 FROM pg_subscription WHERE subname = $1)",
    };
    sqlx::query_scalar(sql)
        .bind(name)
        .fetch_one(conn)
        .await
        .map_err(from_sqlx)
}

/// `key='value'` for a libpq connection string.
fn conninfo_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn source_conninfo(ends: &MoveEnds<'_>) -> String {
    let s = ends.source;
    format!(
        "host={} port={} dbname={} user={} password={}",
        conninfo_value(&s.host),
        s.port,
        conninfo_value(ends.database),
        conninfo_value(&s.user),
        conninfo_value(&s.password)
    )
}

#[async_trait]
impl DatabaseMoves for PostgresEngine {
    async fn replication_blocker(
        &self,
        source: &AdminEndpoint,
        database: &str,
    ) -> Result<Option<String>> {
        let mut conn = admin(source, database).await?;
        let wal_level: String = sqlx::query_scalar("SELECT current_setting('wal_level')")
            .fetch_one(&mut conn)
            .await
            .map_err(from_sqlx)?;
        if wal_level != "logical" {
            return Ok(Some(format!(
                "the source server's wal_level is '{wal_level}', not 'logical'"
            )));
        }
        let may: bool = sqlx::query_scalar(
            "SELECT rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user",
        )
        .fetch_one(&mut conn)
        .await
        .map_err(from_sqlx)?;
        if !may {
            return Ok(Some(
                "the source server's administrator may not replicate".into(),
            ));
        }
        // Replication carries an UPDATE or DELETE by the row's key; a table without one would
        // have those refused on the source while it is published.
        let keyless: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT t FROM ({TABLES}) AS l(t)
              WHERE NOT EXISTS (SELECT 1 FROM pg_index i
                                 WHERE i.indrelid = t::regclass
                                   AND (i.indisprimary OR i.indisreplident))
                AND (SELECT relreplident FROM pg_class WHERE oid = t::regclass) <> 'f'"
        )))
        .fetch_all(&mut conn)
        .await
        .map_err(from_sqlx)?;
        let _ = conn.close().await;
        if !keyless.is_empty() {
            return Ok(Some(format!(
                "{} {} no primary key (replication needs one to carry updates and deletes)",
                keyless.join(", "),
                if keyless.len() == 1 { "has" } else { "have" }
            )));
        }
        Ok(None)
    }

    async fn start_replication(&self, ends: &MoveEnds<'_>) -> Result<()> {
        // Owned like the rest of tdb_meta, by the database's owner role: a dump and restore
        // that takes over from replication dumps the database as that role.
        let marker = format!(
            "CREATE TABLE IF NOT EXISTS {MARKER} (id integer PRIMARY KEY, token text NOT NULL);
             DO $$ DECLARE owner regrole := (SELECT nspowner FROM pg_namespace
                                                  WHERE nspname = 'tdb_meta');
             BEGIN
                 IF (SELECT relowner FROM pg_class WHERE oid = '{MARKER}'::regclass) <> owner
                 THEN
                     EXECUTE format('ALTER TABLE {MARKER} OWNER TO %s', owner);
                 END IF;
             END $$"
        );
        let mut target = admin(ends.target, ends.database).await?;
        exec(&mut target, &marker).await?;
        let mut source = admin(ends.source, ends.database).await?;
        exec(&mut source, &marker).await?;
        let name = ends.name;
        if !exists(&mut source, Made::Publication, name).await? {
            let mut list = tables(&mut source).await?;
            list.push(MARKER.to_string());
            exec(
                &mut source,
                &format!(
                    "CREATE PUBLICATION {} FOR TABLE {}",
                    quote_ident(name),
                    list.join(", ")
                ),
            )
            .await?;
        }
        if !exists(&mut target, Made::Subscription, name).await? {
            // A slot left by a subscription whose creation was cut off goes first.
            sqlx::query(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
                  WHERE slot_name = $1 AND NOT active",
            )
            .bind(name)
            .execute(&mut source)
            .await
            .map_err(from_sqlx)?;
            exec(
                &mut target,
                &format!(
                    "CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} \
                     WITH (slot_name = {}, copy_data = true)",
                    quote_ident(name),
                    quote_literal(&source_conninfo(ends)),
                    quote_ident(name),
                    quote_literal(name)
                ),
            )
            .await?;
        }
        let _ = source.close().await;
        let _ = target.close().await;
        Ok(())
    }

    async fn replication_state(&self, ends: &MoveEnds<'_>) -> Result<(i64, i64, Option<String>)> {
        let mut target = admin(ends.target, ends.database).await?;
        let row = sqlx::query(
            "SELECT count(*), count(*) FILTER (WHERE r.srsubstate IN ('r', 's')),
                    (SELECT apply_error_count + sync_error_count FROM pg_stat_subscription_stats
                      WHERE subname = $1)
               FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid
              WHERE s.subname = $1",
        )
        .bind(ends.name)
        .fetch_one(&mut target)
        .await
        .map_err(from_sqlx)?;
        let _ = target.close().await;
        let errors: Option<i64> = row.get(2);
        let error = errors
            .filter(|n| *n > 0)
            .map(|n| format!("the subscription reported {n} errors (see the target's log)"));
        Ok((row.get(0), row.get(1), error))
    }

    async fn open_transactions(
        &self,
        source: &AdminEndpoint,
        database: &str,
        roles: &[&str],
    ) -> Result<i64> {
        let mut conn = admin(source, "postgres").await?;
        let n = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = $1 AND usename = ANY($2) AND xact_start IS NOT NULL",
        )
        .bind(database)
        .bind(roles)
        .fetch_one(&mut conn)
        .await
        .map_err(from_sqlx)?;
        let _ = conn.close().await;
        Ok(n)
    }

    async fn fence(&self, source: &AdminEndpoint, database: &str, roles: &[&str]) -> Result<()> {
        let mut conn = admin(source, "postgres").await?;
        for role in roles {
            exec(
                &mut conn,
                &format!("ALTER ROLE {} NOLOGIN", quote_ident(role)),
            )
            .await?;
        }
        end_sessions(&mut conn, database, roles).await?;
        let _ = conn.close().await;
        Ok(())
    }

    async fn unfence(&self, source: &AdminEndpoint, roles: &[&str]) -> Result<()> {
        let mut conn = admin(source, "postgres").await?;
        for role in roles {
            exec(
                &mut conn,
                &format!("ALTER ROLE {} LOGIN", quote_ident(role)),
            )
            .await?;
        }
        let _ = conn.close().await;
        Ok(())
    }

    async fn close_database(
        &self,
        server: &AdminEndpoint,
        database: &str,
        roles: &[&str],
    ) -> Result<()> {
        let mut conn = admin(server, "postgres").await?;
        let db = quote_ident(database);
        for role in roles {
            exec(
                &mut conn,
                &format!("REVOKE CONNECT ON DATABASE {db} FROM {}", quote_ident(role)),
            )
            .await?;
        }
        end_sessions(&mut conn, database, roles).await?;
        let _ = conn.close().await;
        Ok(())
    }

    async fn reopen_database(
        &self,
        server: &AdminEndpoint,
        database: &str,
        roles: &[&str],
    ) -> Result<()> {
        let mut conn = admin(server, "postgres").await?;
        let db = quote_ident(database);
        for role in roles {
            exec(
                &mut conn,
                &format!("GRANT CONNECT ON DATABASE {db} TO {}", quote_ident(role)),
            )
            .await?;
        }
        let _ = conn.close().await;
        Ok(())
    }

    async fn reset_roles(&self, server: &AdminEndpoint, roles: &[RoleState<'_>]) -> Result<()> {
        let mut conn = admin(server, "postgres").await?;
        for role in roles {
            let verifier = tdb_core::secrets::scram_verifier(role.password);
            exec(
                &mut conn,
                &format!(
                    "ALTER ROLE {} LOGIN CONNECTION LIMIT {} PASSWORD {}",
                    quote_ident(role.name),
                    role.connection_limit,
                    quote_literal(&verifier)
                ),
            )
            .await?;
        }
        let _ = conn.close().await;
        Ok(())
    }

    async fn mark_and_wait(&self, ends: &MoveEnds<'_>, token: &str, wait: Duration) -> Result<()> {
        let mut source = admin(ends.source, ends.database).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {MARKER} VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET token = EXCLUDED.token"
        )))
        .bind(token)
        .execute(&mut source)
        .await
        .map_err(from_sqlx)?;
        let _ = source.close().await;
        let mut target = admin(ends.target, ends.database).await?;
        let started = Instant::now();
        loop {
            let seen: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT token FROM {MARKER} WHERE id = 1"
            )))
            .fetch_optional(&mut target)
            .await
            .map_err(from_sqlx)?;
            if seen.as_deref() == Some(token) {
                let _ = target.close().await;
                return Ok(());
            }
            if started.elapsed() > wait {
                return Err(EngineError::Internal(format!(
                    "the target had not applied the source's last commit after {}s",
                    wait.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn copy_sequences(&self, ends: &MoveEnds<'_>) -> Result<u32> {
        let mut source = admin(ends.source, ends.database).await?;
        let values: Vec<(String, Option<i64>)> = sqlx::query_as(
            "SELECT format('%I.%I', schemaname, sequencename), last_value FROM pg_sequences
              WHERE schemaname NOT IN ('pg_catalog', 'information_schema', 'tdb_meta')",
        )
        .fetch_all(&mut source)
        .await
        .map_err(from_sqlx)?;
        let _ = source.close().await;
        let mut target = admin(ends.target, ends.database).await?;
        let mut copied = 0;
        for (sequence, value) in values {
            // A sequence never used is as fresh on the target.
            let Some(value) = value else { continue };
            sqlx::query("SELECT setval($1::regclass, $2, true)")
                .bind(&sequence)
                .bind(value)
                .execute(&mut target)
                .await
                .map_err(from_sqlx)?;
            copied += 1;
        }
        let _ = target.close().await;
        Ok(copied)
    }

    async fn table_sums(&self, server: &AdminEndpoint, database: &str) -> Result<TableSums> {
        let mut conn = admin(server, database).await?;
        let mut sums = BTreeMap::new();
        for table in tables(&mut conn).await? {
            // Hashing the row as a record skips its text form (some 40% faster); a table with
            // a column type that has no hash function (json, point …) is hashed as text.
            let by_record = table_sum(&mut conn, &table, "hash_record_extended(t, 0)").await;
            let sum = match by_record {
                Ok(sum) => sum,
                Err(_) => table_sum(&mut conn, &table, "hashtextextended(t::text, 0)").await?,
            };
            sums.insert(table, sum);
        }
        let _ = conn.close().await;
        Ok(sums)
    }

    async fn stop_replication(&self, ends: &MoveEnds<'_>) -> Result<()> {
        let name = ends.name;
        let mut target = admin(ends.target, ends.database).await?;
        if exists(&mut target, Made::Subscription, name).await? {
            let sub = quote_ident(name);
            exec(&mut target, &format!("ALTER SUBSCRIPTION {sub} DISABLE")).await?;
            exec(
                &mut target,
                &format!("ALTER SUBSCRIPTION {sub} SET (slot_name = NONE)"),
            )
            .await?;
            exec(&mut target, &format!("DROP SUBSCRIPTION {sub}")).await?;
        }
        exec(&mut target, &format!("DROP TABLE IF EXISTS {MARKER}")).await?;
        let _ = target.close().await;
        // The source may be out of reach (a stopped dedicated server): its slot and publication
        // go with its database.
        let Ok(mut source) = admin(ends.source, ends.database).await else {
            return Ok(());
        };
        let started = Instant::now();
        loop {
            let left: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1",
            )
            .bind(name)
            .fetch_one(&mut source)
            .await
            .map_err(from_sqlx)?;
            if left == 0 {
                break;
            }
            // The walsender ends once the subscription is disabled; its slot is then free.
            let _ = sqlx::query(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
                  WHERE slot_name = $1 AND NOT active",
            )
            .bind(name)
            .execute(&mut source)
            .await;
            if started.elapsed() > Duration::from_secs(30) {
                return Err(EngineError::Internal(format!(
                    "replication slot {name} on the source stays in use"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        exec(
            &mut source,
            &format!("DROP PUBLICATION IF EXISTS {}", quote_ident(name)),
        )
        .await?;
        exec(&mut source, &format!("DROP TABLE IF EXISTS {MARKER}")).await?;
        let _ = source.close().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::conninfo_value;

    #[test]
    fn connection_values_are_quoted_for_libpq() {
        assert_eq!(conninfo_value("/run/pg sock"), "'/run/pg sock'");
        assert_eq!(conninfo_value(r"a'b\c"), r"'a\'b\\c'");
    }
}
