//! `isolation_level`: the reference sends and answers it as the number `1`/`2` in some places
//! (`POST /tenants`, `PATCH …/isolation`) and as the label `"L1"`/`"L2"` in others
//! (`GET /tenants`, `GET /tenants/{id}`), so a client may send back either.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Unexpected, Visitor};
use serde::{Serialize, Serializer};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};

/// Where a tenant's database lives: a shared server (L1) or a dedicated one (L2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolationLevel {
    L1,
    L2,
}

impl IsolationLevel {
    /// The level as the catalog stores it and `POST /tenants` answers it.
    pub fn number(self) -> i32 {
        match self {
            Self::L1 => 1,
            Self::L2 => 2,
        }
    }

    pub fn from_number(n: i64) -> Option<Self> {
        match n {
            1 => Some(Self::L1),
            2 => Some(Self::L2),
            _ => None,
        }
    }

    /// The label the reference's `GET` answers show.
    pub fn label(self) -> &'static str {
        match self {
            Self::L1 => "L1",
            Self::L2 => "L2",
        }
    }
}

/// A stored level as `GET /tenants` and `GET /tenants/{id}` answer it: `"L1"` or `"L2"` (a
/// number the catalog should never hold is shown as it is).
pub fn label(stored: i32) -> String {
    IsolationLevel::from_number(i64::from(stored))
        .map_or_else(|| stored.to_string(), |l| l.label().to_string())
}

struct LevelVisitor;

impl Visitor<'_> for LevelVisitor {
    type Value = IsolationLevel;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("1, 2, \"L1\" or \"L2\"")
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<IsolationLevel, E> {
        IsolationLevel::from_number(n).ok_or_else(|| E::invalid_value(Unexpected::Signed(n), &self))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<IsolationLevel, E> {
        i64::try_from(n)
            .ok()
            .and_then(IsolationLevel::from_number)
            .ok_or_else(|| E::invalid_value(Unexpected::Unsigned(n), &self))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<IsolationLevel, E> {
        match s.to_ascii_uppercase().as_str() {
            "L1" => Ok(IsolationLevel::L1),
            "L2" => Ok(IsolationLevel::L2),
            _ => Err(E::invalid_value(Unexpected::Str(s), &self)),
        }
    }
}

impl<'de> Deserialize<'de> for IsolationLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LevelVisitor)
    }
}

/// Sent as the number, the form `POST /tenants` answers.
impl Serialize for IsolationLevel {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i32(self.number())
    }
}

impl utoipa::PartialSchema for IsolationLevel {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .enum_values(Some([1, 2])),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["L1", "L2"])),
            )
            .description(Some(
                "1 (shared) or 2 (dedicated); the reference's labels \"L1\" and \"L2\" too",
            ))
            .into()
    }
}

impl utoipa::ToSchema for IsolationLevel {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("IsolationLevel")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<IsolationLevel, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn both_forms_are_read() {
        for (json, level) in [
            ("1", IsolationLevel::L1),
            ("2", IsolationLevel::L2),
            ("\"L1\"", IsolationLevel::L1),
            ("\"L2\"", IsolationLevel::L2),
            ("\"l2\"", IsolationLevel::L2),
        ] {
            assert_eq!(parse(json).expect(json), level);
        }
    }

    #[test]
    fn anything_else_is_refused_naming_the_forms() {
        for json in [
            "0", "3", "-1", "1.0", "\"1\"", "\"L3\"", "\"\"", "true", "null", "[1]",
        ] {
            let e = parse(json).expect_err(json).to_string();
            assert!(e.contains("1, 2, \"L1\" or \"L2\""), "{json}: {e}");
        }
    }

    #[test]
    fn a_level_is_sent_as_its_number_and_read_back() {
        let sent = serde_json::to_string(&IsolationLevel::L2).expect("encodes");
        assert_eq!(sent, "2");
        assert_eq!(parse(&sent).expect("reads back"), IsolationLevel::L2);
    }

    #[test]
    fn stored_levels_answer_as_labels() {
        assert_eq!(label(1), "L1");
        assert_eq!(label(2), "L2");
        assert_eq!(label(7), "7");
    }
}
