//! The vocabulary every other crate shares: ids, validated names, domain enums, error codes and
//! the secret primitives (hashing, verifiers, sealing). Nothing here performs IO.

pub mod aad;
pub mod codes;
pub mod domain;
pub mod ids;
pub mod keyrules;
pub mod names;
pub mod network;
pub mod ratelimit;
pub mod routing;
pub mod secrets;
pub mod settings;
pub mod slots;

pub use codes::ErrorCode;
pub use domain::{
    BackupKind, BackupStatus, ConnectionStatus, DeploymentStatus, Engine, JobKind, JobStatus,
    KeyRole, LogSource, MoveMethod, MoveStep, ProjectStatus, RecoveryStep, RollbackStep, ScopeType,
    ServerRole, ServerStatus, SignupMode, TargetStatus, TenantStatus, Tier, UnknownValue,
    WorkspaceMode,
};
pub use names::{Email, NameError, ProjectName, ResourceName};
