//! Migrations that resume after a failure without running a statement twice, dry runs that
//! leave nothing behind, and the schema as introspection and export report it.

use tdb_engines::{Engine, EngineError, Migration};

use super::support::*;

pub async fn migrations_apply_resume_and_dry_run(ctx: &Ctx) {
    first_migration_applies_once(ctx).await;
    a_failed_migration_resumes_where_it_stopped(ctx).await;
    dry_runs_leave_the_tenant_alone(ctx).await;
}

async fn first_migration_applies_once(ctx: &Ctx) {
    let (engine, e, acme) = (&ctx.engine, &ctx.e, &ctx.acme);
    let sql = engine.sql().expect("sql");
    let owner = acme.owner(e);
    assert_eq!(sql.schema_version(&owner).await.expect("version"), 0);

    let v1 = statements(&[
        "CREATE TABLE parent (id int PRIMARY KEY, label varchar(20) COLLATE utf8mb4_bin)",
        "CREATE TABLE child (id int AUTO_INCREMENT PRIMARY KEY, parent_id int NOT NULL, \
         qty int DEFAULT 1, CONSTRAINT child_parent FOREIGN KEY (parent_id) REFERENCES parent (id) \
         ON DELETE CASCADE, CONSTRAINT qty_positive CHECK (qty > 0), KEY by_qty (qty, parent_id))",
        "CREATE VIEW child_count AS SELECT parent_id, COUNT(*) AS n FROM child GROUP BY parent_id",
    ]);
    let run = sql.migrate(&plan(&owner, e, (0, 1), &v1, false)).await;
    assert_eq!(run.expect("v1"), Migration::Applied { from: 0 });
    assert_eq!(sql.schema_version(&owner).await.expect("version"), 1);
    let again = sql.migrate(&plan(&owner, e, (0, 1), &v1, false)).await;
    assert_eq!(again.expect("rerun"), Migration::AlreadyAt(1));
    let skipped = sql.migrate(&plan(&owner, e, (3, 4), &v1, false)).await;
    assert_eq!(skipped.expect("mismatch"), Migration::Mismatch(1));
}

