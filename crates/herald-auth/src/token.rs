//! Bearer tokens: JWT verification (HS256 by default, RS256/ES256 with a public key) and minting.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, encode, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The signing algorithms Herald accepts; exactly one is configured, so no confusion is possible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Algorithm {
    HS256,
    RS256,
    ES256,
}

impl Algorithm {
    fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Algorithm::HS256 => jsonwebtoken::Algorithm::HS256,
            Algorithm::RS256 => jsonwebtoken::Algorithm::RS256,
            Algorithm::ES256 => jsonwebtoken::Algorithm::ES256,
        }
    }
}

/// How tokens are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSettings {
    pub algorithm: Algorithm,
    /// HS256 shared secret.
    pub secret: Option<String>,
    /// RS256/ES256 public key, PEM.
    pub public_key_pem: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway_secs: u64,
}

/// Why a token was refused. The messages never include the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no bearer token")]
    Missing,
    #[error("token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLong,
    #[error("token is malformed")]
    Malformed,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token algorithm is not the configured one")]
    WrongAlgorithm,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token issuer is not accepted")]
    WrongIssuer,
    #[error("token audience is not accepted")]
    WrongAudience,
    #[error("token lacks the {0} claim")]
    MissingClaim(&'static str),
    #[error("token settings are invalid: {0}")]
    Settings(String),
}

/// The verified user.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub user_id: String,
    pub organization_id: Option<String>,
    pub roles: Vec<String>,
    pub name: Option<String>,
    /// Every claim, for `user_info` built from configured claim names.
    pub claims: Map<String, Value>,
}

impl Identity {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|held| held == role)
    }
}

#[derive(Debug, Deserialize)]
struct RawClaims {
    #[serde(default)]
    sub: Option<Value>,
    #[serde(default)]
    organization_id: Option<Value>,
    #[serde(default)]
    roles: Option<Value>,
    #[serde(default)]
    name: Option<Value>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// Checks tokens against the configured key, algorithm, issuer, audience and clock.
#[derive(Clone)]
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

/// Largest accepted clock leeway. The JWT library computes `now - leeway` and `now + leeway` in
/// unchecked `u64`, so a leeway near `now` or `u64::MAX` would wrap; a day is far beyond any clock skew.
pub const MAX_LEEWAY_SECS: u64 = 86_400;

impl TokenVerifier {
    pub fn new(settings: &TokenSettings) -> Result<TokenVerifier, TokenError> {
        if settings.leeway_secs > MAX_LEEWAY_SECS {
            return Err(TokenError::Settings(format!("leeway_secs must be at most {MAX_LEEWAY_SECS}")));
        }
        let key = match settings.algorithm {
            Algorithm::HS256 => {
                let secret = settings
                    .secret
                    .as_deref()
                    .filter(|secret| !secret.is_empty())
                    .ok_or_else(|| TokenError::Settings("HS256 needs a secret".into()))?;
                DecodingKey::from_secret(secret.as_bytes())
            }
            Algorithm::RS256 | Algorithm::ES256 => {
                let pem = settings
                    .public_key_pem
                    .as_deref()
                    .ok_or_else(|| TokenError::Settings("RS256/ES256 need a public key".into()))?;
                let parsed = if settings.algorithm == Algorithm::RS256 {
                    DecodingKey::from_rsa_pem(pem.as_bytes())
                } else {
                    DecodingKey::from_ec_pem(pem.as_bytes())
                };
                parsed.map_err(|error| TokenError::Settings(format!("public key: {error}")))?
            }
        };
        let mut validation = Validation::new(settings.algorithm.jwt());
        validation.algorithms = vec![settings.algorithm.jwt()];
        validation.leeway = settings.leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // `sub` is checked below: platforms such as tymon/jwt-auth send numeric ids, which the
        // library's own check refuses. The library checks `iss` and `aud` only when the token has
        // them, so a configured issuer or audience must also be required.
        let mut required = vec!["exp"];
        if settings.issuer.is_some() {
            required.push("iss");
        }
        if settings.audience.is_some() {
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        match &settings.issuer {
            Some(issuer) => validation.set_issuer(&[issuer]),
            None => validation.iss = None,
        }
        match &settings.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        Ok(TokenVerifier { key, validation })
    }

    /// Verifies a token (without the `Bearer ` prefix) into an identity.
    pub fn verify(&self, token: &str) -> Result<Identity, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLong);
        }
        let data = decode::<RawClaims>(token, &self.key, &self.validation).map_err(map_error)?;
        let claims = data.claims;
        let user_id = id_claim(claims.sub).ok_or(TokenError::MissingClaim("sub"))?;
        let organization_id = id_claim(claims.organization_id);
        let roles = match claims.roles {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(roles)) => {
                roles.into_iter().filter_map(|role| role.as_str().map(str::to_owned)).collect()
            }
            Some(Value::String(role)) => vec![role],
            Some(_) => return Err(TokenError::Malformed),
        };
        let name = claims.name.as_ref().and_then(Value::as_str).map(str::to_owned);
        let mut all = claims.rest;
        all.insert("sub".into(), Value::String(user_id.clone()));
        if let Some(name) = claims.name {
            all.insert("name".into(), name);
        }
        if let Some(organization) = &organization_id {
            all.insert("organization_id".into(), Value::String(organization.clone()));
        }
        all.insert("roles".into(), Value::from(roles.clone()));
        Ok(Identity { user_id, organization_id, roles, name, claims: all })
    }
}

