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
    };
}

string_enum! {
    /// What an API key may do inside its project.
    KeyRole { Admin => "admin", Write => "write", Read => "read" }
}

string_enum! {
    /// Which resources an API key reaches: the whole project, or named workspaces or tenants.
    ScopeType { Project => "project", Workspace => "workspace", Tenant => "tenant" }
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
    }
}
