//! Who a user is and what they may subscribe to.
//!
//! `token` verifies the platform's bearer tokens (JWT) into an [`Identity`]; `policy` holds the
//! channel policies (pattern with `{placeholders}` → allow terms) and decides subscriptions.
//! No IO: the campaign → organization lookup a policy may need is done by the caller.

mod policy;
mod token;

pub use policy::{default_policies, Decision, Match, PolicyError, PolicySet, PolicySpec, ADMIN_ROLES};
pub use token::{
    mint_for, mint_hs256, Algorithm, Identity, TokenError, TokenSettings, TokenVerifier, MAX_LEEWAY_SECS,
    MAX_TOKEN_BYTES,
};