fn id_claim(value: Option<Value>) -> Option<String> {
    match value? {
        Value::String(id) if !id.is_empty() && id.len() <= 128 => Some(id),
        Value::Number(id) => Some(id.to_string()),
        _ => None,
    }
}

fn map_error(error: jsonwebtoken::errors::Error) -> TokenError {
    match error.kind() {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => TokenError::WrongAlgorithm,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) => TokenError::MissingClaim(match claim.as_str() {
            "exp" => "exp",
            "sub" => "sub",
            "iss" => "iss",
            "aud" => "aud",
            _ => "required",
        }),
        _ => TokenError::Malformed,
    }
}

/// Mints an HS256 token for `user_id` valid `ttl_secs` from now (development and tests).
pub fn mint_hs256(
    secret: &str,
    user_id: &str,
    organization_id: Option<&str>,
    roles: &[String],
    name: Option<&str>,
    ttl_secs: u64,
) -> Result<String, TokenError> {
    encode_hs256(secret, &identity_claims(user_id, organization_id, roles, name, ttl_secs))
}

/// Mints a token that a verifier with `settings` accepts: HS256 with their secret, and their
/// issuer and audience when they are set (`herald token`, `herald test-broadcast`).
pub fn mint_for(
    settings: &TokenSettings,
    user_id: &str,
    organization_id: Option<&str>,
    roles: &[String],
    name: Option<&str>,
    ttl_secs: u64,
) -> Result<String, TokenError> {
    let secret = match (settings.algorithm, settings.secret.as_deref()) {
        (Algorithm::HS256, Some(secret)) if !secret.is_empty() => secret,
        _ => return Err(TokenError::Settings("minting needs HS256 and its secret".into())),
    };
    let mut claims = identity_claims(user_id, organization_id, roles, name, ttl_secs);
    if let Some(issuer) = &settings.issuer {
        claims.insert("iss".into(), Value::String(issuer.clone()));
    }
    if let Some(audience) = &settings.audience {
        claims.insert("aud".into(), Value::String(audience.clone()));
    }
    encode_hs256(secret, &claims)
}

fn identity_claims(
    user_id: &str,
    organization_id: Option<&str>,
    roles: &[String],
    name: Option<&str>,
    ttl_secs: u64,
) -> Map<String, Value> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs());
    let mut claims = Map::new();
    claims.insert("sub".into(), Value::String(user_id.to_owned()));
    if let Some(organization) = organization_id {
        claims.insert("organization_id".into(), Value::String(organization.to_owned()));
    }
    claims.insert("roles".into(), Value::from(roles.to_vec()));
    if let Some(name) = name {
        claims.insert("name".into(), Value::String(name.to_owned()));
    }
    claims.insert("iat".into(), Value::from(now));
    claims.insert("exp".into(), Value::from(now.saturating_add(ttl_secs)));
    claims
}

