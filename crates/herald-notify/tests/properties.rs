//! Property tests of the domain-event validator and of exact amounts: arbitrary JSON never
//! panics, the verdict is stable, every refusal names its fields, amounts keep their digits.

use herald_notify::{plan, Amount, CatalogSettings, EVENT_TYPES};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn config() -> ProptestConfig {
    ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() }
}

/// Field names the catalog reads, so arbitrary objects often hit real fields.
const KEYS: [&str; 24] = [
    "donation_id",
    "amount",
    "currency",
    "campaign_id",
    "organization_id",
    "donor_name",
    "threshold",
    "campaign_title",
    "milestone",
    "amount_raised",
    "goal_amount",
    "submitted_by",
    "id",
    "name",
    "payment_id",
    "reason",
    "user_id",
    "alert_type",
    "message",
    "severity",
    "notification",
    "action_url",
    "scheduled_for",
    "affected_services",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|n| serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)),
        prop::sample::select(vec![
            "",
            " ",
            "-0",
            "0",
            "25",
            "1000.00",
            "1e3",
            "EUR",
            "low",
            "critical",
            "urgent",
            "scheduled",
            "2026-11-27T10:00:00Z",
            "javascript:alert(1)",
            "/ok",
            "https://x.example",
            "java\tscript:",
            "12345678901234567890123456789012345678",
        ])
        .prop_map(|text| Value::String(text.to_owned())),
        any::<String>().prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS.to_vec()), inner), 0..10).prop_map(|pairs| {
                Value::Object(
                    pairs.into_iter().map(|(key, value)| (key.to_owned(), value)).collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

fn event_type() -> impl Strategy<Value = String> {
    prop_oneof![prop::sample::select(EVENT_TYPES.to_vec()).prop_map(str::to_owned), any::<String>()]
}

/// Decimal text within the documented bound, and its value in ten-thousandths.
fn bounded_decimal() -> impl Strategy<Value = (String, u128)> {
    ("[0-9]{0,4}", "[0-9]{1,15}", 0_usize..3, 0_usize..3).prop_filter_map(
        "at most 15 digits in all",
        |(fraction, whole, leading_zeros, trailing_zeros)| {
            let significant_whole = whole.trim_start_matches('0').len();
            let significant_fraction = fraction.trim_end_matches('0').len();
            (significant_whole + significant_fraction <= 15).then(|| {
                let text = if fraction.is_empty() {
                    format!("{}{whole}", "0".repeat(leading_zeros))
                } else {
                    format!("{}{whole}.{fraction}{}", "0".repeat(leading_zeros), "0".repeat(trailing_zeros))
                };
                let padded = format!("{fraction:0<4}");
                let value =
                    whole.parse::<u128>().expect("digits") * 10_000 + padded.parse::<u128>().expect("digits");
                (text, value)
            })
        },
    )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_events_never_panic_and_get_one_stable_verdict(event_type in event_type(), data in json_value()) {
        let settings = CatalogSettings::default();
        let first = plan(&event_type, &data, &settings);
        prop_assert_eq!(&first, &plan(&event_type, &data, &settings));
        match first {
            Ok(planned) => {
                prop_assert!(EVENT_TYPES.contains(&event_type.as_str()));
                prop_assert!(planned.broadcast.is_some() != planned.ignored.is_some());
            }
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                for error in &errors {
                    prop_assert!(error.field == "type" || error.field.starts_with("data"), "{:?}", error);
                    prop_assert!(!error.problem.is_empty());
                }
            }
        }
    }

    #[test]
    fn valid_catalog_events_stay_valid_when_unknown_keys_are_added(extra in json_value()) {
        let data = json!({ "alert_type": "x", "message": "m", "severity": "low", "unknown": extra });
        prop_assert!(plan("security.alert", &data, &CatalogSettings::default()).is_ok());
    }

    #[test]
    fn bounded_amounts_keep_every_digit_and_order_by_value(
        (left, left_value) in bounded_decimal(),
        (right, right_value) in bounded_decimal(),
    ) {
        let a = Amount::parse(&left).expect("within the bound");
        let b = Amount::parse(&right).expect("within the bound");
        prop_assert_eq!(a.cmp(&b), left_value.cmp(&right_value), "{} vs {}", left, right);
        let text = a.to_string();
        prop_assert_eq!(a.to_json().to_string(), text.clone());
        prop_assert_eq!(Amount::from_json(&a.to_json()), Ok(a.clone()));
        let reparsed: Value = serde_json::from_str(&a.to_json().to_string()).expect("json");
        prop_assert_eq!(reparsed.to_string(), text);
        prop_assert_eq!(Amount::parse(&format!("-{left}")).is_err(), true);
    }

    #[test]
    fn any_text_is_an_amount_only_if_it_is_plain_bounded_digits(text in any::<String>()) {
        if let Ok(amount) = Amount::parse(&text) {
            let trimmed = text.trim_matches(|c: char| c.is_ascii_whitespace());
            prop_assert!(trimmed.bytes().all(|b| b.is_ascii_digit() || b == b'.'));
            prop_assert!(amount.to_string().len() <= 16);
        }
    }
}
