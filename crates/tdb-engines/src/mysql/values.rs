//! MariaDB values (text protocol, as `COM_QUERY` sends them) to JSON: integers and floats as
//! JSON numbers, `DECIMAL` as its text (no precision lost), `BIT` as its number, binary strings
//! (`BINARY`, `VARBINARY`, `BLOB`s, geometry) as `0x`-prefixed hex, dates and times as their
//! text, everything else as text, NULL as null.

use serde_json::Value;
use sqlx::mysql::{MySql, MySqlRow, MySqlTypeInfo};
use sqlx::{Column, Row, Type, TypeInfo, ValueRef};

/// Bytes a row is charged beyond its values' for each value (JSON's quotes, commas, the
/// `Value` itself).
const PER_VALUE: usize = 32;

/// The column names of a row.
pub fn names(row: &MySqlRow) -> Vec<String> {
    row.columns().iter().map(|c| c.name().to_string()).collect()
}

/// What keeping `row` costs in memory, counted from its raw values.
pub fn cost(row: &MySqlRow) -> usize {
    (0..row.len())
        .map(|i| raw(row, i).map_or(0, <[u8]>::len) + PER_VALUE)
        .sum::<usize>()
        .max(PER_VALUE)
}

/// A row's values as JSON.
pub fn row_to_json(row: &MySqlRow) -> Vec<Value> {
    row.columns()
        .iter()
        .enumerate()
        .map(|(i, column)| match raw(row, i) {
            Some(bytes) => to_json(column.type_info(), bytes),
            None => Value::Null,
        })
        .collect()
}

/// The value's bytes as the server sent them; `None` for NULL.
fn raw(row: &MySqlRow, i: usize) -> Option<&[u8]> {
    let value = row.try_get_raw(i).ok()?;
    if value.is_null() {
        return None;
    }
    row.try_get_unchecked::<&[u8], _>(i).ok()
}

fn to_json(type_info: &MySqlTypeInfo, bytes: &[u8]) -> Value {
    let name = type_info.name();
    let base = name.strip_suffix(" UNSIGNED").unwrap_or(name);
    let text = || std::str::from_utf8(bytes).ok();
    match base {
        "BOOLEAN" | "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "YEAR" => text()
            .and_then(|t| {
                t.parse::<i64>()
                    .map(Value::from)
                    .or_else(|_| t.parse::<u64>().map(Value::from))
                    .ok()
            })
            .unwrap_or_else(|| as_text(bytes)),
        "FLOAT" | "DOUBLE" => text()
            .and_then(|t| t.parse::<f64>().ok())
            .filter(|f| f.is_finite())
            .map(Value::from)
            .unwrap_or_else(|| as_text(bytes)),
        "BIT" if bytes.len() <= 8 => {
            Value::from(bytes.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b)))
        }
        "JSON" => text()
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_else(|| as_text(bytes)),
        "GEOMETRY" | "BIT" => as_hex(bytes),
        _ if is_binary(type_info) => as_hex(bytes),
        _ => as_text(bytes),
    }
}

/// A string type in the `binary` character set: bytes, not text. (A `_bin` collation marks
/// text columns binary too, so the column's type name alone cannot tell.)
fn is_binary(type_info: &MySqlTypeInfo) -> bool {
    <[u8] as Type<MySql>>::compatible(type_info) && !<str as Type<MySql>>::compatible(type_info)
}

fn as_text(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => Value::from(text),
        Err(_) => as_hex(bytes),
    }
}

fn as_hex(bytes: &[u8]) -> Value {
    Value::from(format!("0x{}", hex::encode(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_that_is_not_utf8_becomes_hex() {
        assert_eq!(as_text(b"caf\xc3\xa9"), Value::from("café"));
        assert_eq!(as_text(b"\xff\x00"), Value::from("0xff00"));
    }
}