fn encode_hs256(secret: &str, claims: &Map<String, Value>) -> Result<String, TokenError> {
    encode(&Header::new(jsonwebtoken::Algorithm::HS256), claims, &EncodingKey::from_secret(secret.as_bytes()))
        .map_err(|error| TokenError::Settings(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64_free::encode_segment;

    mod base64_free {
        //! Just enough base64url for forging headers in tests.
        pub(super) fn encode_segment(bytes: &[u8]) -> String {
            const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let mut out = String::new();
            for chunk in bytes.chunks(3) {
                let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
                let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
                for i in 0..=chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                }
            }
            out
        }
    }

    fn hs(secret: &str) -> TokenVerifier {
        TokenVerifier::new(&TokenSettings {
            algorithm: Algorithm::HS256,
            secret: Some(secret.into()),
            public_key_pem: None,
            issuer: None,
            audience: None,
            leeway_secs: 5,
        })
        .expect("valid settings")
    }

    #[test]
    fn extreme_exp_and_nbf_claims_are_refused_without_wrapping() {
        let verifier = hs("k");
        let cases = [
            (serde_json::json!({ "sub": "1", "exp": 0 }), TokenError::Expired),
            (serde_json::json!({ "sub": "1", "exp": u64::MAX, "nbf": u64::MAX }), TokenError::NotYetValid),
            (serde_json::json!({ "sub": "1", "exp": i64::MIN }), TokenError::MissingClaim("exp")),
            (serde_json::json!({ "sub": "1", "exp": -1 }), TokenError::MissingClaim("exp")),
            (serde_json::json!({ "sub": "1", "exp": 1e300 }), TokenError::MissingClaim("exp")),
            (serde_json::json!({ "sub": "1", "exp": "soon" }), TokenError::MissingClaim("exp")),
            (serde_json::json!({ "sub": "1", "exp": now() + 60, "nbf": -5 }), TokenError::Malformed),
        ];
        // An exp that is not a u64 of seconds is, to the JWT library, no exp at all.
        for (claims, expected) in cases {
            assert_eq!(verifier.verify(&sign(&claims, "k")).map(|_| ()), Err(expected), "{claims}");
        }
        let forever = serde_json::json!({ "sub": "1", "exp": u64::MAX });
        assert!(verifier.verify(&sign(&forever, "k")).is_ok(), "a far exp is the issuer's choice");
    }

    #[test]
    fn a_leeway_that_could_wrap_the_clock_is_a_settings_error() {
        let settings = |leeway_secs| TokenSettings {
            algorithm: Algorithm::HS256,
            secret: Some("k".into()),
            public_key_pem: None,
            issuer: None,
            audience: None,
            leeway_secs,
        };
        assert!(TokenVerifier::new(&settings(MAX_LEEWAY_SECS)).is_ok());
        for leeway in [MAX_LEEWAY_SECS + 1, now(), u64::MAX] {
            assert!(
                matches!(TokenVerifier::new(&settings(leeway)), Err(TokenError::Settings(_))),
                "{leeway}"
            );
        }
        assert!(mint_hs256("k", "1", None, &[], None, u64::MAX).is_ok(), "exp saturates");
    }

    fn now() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
    }

    fn sign(claims: &Value, secret: &str) -> String {
        encode(
            &Header::new(jsonwebtoken::Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("encodes")
    }

    #[test]
    fn minted_tokens_verify_into_identities() {
        let token =
            mint_hs256("s3cret", "42", Some("7"), &["csr_admin".into()], Some("Ada"), 60).expect("mints");
        let identity = hs("s3cret").verify(&token).expect("verifies");
        assert_eq!(identity.user_id, "42");
        assert_eq!(identity.organization_id.as_deref(), Some("7"));
        assert!(identity.has_role("csr_admin"));
        assert_eq!(identity.name.as_deref(), Some("Ada"));
    }

    #[test]
    fn numeric_ids_become_strings() {
        let token = sign(&serde_json::json!({ "sub": 42, "organization_id": 7, "exp": now() + 60 }), "k");
        let identity = hs("k").verify(&token).expect("verifies");
        assert_eq!((identity.user_id.as_str(), identity.organization_id.as_deref()), ("42", Some("7")));
    }

    #[test]
    fn attacks_are_refused() {
        let verifier = hs("k");
        let good = serde_json::json!({ "sub": "1", "exp": now() + 60 });
        assert_eq!(verifier.verify(&sign(&good, "other")), Err(TokenError::BadSignature));
        let expired = serde_json::json!({ "sub": "1", "exp": now() - 60 });
        assert_eq!(verifier.verify(&sign(&expired, "k")), Err(TokenError::Expired));
        let within_leeway = serde_json::json!({ "sub": "1", "exp": now() - 2 });
        assert!(verifier.verify(&sign(&within_leeway, "k")).is_ok());
        let future = serde_json::json!({ "sub": "1", "exp": now() + 600, "nbf": now() + 300 });
        assert_eq!(verifier.verify(&sign(&future, "k")), Err(TokenError::NotYetValid));
        let no_exp = serde_json::json!({ "sub": "1" });
        assert_eq!(verifier.verify(&sign(&no_exp, "k")), Err(TokenError::MissingClaim("exp")));
        let no_sub = serde_json::json!({ "exp": now() + 60 });
        assert_eq!(verifier.verify(&sign(&no_sub, "k")), Err(TokenError::MissingClaim("sub")));
        assert_eq!(verifier.verify("not.a.token"), Err(TokenError::Malformed));
        assert_eq!(verifier.verify("garbage"), Err(TokenError::Malformed));
        assert_eq!(verifier.verify(""), Err(TokenError::Missing));
        assert_eq!(verifier.verify(&"a".repeat(MAX_TOKEN_BYTES + 1)), Err(TokenError::TooLong));
    }

    #[test]
    fn alg_none_is_refused() {
        let header = encode_segment(br#"{"alg":"none","typ":"JWT"}"#);
        let body = encode_segment(format!(r#"{{"sub":"1","exp":{}}}"#, now() + 60).as_bytes());
        let verifier = hs("k");
        assert!(verifier.verify(&format!("{header}.{body}.")).is_err());
        assert!(verifier.verify(&format!("{header}.{body}")).is_err());
    }

    #[test]
    fn hs256_tokens_are_refused_by_an_rs256_verifier() {
        // Algorithm confusion: an attacker signs HS256 with the public key as the HMAC secret.
        let pem = include_str!("../tests/keys/rsa_public.pem");
        let verifier = TokenVerifier::new(&TokenSettings {
            algorithm: Algorithm::RS256,
            secret: None,
            public_key_pem: Some(pem.into()),
            issuer: None,
            audience: None,
            leeway_secs: 0,
        })
        .expect("valid key");
        let forged = sign(&serde_json::json!({ "sub": "1", "exp": now() + 60 }), pem);
        assert_eq!(verifier.verify(&forged), Err(TokenError::WrongAlgorithm));
        let private = include_str!("../tests/keys/rsa_private.pem");
        let genuine = encode(
            &Header::new(jsonwebtoken::Algorithm::RS256),
            &serde_json::json!({ "sub": "9", "exp": now() + 60 }),
            &EncodingKey::from_rsa_pem(private.as_bytes()).expect("private key"),
        )
        .expect("signs");
        assert_eq!(verifier.verify(&genuine).expect("verifies").user_id, "9");
    }

    #[test]
    fn issuer_and_audience_are_checked_when_configured() {
        let verifier = TokenVerifier::new(&TokenSettings {
            algorithm: Algorithm::HS256,
            secret: Some("k".into()),
            public_key_pem: None,
            issuer: Some("acme".into()),
            audience: Some("herald".into()),
            leeway_secs: 0,
        })
        .expect("valid");
        let exp = now() + 60;
        let good = serde_json::json!({ "sub": "1", "exp": exp, "iss": "acme", "aud": "herald" });
        assert!(verifier.verify(&sign(&good, "k")).is_ok());
        let bad_iss = serde_json::json!({ "sub": "1", "exp": exp, "iss": "evil", "aud": "herald" });
        assert_eq!(verifier.verify(&sign(&bad_iss, "k")), Err(TokenError::WrongIssuer));
        let bad_aud = serde_json::json!({ "sub": "1", "exp": exp, "iss": "acme", "aud": "other" });
        assert_eq!(verifier.verify(&sign(&bad_aud, "k")), Err(TokenError::WrongAudience));
    }

    #[test]
    fn tokens_up_to_8_kib_are_parsed() {
        // docs/authorization.md: tokens over 8 KiB are refused before parsing.
        let verifier = hs("k");
        assert_eq!(verifier.verify(&"a".repeat(8 * 1024)), Err(TokenError::Malformed));
        assert_eq!(verifier.verify(&"a".repeat(8 * 1024 + 1)), Err(TokenError::TooLong));
        let padded = |pad: usize| {
            sign(&serde_json::json!({ "sub": "1", "exp": now() + 60, "pad": "x".repeat(pad) }), "k")
        };
        let mut pad = (8 * 1024 - padded(0).len()) * 3 / 4 + 4;
        while padded(pad).len() > 8 * 1024 {
            pad -= 1;
        }
        let token = padded(pad);
        assert!(token.len() > 8 * 1024 - 4, "{} bytes", token.len());
        assert!(verifier.verify(&token).is_ok(), "a valid token of {} bytes", token.len());
    }

    #[test]
    fn user_ids_are_required_and_at_most_128_characters() {
        let verifier = hs("k");
        let with_sub = |sub: &str| sign(&serde_json::json!({ "sub": sub, "exp": now() + 60 }), "k");
        assert_eq!(verifier.verify(&with_sub("")), Err(TokenError::MissingClaim("sub")));
        let longest = "u".repeat(128);
        assert_eq!(verifier.verify(&with_sub(&longest)).expect("128 characters").user_id, longest);
        assert_eq!(verifier.verify(&with_sub(&"u".repeat(129))), Err(TokenError::MissingClaim("sub")));
    }

    #[test]
    fn a_verifier_prints_its_algorithm_never_its_secret() {
        let printed = format!("{:?}", hs("s3cret-key"));
        assert!(printed.contains("TokenVerifier") && printed.contains("HS256"), "{printed}");
        assert!(!printed.contains("s3cret-key"), "{printed}");
    }

    #[test]
    fn a_token_without_the_configured_issuer_or_audience_is_refused() {
        let settings = TokenSettings {
            algorithm: Algorithm::HS256,
            secret: Some("k".into()),
            public_key_pem: None,
            issuer: Some("acme".into()),
            audience: Some("herald".into()),
            leeway_secs: 0,
        };
        let verifier = TokenVerifier::new(&settings).expect("valid");
        let exp = now() + 60;
        let no_iss = serde_json::json!({ "sub": "1", "exp": exp, "aud": "herald" });
        assert_eq!(verifier.verify(&sign(&no_iss, "k")), Err(TokenError::MissingClaim("iss")));
        let no_aud = serde_json::json!({ "sub": "1", "exp": exp, "iss": "acme" });
        assert_eq!(verifier.verify(&sign(&no_aud, "k")), Err(TokenError::MissingClaim("aud")));
        let numeric_iss = serde_json::json!({ "sub": "1", "exp": exp, "iss": 7, "aud": "herald" });
        assert_eq!(verifier.verify(&sign(&numeric_iss, "k")), Err(TokenError::MissingClaim("iss")));
        let minted = mint_for(&settings, "42", None, &[], None, 60).expect("mints");
        assert_eq!(verifier.verify(&minted).expect("carries iss and aud").user_id, "42");
        // Without an issuer or audience configured, neither claim is needed.
        assert!(hs("k").verify(&sign(&serde_json::json!({ "sub": "1", "exp": exp }), "k")).is_ok());
    }

    #[test]
    fn minting_for_settings_needs_hs256_and_a_secret() {
        let settings = |algorithm, secret: Option<&str>| TokenSettings {
            algorithm,
            secret: secret.map(str::to_owned),
            public_key_pem: None,
            issuer: None,
            audience: None,
            leeway_secs: 0,
        };
        for (algorithm, secret) in
            [(Algorithm::HS256, None), (Algorithm::HS256, Some("")), (Algorithm::RS256, Some("k"))]
        {
            let minted = mint_for(&settings(algorithm, secret), "42", None, &[], None, 60);
            assert!(matches!(minted, Err(TokenError::Settings(_))), "{algorithm:?} {secret:?}");
        }
        let minted =
            mint_for(&settings(Algorithm::HS256, Some("k")), "42", None, &[], None, 60).expect("mints");
        assert_eq!(hs("k").verify(&minted).expect("verifies").user_id, "42");
    }
}
