//! Money amounts as exact decimals: read from decimal strings or JSON numbers, compared and
//! printed digit by digit, never through floating-point arithmetic.

use std::cmp::Ordering;
use std::fmt;

use serde_json::{Number, Value};

/// Most digits before the decimal point.
pub(crate) const MAX_WHOLE_DIGITS: usize = 15;
/// Most digits after the decimal point (trailing zeros do not count).
pub(crate) const MAX_FRACTION_DIGITS: usize = 4;
/// Most digits in all (leading zeros of the whole part and trailing zeros of the fraction do not
/// count). Any decimal within this bound survives a JSON number exactly, as pusher-js reads it.
pub(crate) const MAX_DIGITS: usize = 15;
/// Longest text looked at (spaces and zeros included), so hostile input costs nothing.
const MAX_TEXT: usize = 64;

/// A non-negative decimal amount, kept as its digits: `7500.00` is `7500`, `250.50` is `250.5`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Amount {
    /// Digits before the point, without leading zeros; `"0"` for amounts below one.
    whole: String,
    /// Digits after the point, without trailing zeros; empty for whole amounts.
    fraction: String,
}

/// Why a text is not an amount. Messages complete "data.amount: …".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("must not be negative (no sign, not even on zero: -0 is refused)")]
    Signed,
    #[error("must be a decimal number like 2500 or 2500.50 (digits, at most one point, no exponent)")]
    NotDecimal,
    #[error(
        "must have at most {MAX_WHOLE_DIGITS} digits before the point, {MAX_FRACTION_DIGITS} after it and {MAX_DIGITS} in all"
    )]
    OutOfRange,
    #[error("must be a number or a decimal string")]
    WrongType,
}

impl Default for Amount {
    fn default() -> Self {
        Amount { whole: "0".into(), fraction: String::new() }
    }
}

impl Amount {
    /// Parses a decimal: digits, optionally a point and more digits; surrounding spaces allowed.
    pub fn parse(text: &str) -> Result<Amount, AmountError> {
        if text.len() > MAX_TEXT {
            return Err(AmountError::OutOfRange);
        }
        let text = text.trim_matches(|c: char| c.is_ascii_whitespace());
        if text.starts_with(['-', '+']) {
            return Err(AmountError::Signed);
        }
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(fraction) || text.ends_with('.') {
            return Err(AmountError::NotDecimal);
        }
        let whole = whole.trim_start_matches('0');
        let fraction = fraction.trim_end_matches('0');
        let whole_digits = whole.len();
        if whole_digits > MAX_WHOLE_DIGITS
            || fraction.len() > MAX_FRACTION_DIGITS
            || whole_digits + fraction.len() > MAX_DIGITS
        {
            return Err(AmountError::OutOfRange);
        }
        let whole = if whole.is_empty() { "0" } else { whole };
        Ok(Amount { whole: whole.to_owned(), fraction: fraction.to_owned() })
    }

    /// Reads a JSON number or decimal string. A JSON number is taken as its shortest decimal
    /// form (what JavaScript's `JSON.stringify` prints), so send strings for more digits.
    pub fn from_json(value: &Value) -> Result<Amount, AmountError> {
        match value {
            Value::Number(number) => Amount::parse(&number.to_string()),
            Value::String(text) => Amount::parse(text),
            _ => Err(AmountError::WrongType),
        }
    }

    /// The amount as a JSON number whose text is exactly [`Amount`]'s `Display`: an integer for
    /// whole amounts (`2500`), the digits with their fraction otherwise (`250.5`).
    pub fn to_json(&self) -> Value {
        let number: Number =
            self.to_string().parse().expect("an amount's digits always parse as a JSON number");
        Value::Number(number)
    }

    /// With at least two decimals and never rounded, for messages: `25.00`, `250.50`, `0.125`.
    pub fn with_cents(&self) -> String {
        format!("{}.{:0<2}", self.whole, self.fraction)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.fraction.is_empty() {
            f.write_str(&self.whole)
        } else {
            write!(f, "{}.{}", self.whole, self.fraction)
        }
    }
}

