//! Domain enums stored in the catalog and exchanged over the API, each with one spelling.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                let lower = s.to_ascii_lowercase();
                $(if lower == $text { return Ok($name::$variant); })+
                let allowed: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                Err(format!("must be one of: {}", allowed.join(", ")))
            }
        }

        /// How the catalog's text columns become the enum (`#[sqlx(try_from = "String")]`).
        impl TryFrom<String> for $name {
            type Error = UnknownValue;

            fn try_from(s: String) -> Result<Self, UnknownValue> {
                s.parse().map_err(|allowed| UnknownValue {
                    what: stringify!($name),
                    value: s,
                    allowed,
                })
            }
        }
    };
}

/// A stored or received text that names no variant of a domain enum.
#[derive(Debug, thiserror::Error)]
#[error("{value:?} is not a {what}: {allowed}")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
    pub allowed: String,
}

string_enum! {
    /// What an API key may do inside its project.
    KeyRole { Admin => "admin", Write => "write", Read => "read" }
}

string_enum! {
    /// Which resources an API key reaches: the whole project, or named workspaces or tenants.
    ScopeType {
        Project => "project",
        Workspace => "workspace",
        Tenant => "tenant",
        Provision => "provision",
    }
}

string_enum! {
    /// Database engines tdb speaks to.
    Engine { Postgresql => "postgresql", Mysql => "mysql", Redis => "redis", Mongodb => "mongodb" }
}

string_enum! {
    /// A shared server hosts many tenants (L1); a dedicated one hosts one (L2).
    ServerRole { Shared => "shared", Dedicated => "dedicated" }
}

string_enum! {
    /// Who may sign up: anyone, nobody (existing accounts only), or whoever holds an invitation
    /// from an existing account.
    SignupMode { Open => "open", Closed => "closed", Invite => "invite" }
}

string_enum! {
    /// Where a workspace's DDL goes: into a blueprint for tenants, or nowhere (a control database).
    WorkspaceMode { Tenant => "tenant", Control => "control" }
}

string_enum! {
    /// A project lives until its deletion job has removed everything of it.
    ProjectStatus { Active => "active", Deleting => "deleting" }
}

string_enum! {
    /// Where a tenant is in its life.
    TenantStatus {
        Provisioning => "provisioning",
        Ready => "ready",
        Suspended => "suspended",
        Syncing => "syncing",
        Migrating => "migrating",
        Restoring => "restoring",
        Recovering => "recovering",
        Deleted => "deleted",
        Failed => "failed",
    }
}

impl TenantStatus {
    /// Whether clients may open sessions: the tenant serves, perhaps while tdb works on it
    /// (a deployment or a restore holds sessions at its gate for the moment it needs).
    pub fn serves(self) -> bool {
        matches!(
            self,
            Self::Ready | Self::Syncing | Self::Migrating | Self::Restoring | Self::Recovering
        )
    }
}

string_enum! {
    /// How a whole deployment went.
    DeploymentStatus {
        Pending => "pending",
        InProgress => "in_progress",
        Completed => "completed",
        CompletedWithErrors => "completed_with_errors",
        Failed => "failed",
    }
}

impl DeploymentStatus {
    /// Whether the deployment has ended, one way or another.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::CompletedWithErrors | Self::Failed
        )
    }
}

string_enum! {
    /// How a deployment went on one tenant database.
    TargetStatus {
        Pending => "pending",
        InProgress => "in_progress",
        Completed => "completed",
        Failed => "failed",
        Skipped => "skipped",
    }
}

string_enum! {
    /// The durable jobs tdb runs.
    JobKind {
        Deployment => "deployment",
        Backup => "backup",
        Rollback => "rollback",
        TenantCreate => "tenant_create",
        ProjectDelete => "project_delete",
        ProvisionMove => "provision_move",
        TenantMove => "tenant_move",
        TenantRecover => "tenant_recover",
        TenantRecoverUndo => "tenant_recover_undo",
    }
}

