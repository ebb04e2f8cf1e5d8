//! PostgreSQL values (text format, as the simple protocol sends them) to JSON: numbers and
//! booleans as JSON scalars, json/jsonb as JSON, NULL as null, everything else as its text.
//! `numeric` stays text so no precision is lost.

use serde_json::Value;

pub fn text_to_json(type_name: &str, text: &str) -> Value {
    match type_name {
        "BOOL" => Value::Bool(text == "t"),
        "INT2" | "INT4" | "INT8" | "OID" => text
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::from(text)),
        "FLOAT4" | "FLOAT8" => text
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Value::from)
            .unwrap_or_else(|| Value::from(text)),
        "JSON" | "JSONB" => serde_json::from_str(text).unwrap_or_else(|_| Value::from(text)),
        _ => Value::from(text),
    }
}

#[cfg(test)]
mod tests {
    use super::text_to_json;
    use serde_json::json;

    #[test]
    fn scalars_become_json() {
        assert_eq!(text_to_json("INT4", "42"), json!(42));
        assert_eq!(text_to_json("BOOL", "t"), json!(true));
        assert_eq!(text_to_json("FLOAT8", "1.5"), json!(1.5));
        assert_eq!(text_to_json("FLOAT8", "NaN"), json!("NaN"));
        assert_eq!(
            text_to_json("NUMERIC", "12345678901234567890.5"),
            json!("12345678901234567890.5")
        );
        assert_eq!(text_to_json("JSONB", "{\"a\": [1]}"), json!({"a": [1]}));
        assert_eq!(text_to_json("TEXT", "hello"), json!("hello"));
    }
}
