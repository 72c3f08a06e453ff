//! HMAC-SHA256 signatures of the HTTP API (both halves: [`ApiSigner`] signs a request, the server
//! verifies with the same pieces), channel auth and user sign-in; body MD5.

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

/// An app's credentials on the HTTP API: the `auth_key` it sends and the secret that signs.
/// The client's half of auth_version 1.0: every signed request Herald's tools, drivers, benchmark
/// and tests send is signed here.
#[derive(Clone, Copy)]
pub struct ApiSigner<'a> {
    pub key: &'a str,
    pub secret: &'a str,
}

impl std::fmt::Debug for ApiSigner<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("ApiSigner").field("key", &self.key).finish_non_exhaustive()
    }
}

impl ApiSigner<'_> {
    /// The whole query of a signed request, in the order sent: `auth_key`, `auth_timestamp`,
    /// `auth_version=1.0`, `body_md5` when `body` is not empty, `params` as given (`info`,
    /// `status`, ...: signed too), and `auth_signature` last. The string signed sorts them by key
    /// ([`api_string_to_sign`]); values are sent as they are, for the HTTP client to escape.
    pub fn query(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        timestamp: impl std::fmt::Display,
        params: &[(&str, &str)],
    ) -> Vec<(String, String)> {
        let mut query = vec![
            ("auth_key".to_owned(), self.key.to_owned()),
            ("auth_timestamp".to_owned(), timestamp.to_string()),
            ("auth_version".to_owned(), "1.0".to_owned()),
        ];
        if !body.is_empty() {
            query.push(("body_md5".to_owned(), body_md5_hex(body)));
        }
        query.extend(params.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())));
        let signed =
            api_string_to_sign(method, path, query.iter().map(|(key, value)| (key.as_str(), value.as_str())));
        query.push(("auth_signature".to_owned(), hmac_sha256_hex(self.secret, &signed)));
        query
    }
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

    /// `pairs` as the owned query [`ApiSigner::query`] returns.
    fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect()
    }

    #[test]
    fn api_signer_golden() {
        let body = r#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        let signer = ApiSigner { key: KEY, secret: SECRET };
        assert_eq!(
            signer.query("POST", "/apps/3/events", body.as_bytes(), 1_353_088_179, &[]),
            owned(&[
                ("auth_key", KEY),
                ("auth_timestamp", "1353088179"),
                ("auth_version", "1.0"),
                ("body_md5", "ec365a775a4cd0599faeb73354201b6f"),
                ("auth_signature", "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"),
            ])
        );
    }

    /// Vectors beyond `shared/PROTOCOL.md`, computed with Python's `hmac` and `hashlib` from the
    /// strings in the comments: extra parameters are signed in key order and sent as given.
    #[test]
    fn api_signer_signs_extra_parameters_and_omits_body_md5_without_a_body() {
        let signer = ApiSigner { key: KEY, secret: SECRET };
        // GET\n/apps/3/channels\nauth_key=…&auth_timestamp=1353088179&auth_version=1.0&filter_by_prefix=presence-&info=user_count
        assert_eq!(
            signer.query(
                "GET",
                "/apps/3/channels",
                b"",
                "1353088179",
                &[("info", "user_count"), ("filter_by_prefix", "presence-")]
            ),
            owned(&[
                ("auth_key", KEY),
                ("auth_timestamp", "1353088179"),
                ("auth_version", "1.0"),
                ("info", "user_count"),
                ("filter_by_prefix", "presence-"),
                ("auth_signature", "16819168891cb5dfd72b5c7a5d3d602605b26c6ba1930033b5e2eeeb65010291"),
            ])
        );
        // POST\n/apps/3/domain-events\nauth_key=…&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec36…&status=200
        let body = r#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        let query = signer.query(
            "POST",
            "/apps/3/domain-events",
            body.as_bytes(),
            1_353_088_179,
            &[("status", "200")],
        );
        assert_eq!(query[3], ("body_md5".to_owned(), "ec365a775a4cd0599faeb73354201b6f".to_owned()));
        assert_eq!(query[4], ("status".to_owned(), "200".to_owned()));
        assert_eq!(
            query.last().map(|(key, value)| (key.as_str(), value.as_str())),
            Some(("auth_signature", "536177f625e5c875dbf93cc32358cd6b843eccb49f7c276262417c2a05133083"))
        );
    }

    #[test]
    fn api_signer_debug_never_shows_the_secret() {
        let shown = format!("{:?}", ApiSigner { key: KEY, secret: SECRET });
        assert!(shown.contains(KEY) && !shown.contains(SECRET), "{shown}");
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
