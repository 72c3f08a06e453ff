//! Reading a domain event's JSON with errors that name the field at fault.

use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::amount::Amount;

/// A field that is missing or wrong, e.g. `data.amount: must be a positive number`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FieldError {
    pub field: String,
    pub problem: String,
}

/// Collects every field error of a request, so a 422 can name them all rather than the first.
#[derive(Debug, Default)]
pub(crate) struct Check {
    errors: Vec<FieldError>,
}

impl Check {
    /// The value, or after recording the error a placeholder that is never used.
    pub(crate) fn take<T: Default>(&mut self, result: Result<T, FieldError>) -> T {
        self.ok(result).unwrap_or_default()
    }

    pub(crate) fn ok<T>(&mut self, result: Result<T, FieldError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.errors.push(error);
                None
            }
        }
    }

    /// Whether no error has been recorded yet.
    pub(crate) fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }

    pub(crate) fn push(&mut self, error: FieldError) {
        self.errors.push(error);
    }

    pub(crate) fn extend(&mut self, errors: Vec<FieldError>) {
        self.errors.extend(errors);
    }

    /// `Err` with every error found (never an empty list), or `Ok`.
    pub(crate) fn finish(self) -> Result<(), Vec<FieldError>> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }
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

    /// An exact decimal amount ≥ 0, from a JSON number or a decimal string (see `amount.rs`).
    pub(crate) fn amount(&self, key: &str) -> Result<Amount, FieldError> {
        self.optional_amount(key)?.ok_or_else(|| self.error(key, "is required"))
    }

    pub(crate) fn optional_amount(&self, key: &str) -> Result<Option<Amount>, FieldError> {
        match self.raw(key) {
            None => Ok(None),
            Some(value) => {
                Amount::from_json(value).map(Some).map_err(|error| self.error(key, error.to_string()))
            }
        }
    }

    /// A link the front end may follow: `http://`, `https://` (any case) or a path starting with
    /// one `/`. Anything else (`javascript:`, `data:`, `//host`, `/\host`) is refused, as are
    /// spaces, control characters and backslashes anywhere, which browsers strip out of a scheme
    /// (`"java\tscript:"`).
    pub(crate) fn optional_link(&self, key: &str) -> Result<Option<String>, FieldError> {
        let Some(link) = self.optional_string(key)? else { return Ok(None) };
        let refused = || {
            self.error(key, "must be an http:// or https:// URL or a path starting with / (not //), without spaces or control characters")
        };
        if link.chars().any(|c| c.is_whitespace() || c.is_control() || c == '\\') {
            return Err(refused());
        }
        let lower = link.to_ascii_lowercase();
        let absolute = ["http://", "https://"].iter().any(|scheme| {
            lower.starts_with(scheme) && lower.len() > scheme.len() && !lower[scheme.len()..].starts_with('/')
        });
        let relative = link.starts_with('/') && !link.starts_with("//");
        if absolute || relative {
            Ok(Some(link))
        } else {
            Err(refused())
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
/// returned as Unix epoch milliseconds. Arithmetic is checked: a span too large to subtract from
/// now is refused, never wrapped or saturated into "everything".
pub fn parse_since(text: &str) -> Result<i64, String> {
    since_at(text, herald_store::now_ms())
}

/// [`parse_since`] against a given clock.
fn since_at(text: &str, now_ms: i64) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return i64::try_from(at.unix_timestamp_nanos() / 1_000_000)
            .map_err(|_| format!("{text:?} is out of range"));
    }
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale: i64 = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{text:?} is neither an RFC 3339 time nor a span like 15m, 1h or 2d")),
    };
    if number.is_empty() {
        return Err(format!("{text:?} is not a span like 15m, 1h or 2d"));
    }
    let out_of_range = || format!("{text:?} is out of range: a span reaches back at most to 1970");
    let number: i64 = number.parse().map_err(|_| out_of_range())?;
    number
        .checked_mul(scale)
        .and_then(|span| now_ms.checked_sub(span))
        .filter(|since| *since >= 0)
        .ok_or_else(out_of_range)
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