/// Statement 2 of 3 fails: statement 1 stays done and recorded, the version stays; fixed, the
/// migration resumes at statement 2.
async fn a_failed_migration_resumes_where_it_stopped(ctx: &Ctx) {
    let (engine, e, acme) = (&ctx.engine, &ctx.e, &ctx.acme);
    let sql = engine.sql().expect("sql");
    let owner = acme.owner(e);
    let broken = statements(&[
        "ALTER TABLE parent ADD COLUMN note varchar(10)",
        "INSERT INTO nowhere VALUES (1)",
        "ALTER TABLE parent ADD COLUMN extra int",
    ]);
    let err = sql
        .migrate(&plan(&owner, e, (1, 2), &broken, false))
        .await
        .expect_err("statement 2 fails");
    match &err {
        EngineError::Query {
            message,
            sqlstate,
            detail,
            ..
        } => {
            assert!(message.contains("nowhere"), "{message}");
            assert_eq!(sqlstate, "42S02");
            assert_eq!(detail.as_deref(), Some("1146"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sql.schema_version(&owner).await.expect("version"), 1);
    assert_eq!(
        columns(e, &acme.db, "parent").await,
        ["id", "label", "note"]
    );
    let mut admin = admin(e).await;
    let record = scalar_i64(
        &mut admin,
        "SELECT version * 100 + target * 10 + done FROM tdb_meta.shop__acme",
    )
    .await;
    assert_eq!(record, 121, "at 1, towards 2, one statement done");
    let _ = sqlx::Connection::close(admin).await;
    // Another migration cannot start over what is half done.
    let other = statements(&["SELECT 1"]);
    sql.migrate(&plan(&owner, e, (1, 3), &other, false))
        .await
        .expect_err("partway to version 2");
    // Fixed, it resumes at statement 2: statement 1 (which would fail a second time, the
    // column exists) is not run again.
    let fixed = statements(&[
        "ALTER TABLE parent ADD COLUMN note varchar(10)",
        "INSERT INTO parent (id, label, note) VALUES (1, 'Alpha', 'n')",
        "ALTER TABLE parent ADD COLUMN extra int",
    ]);
    let resumed = sql.migrate(&plan(&owner, e, (1, 2), &fixed, false)).await;
    assert_eq!(resumed.expect("resumed"), Migration::Applied { from: 1 });
    assert_eq!(sql.schema_version(&owner).await.expect("version"), 2);
    assert_eq!(
        columns(e, &acme.db, "parent").await,
        ["id", "label", "note", "extra"]
    );
}

/// A dry run applies to a copy and leaves the tenant (and the server) as it was.
async fn dry_runs_leave_the_tenant_alone(ctx: &Ctx) {
    let (engine, e, acme) = (&ctx.engine, &ctx.e, &ctx.acme);
    let sql = engine.sql().expect("sql");
    let owner = acme.owner(e);
    // The first statement turns autocommit off: tdb's record must be committed all the same.
    let v3 = statements(&[
        "SET autocommit = 0",
        "ALTER TABLE child ADD COLUMN shipped tinyint(1) NOT NULL DEFAULT 0",
        "CREATE TABLE audit (id int PRIMARY KEY)",
        "INSERT INTO child (parent_id) VALUES (1)",
    ]);
    let dry = sql.migrate(&plan(&owner, e, (2, 3), &v3, true)).await;
    assert_eq!(dry.expect("dry run"), Migration::WouldApply { from: 2 });
    assert_eq!(sql.schema_version(&owner).await.expect("version"), 2);
    assert!(
        !columns(e, &acme.db, "child")
            .await
            .contains(&"shipped".to_string())
    );
    assert!(columns(e, &acme.db, "audit").await.is_empty());
    assert_eq!(leftovers_of_dry_runs(e).await, (0, 0));
    // A dry run that fails says why, and leaves nothing either; one that names the real
    // database is refused (its scratch user has no grant there).
    let bad = statements(&["ALTER TABLE child ADD COLUMN parent_id int"]);
    sql.migrate(&plan(&owner, e, (2, 3), &bad, true))
        .await
        .expect_err("duplicate column");
    let escape = statements(&["ALTER TABLE shop__acme.child ADD COLUMN sneaky int"]);
    sql.migrate(&plan(&owner, e, (2, 3), &escape, true))
        .await
        .expect_err("the real database is out of reach");
    assert!(
        !columns(e, &acme.db, "child")
            .await
            .contains(&"sneaky".to_string())
    );
    assert_eq!(leftovers_of_dry_runs(e).await, (0, 0));
    // The real run.
    let applied = sql.migrate(&plan(&owner, e, (2, 3), &v3, false)).await;
    assert_eq!(applied.expect("v3"), Migration::Applied { from: 2 });
    assert_eq!(sql.schema_version(&owner).await.expect("version"), 3);
    assert_eq!(columns(e, &acme.db, "child").await.len(), 4);
}

pub async fn introspection_and_export(ctx: &Ctx) {
    let (engine, e, acme) = (&ctx.engine, &ctx.e, &ctx.acme);
    let owner = acme.owner(e);
    let schema = engine
        .introspection()
        .expect("introspection")
        .introspect(&owner)
        .await
        .expect("introspect");
    let names: Vec<&str> = schema.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["audit", "child", "items", "parent"]);
    let child = &schema.tables[1];
    let id = &child.columns[0];
    assert_eq!((id.name.as_str(), id.data_type.as_str()), ("id", "int(11)"));
    assert_eq!(id.identity.as_deref(), Some("by default"));
    assert!(!id.nullable);
    let qty = &child.columns[2];
    assert_eq!((qty.default.as_deref(), qty.nullable), (Some("1"), true));
    let indexes: Vec<&str> = child
        .indexes
        .iter()
        .map(|i| i.definition.as_str())
        .collect();
    assert!(indexes.contains(&"PRIMARY KEY (`id`)"), "{indexes:?}");
    assert!(
        indexes.contains(&"KEY `by_qty` (`qty`,`parent_id`)"),
        "{indexes:?}"
    );
    assert_eq!(child.foreign_keys.len(), 1);
    let fk = &child.foreign_keys[0];
    assert_eq!(
        (fk.name.as_str(), fk.references_table.as_str()),
        ("child_parent", "parent")
    );
    assert_eq!(
        (fk.columns.clone(), fk.references_columns.clone()),
        (vec!["parent_id".to_string()], vec!["id".to_string()])
    );
    assert!(
        fk.definition.contains("ON DELETE CASCADE"),
        "{}",
        fk.definition
    );
    assert_eq!(child.checks.len(), 1);
    assert_eq!(child.checks[0].name, "qty_positive");

    let ddl = engine
        .sql()
        .expect("sql")
        .export_schema(&owner)
        .await
        .expect("export");
    let position = |needle: &str| {
        ddl.iter()
            .position(|s| s.contains(needle))
            .unwrap_or_else(|| panic!("{needle} not in {ddl:#?}"))
    };
    assert!(position("CREATE TABLE `parent`") < position("CREATE TABLE `child`"));
    assert!(position("CREATE TABLE `child`") < position("VIEW `child_count`"));
    assert!(
        ddl.iter()
            .all(|s| !s.contains("DEFINER=") && !s.contains("AUTO_INCREMENT="))
    );
    assert!(ddl.iter().all(|s| !s.contains("tdb_meta")));
}
