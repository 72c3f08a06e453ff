//! HMAC-SHA256 signatures of the HTTP API, channel auth and user sign-in; body MD5.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Lower-case hex HMAC-SHA256 of `message` under `secret`.
pub fn hmac_sha256_hex(secret: &str, message: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("hmac accepts any key length");
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Checks a hex signature in constant time (case-insensitive hex, as SDKs send lower case).
pub fn verify_hex_signature(secret: &str, message: &str, signature_hex: &str) -> bool {
    let expected = hmac_sha256_hex(secret, message);
    let given = signature_hex.to_ascii_lowercase();
    expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

/// Lower-case hex MD5 of a request body.
pub fn body_md5_hex(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

/// `METHOD\nPATH\nQUERY`: every parameter but `auth_signature`, keys lower-cased, sorted by key,
/// joined `k=v&k=v` with values not escaped.
pub fn api_string_to_sign<'a>(
    method: &str,
    path: &str,
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> String {
    let mut pairs: Vec<(String, &str)> = params
        .into_iter()
        .map(|(key, value)| (key.to_ascii_lowercase(), value))
        .filter(|(key, _)| key != "auth_signature")
        .collect();
    pairs.sort();
    let query: Vec<String> = pairs.iter().map(|(key, value)| format!("{key}={value}")).collect();
    format!("{}\n{}\n{}", method.to_ascii_uppercase(), path, query.join("&"))
}

/// The string signed for a channel subscription: `socket_id:channel[:channel_data]`.
pub fn channel_auth_string(socket_id: &str, channel: &str, channel_data: Option<&str>) -> String {
    match channel_data {
        Some(data) => format!("{socket_id}:{channel}:{data}"),
        None => format!("{socket_id}:{channel}"),
    }
}

/// The string signed for `pusher:signin`: `socket_id::user::user_data`.
pub fn signin_auth_string(socket_id: &str, user_data: &str) -> String {
    format!("{socket_id}::user::{user_data}")
}

/// Why an `auth` value (`key:signature`) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("auth value must be \"key:signature\"")]
    Malformed,
    #[error("auth key does not match the app key")]
    WrongKey,
    #[error("invalid signature")]
    BadSignature,
}

/// Verifies a client's `auth` value for the string it should sign.
pub fn verify_auth(app_key: &str, secret: &str, signed: &str, auth: &str) -> Result<(), AuthError> {
    let (key, signature) = auth.split_once(':').ok_or(AuthError::Malformed)?;
    if key != app_key {
        return Err(AuthError::WrongKey);
    }
    if verify_hex_signature(secret, signed, signature) {
        Ok(())
    } else {
        Err(AuthError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    //! Golden vectors from `shared/PROTOCOL.md`, computed independently of this code.
    use super::*;

    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";

    #[test]
    fn body_md5_golden() {
        let body = r#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        assert_eq!(body_md5_hex(body.as_bytes()), "ec365a775a4cd0599faeb73354201b6f");
    }

    #[test]
    fn api_signature_golden() {
        let signed = api_string_to_sign(
            "POST",
            "/apps/3/events",
            [
                ("body_md5", "ec365a775a4cd0599faeb73354201b6f"),
                ("auth_version", "1.0"),
                ("auth_key", KEY),
                ("auth_timestamp", "1353088179"),
                ("auth_signature", "ignored"),
            ],
        );
        assert_eq!(
            signed,
            "POST\n/apps/3/events\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f"
        );
        assert_eq!(
            hmac_sha256_hex(SECRET, &signed),
            "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        );
    }

    #[test]
    fn private_channel_golden() {
        let signed = channel_auth_string("1234.1234", "private-foobar", None);
        let sig = "58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4";
        assert_eq!(hmac_sha256_hex(SECRET, &signed), sig);
        assert_eq!(verify_auth(KEY, SECRET, &signed, &format!("{KEY}:{sig}")), Ok(()));
        assert_eq!(verify_auth("other", SECRET, &signed, &format!("{KEY}:{sig}")), Err(AuthError::WrongKey));
        assert_eq!(verify_auth(KEY, SECRET, &signed, sig), Err(AuthError::Malformed));
        assert_eq!(
            verify_auth(KEY, SECRET, &signed, &format!("{KEY}:{}", &sig[1..])),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn presence_channel_golden() {
        let data = r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#;
        let signed = channel_auth_string("1234.1234", "presence-foobar", Some(data));
        assert_eq!(
            hmac_sha256_hex(SECRET, &signed),
            "31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80"
        );
    }

    #[test]
    fn signin_golden() {
        let signed = signin_auth_string("1234.1234", r#"{"id":"12345"}"#);
        assert_eq!(
            hmac_sha256_hex(SECRET, &signed),
            "4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba"
        );
    }

    #[test]
    fn upper_case_hex_is_accepted_and_wrong_length_refused() {
        let signed = "x";
        let sig = hmac_sha256_hex(SECRET, signed);
        assert!(verify_hex_signature(SECRET, signed, &sig.to_uppercase()));
        assert!(!verify_hex_signature(SECRET, signed, &sig[..10]));
    }
}
