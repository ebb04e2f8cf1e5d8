//! A blueprint version in a request: the reference types `version` of `POST /deployments` as a
//! string, while its answers (and tdb's) show a number, so a client may send either.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Unexpected, Visitor};
use serde::{Serialize, Serializer};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};

/// A version number, read from `3` or `"3"`. Whether that version exists is the handler's
/// question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionNumber(pub i32);

struct NumberVisitor;

impl Visitor<'_> for NumberVisitor {
    type Value = VersionNumber;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a version number such as 3 or \"3\"")
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<VersionNumber, E> {
        i32::try_from(n)
            .map(VersionNumber)
            .map_err(|_| E::invalid_value(Unexpected::Signed(n), &self))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<VersionNumber, E> {
        i32::try_from(n)
            .map(VersionNumber)
            .map_err(|_| E::invalid_value(Unexpected::Unsigned(n), &self))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<VersionNumber, E> {
        // Digits only: `parse` alone would also take "+3".
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(E::invalid_value(Unexpected::Str(s), &self));
        }
        s.parse()
            .map(VersionNumber)
            .map_err(|_| E::invalid_value(Unexpected::Str(s), &self))
    }
}

impl<'de> Deserialize<'de> for VersionNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NumberVisitor)
    }
}

/// Sent as a number, the form tdb's answers show.
impl Serialize for VersionNumber {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i32(self.0)
    }
}

impl utoipa::PartialSchema for VersionNumber {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Integer))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^[0-9]+$")),
            )
            .description(Some(
                "A version number, or the same number as a string as the reference sends it",
            ))
            .into()
    }
}

impl utoipa::ToSchema for VersionNumber {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("VersionNumber")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<VersionNumber, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn numbers_and_numeric_strings_are_read() {
        for (json, n) in [("1", 1), ("\"1\"", 1), ("\"42\"", 42), ("0", 0), ("-1", -1)] {
            assert_eq!(parse(json).expect(json), VersionNumber(n));
        }
    }

    #[test]
    fn a_version_is_sent_as_a_number() {
        assert_eq!(
            serde_json::to_string(&VersionNumber(3)).expect("encodes"),
            "3"
        );
    }

    #[test]
    fn anything_else_is_refused_naming_the_forms() {
        for json in [
            "\"\"",
            "\"one\"",
            "\"+3\"",
            "\" 3\"",
            "\"1.5\"",
            "1.5",
            "\"99999999999\"",
            "99999999999",
            "true",
            "[1]",
        ] {
            let e = parse(json).expect_err(json).to_string();
            assert!(e.contains("a version number such as 3"), "{json}: {e}");
        }
    }
}