string_enum! {
    /// How far a point-in-time recovery of a tenant database got: the archive restored to the
    /// moment, the data loaded where the tenant will be served from, the switch committed, the
    /// original kept; or undone (the original swapped back).
    RecoveryStep {
        Queued => "queued",
        Restoring => "restoring",
        Loading => "loading",
        Switched => "switched",
        Completed => "completed",
        Failed => "failed",
        Undoing => "undoing",
        Undone => "undone",
    }
}

string_enum! {
    /// How far a move of a tenant database between servers got: the target made (after the
    /// safety backup), replication catching up, the cutover behind a hold, the switch committed.
    MoveStep {
        Queued => "queued",
        Target => "target",
        Syncing => "syncing",
        Cutover => "cutover",
        Switched => "switched",
        Completed => "completed",
        Failed => "failed",
    }
}

string_enum! {
    /// How a move carries the data: logical replication, or a dump and restore behind a hold.
    MoveMethod { Replication => "replication", Dump => "dump" }
}

string_enum! {
    /// Where a job is in the queue.
    JobStatus { Queued => "queued", Running => "running", Done => "done" }
}

impl JobKind {
    /// Jobs that must finish whatever it takes: what they create or delete would otherwise be
    /// left half-done. They are tried again (with the back-off) for as long as they fail,
    /// whatever the failure, and have no time limit.
    pub fn must_finish(self) -> bool {
        matches!(self, Self::ProjectDelete | Self::TenantCreate)
    }
}

string_enum! {
    /// Why a backup was taken.
    BackupKind { Manual => "manual", Scheduled => "scheduled", Safety => "safety" }
}

string_enum! {
    /// Whether a backup's file is complete.
    BackupStatus { Pending => "pending", Completed => "completed", Failed => "failed" }
}

string_enum! {
    /// How far a rollback got: its safety backup, the restore into a new database, the switch.
    RollbackStep {
        Queued => "queued",
        Safety => "safety",
        Restoring => "restoring",
        Swapped => "swapped",
        Completed => "completed",
        Failed => "failed",
    }
}

string_enum! {
    /// A server's life: `provisioning` until its provisioner has it running (dedicated servers),
    /// `active` (takes new databases), `draining` (keeps what it has, takes nothing new),
    /// `stopped` (a trashed tenant's dedicated server, its data kept), `offline`.
    ServerStatus {
        Provisioning => "provisioning",
        Active => "active",
        Draining => "draining",
        Stopped => "stopped",
        Offline => "offline",
    }
}

string_enum! {
    /// An AutoDB connection's life.
    ConnectionStatus { Provisioning => "provisioning", Active => "active", Deleted => "deleted" }
}

string_enum! {
    /// An account's plan, which sets its quotas.
    Tier { Free => "free", Paid => "paid" }
}

