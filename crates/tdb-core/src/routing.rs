//! Routing names: the database name a client connects to, which tdb maps to a real database.
//! `<blueprint>__<tenant>` names a tenant's database, `<workspace>_workspace` a workspace, and
//! `tenant_<12 hex>_<8 hex>` (its schema name) a provisioned database. The API hands these names
//! out and the proxy parses them back, both through this one type.

use std::fmt;

/// A parsed routing name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RoutingName {
    Tenant { blueprint: String, tenant: String },
    Workspace { name: String },
    Provisioned { schema: String },
}

const WORKSPACE_SUFFIX: &str = "_workspace";
const TENANT_SEPARATOR: &str = "__";
const PROVISIONED_PREFIX: &str = "tenant_";

impl RoutingName {
    pub fn tenant(blueprint: &str, tenant: &str) -> Self {
        Self::Tenant {
            blueprint: blueprint.to_string(),
            tenant: tenant.to_string(),
        }
    }

    pub fn workspace(name: &str) -> Self {
        Self::Workspace {
            name: name.to_string(),
        }
    }

    /// A fresh provisioned database's name from 20 hex digits of randomness.
    pub fn provisioned(hex20: &str) -> Option<Self> {
        let (a, b) = (hex20.get(..12)?, hex20.get(12..)?);
        let schema = format!("{PROVISIONED_PREFIX}{a}_{b}");
        is_provisioned_schema(&schema).then_some(Self::Provisioned { schema })
    }

    /// The name a client connected with, or `None` if it names nothing tdb routes.
    pub fn parse(database: &str) -> Option<Self> {
        if is_provisioned_schema(database) {
            return Some(Self::Provisioned {
                schema: database.to_string(),
            });
        }
        if let Some(name) = database.strip_suffix(WORKSPACE_SUFFIX)
            && !name.is_empty()
            && !name.contains(TENANT_SEPARATOR)
        {
            return Some(Self::workspace(name));
        }
        let (blueprint, tenant) = database.split_once(TENANT_SEPARATOR)?;
        if blueprint.is_empty() || tenant.is_empty() || tenant.contains(TENANT_SEPARATOR) {
            return None;
        }
        Some(Self::tenant(blueprint, tenant))
    }
}

impl fmt::Display for RoutingName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tenant { blueprint, tenant } => {
                write!(f, "{blueprint}{TENANT_SEPARATOR}{tenant}")
            }
            Self::Workspace { name } => write!(f, "{name}{WORKSPACE_SUFFIX}"),
            Self::Provisioned { schema } => f.write_str(schema),
        }
    }
}

/// `tenant_<12 hex>_<8 hex>` in lower case: the schema names provisioning hands out.
fn is_provisioned_schema(name: &str) -> bool {
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    name.strip_prefix(PROVISIONED_PREFIX)
        .and_then(|rest| rest.split_once('_'))
        .is_some_and(|(a, b)| hex(a, 12) && hex(b, 8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_names_parse() {
        assert_eq!(
            RoutingName::parse("app__acme"),
            Some(RoutingName::tenant("app", "acme"))
        );
        assert_eq!(
            RoutingName::parse("design_workspace"),
            Some(RoutingName::workspace("design"))
        );
        assert_eq!(
            RoutingName::parse("tenant_a1b2c3d4e5f6_7890abcd"),
            Some(RoutingName::Provisioned {
                schema: "tenant_a1b2c3d4e5f6_7890abcd".into()
            })
        );
        for bad in [
            "tenant_a1b2c3d4e5f6_7890abc",
            "tenant_A1B2C3D4E5F6_7890abcd",
            "tenant_a1b2c3d4e5f6",
            "app",
            "__acme",
            "app__",
            "a__b__c",
            "_workspace",
            "postgres",
            "",
        ] {
            assert_eq!(RoutingName::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn what_is_displayed_parses_back() {
        let names = [
            RoutingName::tenant("app", "acme"),
            RoutingName::tenant("my_app", "acme_corp"),
            RoutingName::workspace("design"),
            RoutingName::provisioned("a1b2c3d4e5f67890abcd").expect("20 hex"),
        ];
        for name in names {
            assert_eq!(RoutingName::parse(&name.to_string()), Some(name.clone()));
        }
        assert_eq!(
            RoutingName::provisioned("a1b2c3d4e5f67890abcd")
                .expect("20 hex")
                .to_string(),
            "tenant_a1b2c3d4e5f6_7890abcd"
        );
        assert_eq!(RoutingName::provisioned("a1b2"), None);
        assert_eq!(RoutingName::provisioned("A1B2C3D4E5F67890ABCD"), None);
    }
}
