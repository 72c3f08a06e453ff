//! The `[database]`, `[auth]`, `[channels]` and `[[policies]]` sections: where data lives, how
//! bearer tokens are checked, and who may subscribe to what.

use herald_auth::{Algorithm, PolicySet, PolicySpec, TokenSettings};
use serde::{Deserialize, Serialize};

/// HS256 secret used when none is configured (development only, with a warning).
pub const DEV_JWT_SECRET: &str = "herald-development-jwt-secret";

/// Where Herald stores what must survive a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://FILE` (embedded default) or `postgres://...`; `DATABASE_URL` overrides it.
    pub url: String,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig { url: "sqlite://herald.db".into() }
    }
}

/// Bearer tokens and the `/broadcasting/*` endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The app whose key and secret sign `/broadcasting/auth` answers; empty = the first app.
    pub app_id: String,
    /// HS256 shared secret of the platform's tokens; `HERALD_JWT_SECRET` overrides it.
    pub jwt_secret: String,
    /// `HS256`, `RS256` or `ES256`; only this algorithm is accepted.
    pub algorithm: Algorithm,
    /// PEM public key for RS256/ES256.
    pub public_key_file: String,
    /// Required `iss` claim; empty = not checked.
    pub issuer: String,
    /// Required `aud` claim; empty = not checked.
    pub audience: String,
    /// Clock skew tolerated on `exp`/`nbf`, in seconds.
    pub leeway_secs: u64,
    /// Claims copied into a presence member's `user_info` and a sign-in's `user_info`.
    pub user_info_claims: Vec<String>,
    /// Base64 of 32 bytes; enables `private-encrypted-` channels (their `shared_secret`).
    pub encryption_master_key_base64: String,
    /// Browser origins allowed to call `/broadcasting/*` (CORS); `*` allows any.
    pub cors_origins: Vec<String>,
    /// Keep the platform's default policies beside the configured `[[policies]]`.
    pub default_policies: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            app_id: String::new(),
            jwt_secret: String::new(),
            algorithm: Algorithm::HS256,
            public_key_file: String::new(),
            issuer: String::new(),
            audience: String::new(),
            leeway_secs: 30,
            user_info_claims: vec!["name".into()],
            encryption_master_key_base64: String::new(),
            cors_origins: Vec::new(),
            default_policies: true,
        }
    }
}

/// Whether the admin channels are private (policy-checked) or the original public names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminVisibility {
    #[default]
    Private,
    Public,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelsConfig {
    pub admin_visibility: AdminVisibility,
}

impl AuthConfig {
    /// Token settings, reading the public key file for RS256/ES256.
    pub fn token_settings(&self) -> Result<TokenSettings, String> {
        let public_key_pem =
            match self.algorithm {
                Algorithm::HS256 => None,
                Algorithm::RS256 | Algorithm::ES256 => {
                    if self.public_key_file.is_empty() {
                        return Err("auth.public_key_file: required for RS256 and ES256".into());
                    }
                    Some(std::fs::read_to_string(&self.public_key_file).map_err(|error| {
                        format!("auth.public_key_file: {}: {error}", self.public_key_file)
                    })?)
                }
            };
        let optional = |value: &str| (!value.is_empty()).then(|| value.to_owned());
        Ok(TokenSettings {
            algorithm: self.algorithm,
            secret: optional(&self.jwt_secret),
            public_key_pem,
            issuer: optional(&self.issuer),
            audience: optional(&self.audience),
            leeway_secs: self.leeway_secs,
        })
    }

    /// The decoded encryption master key, if configured.
    pub fn encryption_master_key(&self) -> Result<Option<Vec<u8>>, String> {
        use base64::Engine as _;
        if self.encryption_master_key_base64.is_empty() {
            return Ok(None);
        }
        let key = base64::engine::general_purpose::STANDARD
            .decode(&self.encryption_master_key_base64)
            .map_err(|_| "auth.encryption_master_key_base64: not valid base64".to_owned())?;
        if key.len() != 32 {
            return Err(format!(
                "auth.encryption_master_key_base64: must decode to 32 bytes, not {}",
                key.len()
            ));
        }
        Ok(Some(key))
    }
}

/// Checks the sections; every problem names its key.
pub(crate) fn validate(
    auth: &AuthConfig,
    policies: &[PolicySpec],
    app_ids: &[&str],
    problems: &mut Vec<String>,
) {
    // An empty HS256 secret is replaced by the development secret (with a warning) at load time.
    let dev_secret = auth.algorithm == Algorithm::HS256 && auth.jwt_secret.is_empty();
    if dev_secret {
    } else if let Err(problem) = auth.token_settings().and_then(|settings| {
        herald_auth::TokenVerifier::new(&settings).map(drop).map_err(|error| format!("auth: {error}"))
    }) {
        problems.push(problem);
    }
    if let Err(problem) = auth.encryption_master_key() {
        problems.push(problem);
    }
    if !auth.app_id.is_empty() && !app_ids.contains(&auth.app_id.as_str()) {
        problems.push(format!("auth.app_id: {:?} is not one of the configured apps", auth.app_id));
    }
    if let Err(errors) = PolicySet::new(policies, auth.default_policies) {
        problems.extend(errors.iter().map(ToString::to_string));
    }
}