impl Ord for Amount {
    fn cmp(&self, other: &Self) -> Ordering {
        // No leading zeros: a longer whole part is larger. No trailing zeros: fractions compare
        // as text ("5" > "45", "" < "01").
        (self.whole.len(), &self.whole, &self.fraction).cmp(&(
            other.whole.len(),
            &other.whole,
            &other.fraction,
        ))
    }
}

impl PartialOrd for Amount {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn amount(text: &str) -> Amount {
        Amount::parse(text).expect(text)
    }

    #[test]
    fn decimals_are_kept_digit_for_digit() {
        assert_eq!(amount("7500.00").to_string(), "7500");
        assert_eq!(amount("0250.50").to_string(), "250.5");
        assert_eq!(amount(" 0 ").to_string(), "0");
        assert_eq!(amount("0.0001").to_string(), "0.0001");
        assert_eq!(amount("999999999999999").to_string(), "999999999999999");
        assert_eq!(amount("99999999999.9999").to_string(), "99999999999.9999");
        assert_eq!(amount("25").with_cents(), "25.00");
        assert_eq!(amount("250.5").with_cents(), "250.50");
        assert_eq!(amount("0.125").with_cents(), "0.125");
    }

    #[test]
    fn json_numbers_print_exactly_the_decimal() {
        for text in [
            "0",
            "1",
            "2500",
            "250.5",
            "0.0001",
            "0.1",
            "999999999999999",
            "99999999999.9999",
            "12345678.9012",
        ] {
            let value = amount(text).to_json();
            assert!(value.is_number(), "{text}");
            assert_eq!(value.to_string(), text);
        }
        assert_eq!(Amount::from_json(&json!(2500)).expect("int").to_json(), json!(2500));
        assert_eq!(Amount::from_json(&json!(250.5)).expect("float").to_string(), "250.5");
        assert_eq!(Amount::from_json(&json!(7500.0)).expect("float").to_string(), "7500");
    }

    #[test]
    fn signs_exponents_and_oversized_amounts_are_refused() {
        for text in ["-0", "-0.00", "-5", "+5", " -1"] {
            assert_eq!(Amount::parse(text), Err(AmountError::Signed), "{text}");
        }
        for text in ["", ".5", "5.", "1e3", "1,5", "0x10", "NaN", "inf", "1.2.3", "５", "1 000"] {
            assert_eq!(Amount::parse(text), Err(AmountError::NotDecimal), "{text:?}");
        }
        let digits38 = "12345678901234567890123456789012345678";
        for text in [digits38, "1000000000000000", "0.00001", "12345678901.23456", &"1".repeat(65)] {
            assert_eq!(Amount::parse(text), Err(AmountError::OutOfRange), "{text}");
        }
        let huge: Value = serde_json::from_str(digits38).expect("json");
        assert!(Amount::from_json(&huge).is_err(), "a 38-digit JSON number is refused, not rounded");
        let negative_zero: Value = serde_json::from_str("-0").expect("json");
        assert_eq!(Amount::from_json(&negative_zero), Err(AmountError::Signed));
        assert_eq!(Amount::from_json(&json!(true)), Err(AmountError::WrongType));
    }

    #[test]
    fn amounts_order_by_value() {
        let sorted = ["0", "0.01", "0.45", "0.5", "1", "9.99", "10", "1000", "1000.0001"];
        for pair in sorted.windows(2) {
            assert!(amount(pair[0]) < amount(pair[1]), "{} < {}", pair[0], pair[1]);
        }
        assert_eq!(amount("1000.00").cmp(&amount("1000")), Ordering::Equal);
    }

    #[test]
    fn leading_zeros_do_not_count_up_to_the_longest_text_looked_at() {
        let padded = format!("{}1", "0".repeat(MAX_TEXT - 1));
        assert_eq!(amount(&padded).to_string(), "1", "{} characters", padded.len());
        let longer = format!("{}1", "0".repeat(MAX_TEXT));
        assert_eq!(Amount::parse(&longer), Err(AmountError::OutOfRange), "{} characters", longer.len());
    }
}
