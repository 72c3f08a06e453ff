//! Reading a domain event's JSON with errors that name the field at fault.

use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A field that is missing or wrong, e.g. `data.amount: must be a positive number`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FieldError {
    pub field: String,
    pub problem: String,
}

/// One JSON object and the path that leads to it, for error messages.
pub(crate) struct Fields<'a> {
    object: &'a Map<String, Value>,
    path: String,
}

/// Longest string accepted in any field (bigger payloads belong in `details`).
const MAX_STRING: usize = 2000;

impl<'a> Fields<'a> {
    pub(crate) fn new(value: &'a Value, path: &str) -> Result<Fields<'a>, FieldError> {
        match value {
            Value::Object(object) => Ok(Fields { object, path: path.to_owned() }),
            _ => Err(FieldError { field: path.to_owned(), problem: "must be a JSON object".into() }),
        }
    }

    fn name(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub(crate) fn error(&self, key: &str, problem: impl Into<String>) -> FieldError {
        FieldError { field: self.name(key), problem: problem.into() }
    }

    pub(crate) fn raw(&self, key: &str) -> Option<&'a Value> {
        self.object.get(key).filter(|value| !value.is_null())
    }

    pub(crate) fn string(&self, key: &str) -> Result<String, FieldError> {
        self.optional_string(key)?.ok_or_else(|| self.error(key, "is required"))
    }

    pub(crate) fn optional_string(&self, key: &str) -> Result<Option<String>, FieldError> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::String(text)) if text.trim().is_empty() => Err(self.error(key, "must not be empty")),
            Some(Value::String(text)) if text.len() > MAX_STRING => {
                Err(self.error(key, format!("must be at most {MAX_STRING} characters")))
            }
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(self.error(key, "must be a string")),
        }
    }

    /// An identifier: a non-empty string or an integer, returned as a string.
    pub(crate) fn id(&self, key: &str) -> Result<String, FieldError> {
        self.optional_id(key)?.ok_or_else(|| self.error(key, "is required"))
    }

    pub(crate) fn optional_id(&self, key: &str) -> Result<Option<String>, FieldError> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::Number(number)) if number.is_u64() || number.is_i64() => Ok(Some(number.to_string())),
            Some(Value::String(text))
                if !text.is_empty()
                    && text.len() <= 128
                    && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_=@.".contains(&b)) =>
            {
                Ok(Some(text.clone()))
            }
            Some(_) => Err(self.error(key, "must be an id: an integer or letters, digits and -_=@.")),
        }
    }

    /// A finite number ≥ 0 (amounts may come as numbers or decimal strings).
    pub(crate) fn amount(&self, key: &str) -> Result<f64, FieldError> {
        self.optional_amount(key)?.ok_or_else(|| self.error(key, "is required"))
    }

    pub(crate) fn optional_amount(&self, key: &str) -> Result<Option<f64>, FieldError> {
        let number = match self.raw(key) {
            None => return Ok(None),
            Some(Value::Number(number)) => number.as_f64(),
            Some(Value::String(text)) => text.trim().parse::<f64>().ok(),
            Some(_) => None,
        };
        match number {
            Some(number) if number.is_finite() && number >= 0.0 => Ok(Some(number)),
            _ => Err(self.error(key, "must be a number ≥ 0")),
        }
    }

    pub(crate) fn integer(&self, key: &str, min: i64, max: i64) -> Result<i64, FieldError> {
        match self.raw(key).and_then(Value::as_i64) {
            Some(number) if (min..=max).contains(&number) => Ok(number),
            Some(_) => Err(self.error(key, format!("must be between {min} and {max}"))),
            None => Err(self.error(key, "is required and must be an integer")),
        }
    }

    pub(crate) fn one_of(&self, key: &str, allowed: &[&str]) -> Result<String, FieldError> {
        let value = self.string(key)?;
        if allowed.contains(&value.as_str()) {
            Ok(value)
        } else {
            Err(self.error(key, format!("must be one of {}", allowed.join(", "))))
        }
    }

    pub(crate) fn optional_one_of(&self, key: &str, allowed: &[&str]) -> Result<Option<String>, FieldError> {
        match self.raw(key) {
            None => Ok(None),
            Some(_) => self.one_of(key, allowed).map(Some),
        }
    }

    /// An ISO 3-letter currency code.
    pub(crate) fn currency(&self, key: &str) -> Result<String, FieldError> {
        let code = self.string(key)?;
        if code.len() == 3 && code.bytes().all(|b| b.is_ascii_alphabetic()) {
            Ok(code.to_ascii_uppercase())
        } else {
            Err(self.error(key, "must be a 3-letter currency code"))
        }
    }

    /// An RFC 3339 timestamp, returned as Unix epoch milliseconds.
    pub(crate) fn timestamp(&self, key: &str) -> Result<i64, FieldError> {
        self.optional_timestamp(key)?.ok_or_else(|| self.error(key, "is required"))
    }

    pub(crate) fn optional_timestamp(&self, key: &str) -> Result<Option<i64>, FieldError> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::String(text)) => OffsetDateTime::parse(text, &Rfc3339)
                .map(|at| Some((at.unix_timestamp_nanos() / 1_000_000) as i64))
                .map_err(|_| self.error(key, "must be an RFC 3339 timestamp like 2026-11-27T10:00:00Z")),
            Some(_) => Err(self.error(key, "must be an RFC 3339 timestamp string")),
        }
    }

    pub(crate) fn object(&self, key: &str) -> Result<Fields<'a>, FieldError> {
        match self.raw(key) {
            Some(value @ Value::Object(_)) => Fields::new(value, &self.name(key)),
            Some(_) => Err(self.error(key, "must be an object")),
            None => Err(self.error(key, "is required")),
        }
    }

    /// Any JSON object (free-form `details`, `data`), defaulting to `{}`.
    pub(crate) fn free_object(&self, key: &str) -> Result<Value, FieldError> {
        match self.raw(key) {
            None => Ok(Value::Object(Map::new())),
            Some(value @ Value::Object(_)) => Ok(value.clone()),
            Some(_) => Err(self.error(key, "must be an object")),
        }
    }

    pub(crate) fn strings(&self, key: &str) -> Result<Vec<String>, FieldError> {
        match self.raw(key) {
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(text) if !text.is_empty() && text.len() <= 200 => Ok(text.clone()),
                    _ => Err(self.error(key, "must be a list of non-empty strings")),
                })
                .collect(),
            Some(_) => Err(self.error(key, "must be a list of strings")),
            None => Err(self.error(key, "is required")),
        }
    }
}

/// A `since` filter: an RFC 3339 time, or a span back from now (`90s`, `15m`, `1h`, `2d`);
/// returned as Unix epoch milliseconds.
pub fn parse_since(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok((at.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{text:?} is neither an RFC 3339 time nor a span like 15m, 1h or 2d")),
    };
    let number: i64 = number.parse().map_err(|_| format!("{text:?} is not a span like 15m, 1h or 2d"))?;
    Ok(herald_store::now_ms() - number.saturating_mul(scale))
}

/// Unix epoch milliseconds as RFC 3339 in UTC, always with milliseconds
/// (`2026-11-27T14:48:04.070Z`), so fixed-format parsers read every value.
pub fn rfc3339(ms: i64) -> String {
    let Ok(at) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else {
        return String::new();
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

/// An amount as JSON: whole numbers stay integers (`2500`, not `2500.0`).
pub(crate) fn amount_json(amount: f64) -> serde_json::Value {
    if amount.fract() == 0.0 && amount.abs() < 9.0e15 {
        serde_json::Value::from(amount as i64)
    } else {
        serde_json::Value::from(amount)
    }
}
