//! A reply as rows: one column, `reply`, and one row per element of an array reply (`KEYS`,
//! `LRANGE`, `HGETALL` as field, value, field, value…), or a single row for any other reply,
//! in the order redis-cli prints them. Values are JSON: strings (a bulk string that is not
//! UTF-8 is written as redis-cli quotes it, `"\xff…"`), integers as numbers, nil as `null`,
//! nested arrays as JSON arrays, errors inside an array (`EXEC`) as `"(error) …"`. An empty
//! array is no row.

use serde_json::Value;
use tdb_resp::frame::Frame;

use crate::budget::Answer;
use crate::engine::{EngineError, QueryOutput, Result};

/// Bytes charged per value beyond its text, as for SQL rows.
const PER_VALUE: usize = 16;

/// `reply` as rows, at most `max_rows` kept, each charged to `answer`.
pub fn output(reply: Frame, max_rows: usize, answer: &Answer) -> Result<QueryOutput> {
    let elements = match reply {
        Frame::Array(items) | Frame::Set(items) | Frame::Push(items) => items,
        Frame::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        Frame::Attribute { frame, .. } => return output(*frame, max_rows, answer),
        other => vec![other],
    };
    let mut out = QueryOutput {
        columns: vec!["reply".into()],
        row_count: elements.len() as u64,
        ..QueryOutput::default()
    };
    for element in elements {
        if out.rows.len() >= max_rows {
            out.truncated = true;
            break;
        }
        let value = value(&element);
        answer.take(cost(&value)).map_err(EngineError::TooLarge)?;
        out.rows.push(vec![value]);
    }
    Ok(out)
}

fn cost(value: &Value) -> usize {
    match value {
        Value::String(s) => s.len() + PER_VALUE,
        Value::Array(items) => items.iter().map(cost).sum::<usize>() + PER_VALUE,
        _ => PER_VALUE,
    }
}

/// One reply element as JSON.
pub fn value(frame: &Frame) -> Value {
    match frame {
        Frame::Simple(b) | Frame::Bulk(b) | Frame::Verbatim { text: b, .. } => text(b),
        Frame::Error(b) | Frame::BlobError(b) => {
            Value::String(format!("(error) {}", String::from_utf8_lossy(b)))
        }
        Frame::Integer(n) => Value::from(*n),
        Frame::NullBulk | Frame::NullArray | Frame::Null => Value::Null,
        Frame::Array(items) | Frame::Set(items) | Frame::Push(items) => {
            Value::Array(items.iter().map(value).collect())
        }
        Frame::Map(pairs) => Value::Array(
            pairs
                .iter()
                .flat_map(|(k, v)| [value(k), value(v)])
                .collect(),
        ),
        Frame::Double(d) => serde_json::Number::from_f64(d.value())
            .map_or_else(|| text(d.as_bytes()), Value::Number),
        Frame::Boolean(b) => Value::Bool(*b),
        Frame::BigNumber(n) => text(n.as_bytes()),
        Frame::Attribute { frame, .. } => value(frame),
    }
}

/// A string as is when it is UTF-8, else quoted as redis-cli quotes binary strings.
fn text(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(s) => Value::String(s.to_owned()),
        Err(_) => Value::String(quoted(bytes)),
    }
}

/// redis-cli's `"…"` form: `\n \r \t \a \b \\ \"`, printable ASCII as is, `\xHH` otherwise.
pub fn quoted(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x07 => out.push_str("\\a"),
            0x08 => out.push_str("\\b"),
            b if b.is_ascii_graphic() || b == b' ' => out.push(char::from(b)),
            b => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::budget::MemoryBudget;

    fn rows(reply: Frame, max: usize) -> QueryOutput {
        output(reply, max, &MemoryBudget::new(1 << 20).answer(1 << 20)).expect("output")
    }

    #[test]
    fn arrays_are_rows_and_scalars_one_row() {
        let out = rows(
            Frame::Array(vec![
                Frame::Bulk("a".into()),
                Frame::Integer(2),
                Frame::NullBulk,
                Frame::Array(vec![Frame::Bulk("x".into())]),
                Frame::Error("ERR no".into()),
            ]),
            10,
        );
        assert_eq!(out.columns, ["reply"]);
        assert_eq!(
            out.rows,
            [
                vec![Value::from("a")],
                vec![Value::from(2)],
                vec![Value::Null],
                vec![serde_json::json!(["x"])],
                vec![Value::from("(error) ERR no")],
            ]
        );
        assert_eq!(
            rows(Frame::Simple("OK".into()), 10).rows,
            [vec![Value::from("OK")]]
        );
        assert!(rows(Frame::Array(vec![]), 10).rows.is_empty());
    }

    #[test]
    fn long_answers_are_truncated_and_binary_strings_quoted() {
        let many = Frame::Array((0..5).map(Frame::Integer).collect());
        let out = rows(many, 2);
        assert_eq!((out.rows.len(), out.row_count, out.truncated), (2, 5, true));
        assert_eq!(
            value(&Frame::Bulk(Bytes::from_static(b"a\xff\n\""))),
            Value::from(r#""a\xff\n\"""#)
        );
    }
}