string_enum! {
    /// Where a logged statement came from.
    LogSource { Proxy => "proxy", Api => "api" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_is_case_insensitive_and_round_trips() {
        for role in KeyRole::ALL {
            assert_eq!(role.as_str().parse::<KeyRole>(), Ok(*role));
        }
        assert_eq!("PostgreSQL".parse::<Engine>(), Ok(Engine::Postgresql));
        let err = "owner".parse::<KeyRole>().expect_err("owner is no role");
        assert_eq!(err, "must be one of: admin, write, read");
        for status in TenantStatus::ALL {
            let text = serde_json::to_value(status).expect("serialise");
            assert_eq!(text, status.as_str(), "serde and as_str agree");
        }
        assert_eq!(
            serde_json::to_value(DeploymentStatus::CompletedWithErrors).expect("serialise"),
            "completed_with_errors"
        );
    }

    #[test]
    fn a_tenant_being_recovered_keeps_serving_its_current_data() {
        let serving: Vec<TenantStatus> = TenantStatus::ALL
            .iter()
            .copied()
            .filter(|s| s.serves())
            .collect();
        assert_eq!(
            serving,
            [
                TenantStatus::Ready,
                TenantStatus::Syncing,
                TenantStatus::Migrating,
                TenantStatus::Restoring,
                TenantStatus::Recovering
            ]
        );
    }

    #[test]
    fn catalog_text_converts_or_says_what_it_is_not() {
        assert_eq!(
            JobKind::try_from("tenant_create".to_string()).expect("kind"),
            JobKind::TenantCreate
        );
        assert_eq!(
            ScopeType::try_from("provision".to_string()).expect("scope"),
            ScopeType::Provision
        );
        let err = TenantStatus::try_from("half".to_string()).expect_err("no such status");
        assert!(
            err.to_string().contains("\"half\" is not a TenantStatus"),
            "{err}"
        );
    }

    /// The enums say the same as the catalog's CHECK constraints, so no stored value fails to
    /// convert and no variant is refused by the database.
    #[test]
    fn enums_match_the_catalogs_check_constraints() {
        let migrations = [
            include_str!("../../tdb-catalog/migrations/0001_foundation.sql"),
            include_str!("../../tdb-catalog/migrations/0002_workspaces.sql"),
            include_str!("../../tdb-catalog/migrations/0003_tenants.sql"),
            include_str!("../../tdb-catalog/migrations/0005_backups.sql"),
            include_str!("../../tdb-catalog/migrations/0008_autodb.sql"),
            include_str!("../../tdb-catalog/migrations/0011_durable_lifecycles.sql"),
            include_str!("../../tdb-catalog/migrations/0015_server_pools.sql"),
            include_str!("../../tdb-catalog/migrations/0016_moves.sql"),
        ]
        .concat();
        let listed = |values: Vec<&str>| {
            let quoted: Vec<String> = values.iter().map(|v| format!("'{v}'")).collect();
            let squeezed: String = migrations.split_whitespace().collect();
            squeezed.contains(&format!("IN({})", quoted.join(",")))
        };
        let checks: [(&str, Vec<&str>); 15] = [
            (
                "MoveStep",
                MoveStep::ALL.iter().map(|v| v.as_str()).collect(),
            ),
            (
                "MoveMethod",
                MoveMethod::ALL.iter().map(|v| v.as_str()).collect(),
            ),
            ("KeyRole", KeyRole::ALL.iter().map(|v| v.as_str()).collect()),
            (
                "ScopeType",
                ScopeType::ALL.iter().map(|v| v.as_str()).collect(),
            ),
            ("Engine", Engine::ALL.iter().map(|v| v.as_str()).collect()),
            (
                "ServerRole",
                ServerRole::ALL.iter().map(|v| v.as_str()).collect(),
            ),
            (
                "WorkspaceMode",
                WorkspaceMode::ALL.iter().map(|v| v.as_str()).collect(),
            ),
            (
                "ProjectStatus",
                ProjectStatus::ALL.iter().map(|v| v.as_str()).collect(),
            ),
            (
                "TenantStatus",
                TenantStatus::ALL.iter().map(|v| v.as_str()).collect(),
            ),
            (
                "DeploymentStatus",
                DeploymentStatus::ALL.iter().map(|v| v.as_str()).collect(),
            ),
            (
                "TargetStatus",
                TargetStatus::ALL.iter().map(|v| v.as_str()).collect(),
            ),
            (
                "BackupKind",
                BackupKind::ALL.iter().map(|v| v.as_str()).collect(),
            ),
            (
                "BackupStatus",
                BackupStatus::ALL.iter().map(|v| v.as_str()).collect(),
            ),
            (
                "ServerStatus",
                ServerStatus::ALL.iter().map(|v| v.as_str()).collect(),
            ),
            (
                "RollbackStep",
                RollbackStep::ALL.iter().map(|v| v.as_str()).collect(),
            ),
        ];
        for (what, values) in checks {
            assert!(listed(values.clone()), "{what}: no CHECK lists {values:?}");
        }
        for (what, values) in [
            (
                "ConnectionStatus",
                ConnectionStatus::ALL
                    .iter()
                    .map(|v| v.as_str())
                    .collect::<Vec<_>>(),
            ),
            ("Tier", Tier::ALL.iter().map(|v| v.as_str()).collect()),
        ] {
            assert!(listed(values.clone()), "{what}: no CHECK lists {values:?}");
        }
    }
}
