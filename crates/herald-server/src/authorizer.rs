//! The authorizer: bearer tokens checked against the configured algorithm, channel policies
//! decided (with campaign owners looked up in the notification records), answers signed with the auth app's
//! secret, and the CORS origins. Built once at start-up; the endpoints in `authorize` use it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::http::{header, HeaderMap};
use herald_auth::{Decision, Identity, PolicySet, TokenError, TokenVerifier};
use herald_protocol::{hmac_sha256_hex, ChannelName};
use serde_json::{Map, Value};
use tracing::{debug, error};

use crate::config::Config;
use crate::error::ApiError;
use crate::tenant::Tenant;

/// Everything the authorization endpoints need, built once at start-up.
#[derive(Debug)]
pub struct Authorizer {
    verifier: TokenVerifier,
    policies: PolicySet,
    /// The app whose key and secret sign the answers.
    pub(crate) app: Arc<Tenant>,
    pub(crate) master_key: Option<Vec<u8>>,
    user_info_claims: Vec<String>,
    cors_origins: Vec<String>,
    /// Decisions per policy pattern: (allowed, denied). Bounded by the number of policies (+1).
    decisions: Mutex<BTreeMap<String, (u64, u64)>>,
}

/// Pattern recorded for channels that no policy matches.
const NO_POLICY: &str = "(no policy)";

impl Authorizer {
    /// Built from a validated configuration; `apps` are the server's apps.
    pub(crate) fn new(config: &Config, apps: &[Arc<Tenant>]) -> anyhow::Result<Authorizer> {
        use anyhow::Context as _;
        let settings = config.auth.token_settings().map_err(anyhow::Error::msg)?;
        let verifier = TokenVerifier::new(&settings).context("auth")?;
        let policies = PolicySet::new(&config.policies, config.auth.default_policies)
            .map_err(|errors| anyhow::anyhow!("{}", errors[0]))?;
        let app = if config.auth.app_id.is_empty() {
            apps.first()
        } else {
            apps.iter().find(|app| app.config.id == config.auth.app_id)
        }
        .context("auth.app_id names no configured app")?
        .clone();
        Ok(Authorizer {
            verifier,
            policies,
            app,
            master_key: config.auth.encryption_master_key().map_err(anyhow::Error::msg)?,
            user_info_claims: config.auth.user_info_claims.clone(),
            cors_origins: config.auth.cors_origins.clone(),
            decisions: Mutex::new(BTreeMap::new()),
        })
    }

    /// Verifies the request's `Authorization: Bearer` token.
    pub fn identify(&self, headers: &HeaderMap) -> Result<Identity, ApiError> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or(ApiError::Token(TokenError::Missing))?;
        self.verifier.verify(token).map_err(ApiError::Token)
    }

    /// Decides whether `identity` may subscribe to `channel` (a private, encrypted or presence
    /// name), looking up the campaign's organization when the policy needs it.
    pub async fn decide(
        &self,
        records: &herald_notify::Records,
        identity: &Identity,
        channel: &ChannelName,
    ) -> Result<(), ApiError> {
        let base = channel.base_name();
        let Some(found) = self.policies.find(base) else {
            self.count(NO_POLICY, false);
            debug!(channel = %channel, user = ?identity.user_id, "no policy matches: denied");
            return Err(ApiError::Forbidden { policy: None });
        };
        let organization = match found.campaign_to_look_up() {
            Some(campaign) => records.campaign_owner(campaign).await.map_err(|cause| {
                error!(error = %cause, "campaign lookup failed");
                ApiError::BackendUnavailable
            })?,
            None => None,
        };
        let decision = found.decide(identity, organization.as_deref());
        let allowed = matches!(decision, Decision::Allowed { .. });
        self.count(found.policy(), allowed);
        debug!(channel = %channel, user = ?identity.user_id, policy = found.policy(), allowed, "authorization decision");
        if allowed {
            Ok(())
        } else {
            Err(ApiError::Forbidden { policy: Some(found.policy().to_owned()) })
        }
    }

    fn count(&self, policy: &str, allowed: bool) {
        let mut decisions = self.decisions.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = decisions.entry(policy.to_owned()).or_default();
        if allowed {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
    }

    /// `(policy, allowed, denied)` for every policy that decided something.
    pub fn decision_counts(&self) -> Vec<(String, u64, u64)> {
        let decisions = self.decisions.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        decisions.iter().map(|(policy, (allowed, denied))| (policy.clone(), *allowed, *denied)).collect()
    }

    /// `user_info` built from the configured claims.
    pub(crate) fn user_info(&self, identity: &Identity) -> Value {
        let mut info = Map::new();
        for claim in &self.user_info_claims {
            if let Some(value) = identity.claims.get(claim) {
                info.insert(claim.clone(), value.clone());
            }
        }
        Value::Object(info)
    }

    pub(crate) fn sign(&self, message: &str) -> String {
        format!("{}:{}", self.app.config.key, hmac_sha256_hex(&self.app.config.secret, message))
    }

    /// What CORS grants `origin`: an origin listed exactly may send credentials; `*` lets any
    /// origin read answers without credentials (a wildcard never reflects an origin with them).
    pub(crate) fn cors_grant(&self, origin: &str) -> Option<CorsGrant> {
        if self.cors_origins.iter().any(|allowed| allowed != "*" && allowed.trim_end_matches('/') == origin) {
            Some(CorsGrant::Exact)
        } else if self.cors_origins.iter().any(|allowed| allowed == "*") {
            Some(CorsGrant::Any)
        } else {
            None
        }
    }
}

/// How far CORS lets an origin in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CorsGrant {
    /// Listed by name: its answer names it and allows credentials (cookies).
    Exact,
    /// Allowed only through `*`: `Access-Control-Allow-Origin: *`, never with credentials.
    Any,
}
