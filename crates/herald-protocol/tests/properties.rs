//! Property tests of what hostile clients control: client frames, channel names and signatures.
//! Arbitrary input never panics; verdicts agree with the spec and with each other.

use herald_protocol::{
    api_string_to_sign, body_md5_hex, hmac_sha256_hex, verify_auth, verify_hex_signature, ApiSigner,
    AuthError, ChannelName, ChannelNameError, ClientEvent, FrameError,
};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() }
}

/// The spec's verdict (`shared/PROTOCOL.md`): `[A-Za-z0-9_\-=@,.;]+`, at most `max` characters,
/// `#` names reserved except `#server-to-user-{id}` with a valid non-empty id, and a kind's prefix
/// alone (`private-`, `presence-`, ...) names no channel.
fn spec_allows(name: &str, max: usize) -> bool {
    let valid = |body: &str| {
        !body.is_empty() && body.chars().all(|c| c.is_ascii_alphanumeric() || "_-=@,.;".contains(c))
    };
    let body = match name.strip_prefix("#server-to-user-") {
        Some(user) => user,
        None if name.starts_with('#') => return false,
        None => name,
    };
    let bare_prefix = herald_protocol::CHANNEL_PREFIXES.contains(&name);
    name.chars().count() <= max && valid(body) && !bare_prefix
}

/// Names near the edges: the alphabet, a few outsiders, the prefixes.
fn channel_name() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "a",
        "Z",
        "0",
        "_",
        "-",
        "=",
        "@",
        ",",
        ".",
        ";",
        "private-",
        "presence-",
        "private-encrypted-",
        "cache-",
        "private-cache-",
        "presence-cache-",
        "#server-to-user-",
        "#",
        " ",
        "/",
        ":",
        "é",
        "\u{0}",
        "%",
        "*",
        "\n",
    ]);
    prop_oneof![
        prop::collection::vec(pieces, 0..12).prop_map(|parts| parts.concat()),
        "[A-Za-z0-9_=@,.;-]{190,210}",
        any::<String>(),
    ]
}

/// JSON-ish frames: mostly shaped like Pusher frames, with hostile values.
fn frame_text() -> impl Strategy<Value = String> {
    let event = prop_oneof![
        Just("pusher:ping".to_owned()),
        Just("pusher:subscribe".to_owned()),
        Just("pusher:unsubscribe".to_owned()),
        Just("pusher:signin".to_owned()),
        Just("pusher_internal:member_added".to_owned()),
        "client-[a-z]{0,8}",
        any::<String>(),
    ];
    let value = prop_oneof![
        Just("null".to_owned()),
        Just("{}".to_owned()),
        Just(r#"{"channel":"private-a","auth":"k:s"}"#.to_owned()),
        Just(r#""{\"channel\":\"a\"}""#.to_owned()),
        Just(r#"{"auth":1,"user_data":[]}"#.to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<String>().prop_map(|text| serde_json::Value::String(text).to_string()),
    ];
    prop_oneof![
        (event, value.clone(), value).prop_map(|(event, data, channel)| {
            format!(r#"{{"event":{},"data":{data},"channel":{channel}}}"#, serde_json::Value::String(event))
        }),
        any::<String>(),
        prop::collection::vec(prop::sample::select(vec!["{", "}", "[", "]", "\"", ":", ",", "event"]), 0..40)
            .prop_map(|parts| parts.concat()),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn client_frames_never_panic_and_only_allowed_events_pass(text in frame_text()) {
        match ClientEvent::parse(&text) {
            Ok(ClientEvent::Client { event, .. }) => prop_assert!(event.starts_with("client-")),
            Ok(_) => {}
            Err(FrameError::ForbiddenEvent(event)) => {
                prop_assert!(!event.starts_with("client-"));
                prop_assert!(!matches!(event.as_str(), "pusher:ping" | "pusher:pong" | "pusher:subscribe" | "pusher:unsubscribe" | "pusher:signin"));
            }
            Err(_) => {}
        }
    }

    #[test]
    fn channel_names_get_the_spec_verdict(name in channel_name(), max in prop_oneof![Just(200_usize), 0_usize..300]) {
        let parsed = ChannelName::parse(&name, max);
        prop_assert_eq!(parsed.is_ok(), spec_allows(&name, max), "{:?} (max {}): {:?}", name, max, parsed);
        if let Ok(channel) = parsed {
            prop_assert_eq!(channel.as_str(), name.as_str());
        } else if name.is_empty() {
            prop_assert_eq!(parsed, Err(ChannelNameError::Empty));
        }
    }

    #[test]
    fn a_correct_signature_verifies_and_any_one_character_change_does_not(
        secret in any::<String>(),
        message in any::<String>(),
        position in any::<prop::sample::Index>(),
        replacement in any::<char>(),
    ) {
        let signature = hmac_sha256_hex(&secret, &message);
        prop_assert!(verify_hex_signature(&secret, &message, &signature));
        prop_assert!(verify_hex_signature(&secret, &message, &signature.to_ascii_uppercase()));
        let mut chars: Vec<char> = signature.chars().collect();
        let at = position.index(chars.len());
        if !replacement.eq_ignore_ascii_case(&chars[at]) {
            chars[at] = replacement;
            let changed: String = chars.into_iter().collect();
            prop_assert!(!verify_hex_signature(&secret, &message, &changed), "{}", changed);
        }
        let mut longer = signature.clone();
        longer.push('0');
        prop_assert!(!verify_hex_signature(&secret, &message, &longer));
        prop_assert!(!verify_hex_signature(&secret, &message, &signature[..63]));
        if !message.is_empty() {
            let mut message_chars: Vec<char> = message.chars().collect();
            let at = position.index(message_chars.len());
            if message_chars[at] != replacement {
                message_chars[at] = replacement;
                let changed: String = message_chars.into_iter().collect();
                prop_assert!(!verify_hex_signature(&secret, &changed, &signature));
            }
        }
    }

    #[test]
    fn verify_auth_never_panics_and_accepts_only_key_colon_signature(
        key in "[a-z0-9]{1,20}",
        secret in any::<String>(),
        signed in any::<String>(),
        auth in any::<String>(),
    ) {
        let verdict = verify_auth(&key, &secret, &signed, &auth);
        if verdict.is_ok() {
            prop_assert_eq!(auth.split_once(':').map(|(k, _)| k), Some(key.as_str()));
        }
        let good = format!("{key}:{}", hmac_sha256_hex(&secret, &signed));
        prop_assert_eq!(verify_auth(&key, &secret, &signed, &good), Ok(()));
        let wrong_key = format!("x{key}:{}", hmac_sha256_hex(&secret, &signed));
        prop_assert_eq!(verify_auth(&key, &secret, &signed, &wrong_key), Err(AuthError::WrongKey));
        if !auth.contains(':') {
            prop_assert_eq!(verify_auth(&key, &secret, &signed, &auth), Err(AuthError::Malformed));
        }
    }

    #[test]
    fn a_signed_query_verifies_as_the_server_checks_it_and_only_with_its_secret(
        key in "[a-z0-9]{1,20}",
        secret in "[a-z0-9]{1,20}",
        method in "GET|POST",
        path in "/apps/[a-z0-9]{1,8}/[a-z/-]{0,20}",
        body in prop::collection::vec(any::<u8>(), 0..64),
        timestamp in any::<u64>(),
        params in prop::collection::vec(("[a-z_]{1,10}", any::<String>()), 0..4),
    ) {
        let extra: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let query = ApiSigner { key: &key, secret: &secret }.query(&method, &path, &body, timestamp, &extra);
        let (last, signature) = query.last().expect("a signature");
        prop_assert_eq!(last, "auth_signature");
        let signed = api_string_to_sign(&method, &path, query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        prop_assert!(verify_hex_signature(&secret, &signed, signature));
        if key != secret {
            prop_assert!(!verify_hex_signature(&key, &signed, signature));
        }
        let md5 = query.iter().find(|(k, _)| k == "body_md5").map(|(_, v)| v.clone());
        prop_assert_eq!(md5, (!body.is_empty()).then(|| body_md5_hex(&body)));
        prop_assert_eq!(query.len(), 4 + usize::from(!body.is_empty()) + extra.len());
    }

    #[test]
    fn api_strings_to_sign_never_panic_and_ignore_order_and_the_signature(
        method in any::<String>(),
        path in any::<String>(),
        params in prop::collection::vec((any::<String>(), any::<String>()), 0..8),
        signature in any::<String>(),
    ) {
        let forward = api_string_to_sign(&method, &path, params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut reversed: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        reversed.reverse();
        reversed.push(("AUTH_SIGNATURE", signature.as_str()));
        prop_assert_eq!(&forward, &api_string_to_sign(&method, &path, reversed));
        let head = format!("{}\n{}\n", method.to_ascii_uppercase(), path);
        prop_assert!(forward.starts_with(&head));
    }
}

#[test]
fn deeply_nested_frames_are_refused_without_overflowing_the_stack() {
    for depth in [200, 10_000, 100_000] {
        let deep = format!(
            r#"{{"event":"client-x","channel":"private-a","data":{}{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        assert_eq!(ClientEvent::parse(&deep), Err(FrameError::InvalidJson), "depth {depth}");
        let nested_string = serde_json::Value::String(format!("{}{}", "[".repeat(depth), "]".repeat(depth)));
        let frame = format!(r#"{{"event":"pusher:subscribe","data":{nested_string}}}"#);
        assert_eq!(ClientEvent::parse(&frame), Err(FrameError::BadField("data")), "depth {depth}");
    }
}
