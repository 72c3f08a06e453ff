//! Channel policies: which identities may subscribe to which channels.
//!
//! A policy is a channel pattern with `{placeholders}` and a list of allow terms; the first
//! policy whose pattern matches decides, and a channel no policy matches is refused.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::token::Identity;

/// The platform's admin roles.
pub const ADMIN_ROLES: [&str; 4] = ["super_admin", "csr_admin", "finance_admin", "hr_manager"];

/// A policy as written in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// Channel name without the `private-`/`presence-` prefix, e.g. `organization.{organizationId}`.
    pub channel: String,
    /// Allow terms; any one that holds allows the subscription:
    /// `user:{p}`, `organization:{p}`, `campaign-organization:{p}`, `role:NAME`,
    /// `own-admin-role:{p}`, `admin`, `authenticated`.
    pub allow: Vec<String>,
}

/// The platform's rules (shared/DESIGN.md, "Channel policies").
pub fn default_policies() -> Vec<PolicySpec> {
    let spec = |channel: &str, allow: &[&str]| PolicySpec {
        channel: channel.into(),
        allow: allow.iter().map(|term| (*term).to_owned()).collect(),
    };
    vec![
        spec("user.notifications.{userId}", &["user:{userId}"]),
        spec(
            "organization.{organizationId}",
            &["organization:{organizationId}", "role:super_admin", "role:csr_admin"],
        ),
        spec(
            "campaign.{campaignId}",
            &["campaign-organization:{campaignId}", "role:super_admin", "role:csr_admin"],
        ),
        spec("admin-dashboard", &["admin"]),
        spec("admin-role-{role}", &["own-admin-role:{role}"]),
        spec("security-alerts", &["role:super_admin"]),
        spec("compliance-notifications", &["role:super_admin", "role:csr_admin"]),
        spec("payment-notifications", &["role:super_admin", "role:finance_admin"]),
    ]
}

/// Why a policy file was refused; each names the policy and term.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("policies[{index}].channel: {problem}")]
    Pattern { index: usize, problem: String },
    #[error("policies[{index}].allow: {term:?}: {problem}")]
    Term { index: usize, term: String, problem: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Placeholder(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    User(String),
    Organization(String),
    CampaignOrganization(String),
    Role(String),
    OwnAdminRole(String),
    Admin,
    Authenticated,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Policy {
    pattern: String,
    segments: Vec<Segment>,
    terms: Vec<Term>,
}

/// A channel matched by a policy, with its placeholder values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match<'a> {
    policy: &'a Policy,
    bindings: BTreeMap<String, String>,
}

impl Match<'_> {
    /// The pattern of the policy that decides, for logs, metrics and 403 bodies.
    pub fn policy(&self) -> &str {
        &self.policy.pattern
    }

    /// The campaign whose organization the caller must look up before [`Match::decide`].
    pub fn campaign_to_look_up(&self) -> Option<&str> {
        self.policy.terms.iter().find_map(|term| match term {
            Term::CampaignOrganization(placeholder) => self.bindings.get(placeholder).map(String::as_str),
            _ => None,
        })
    }

    /// Decides for `identity`; `campaign_organization` is the looked-up owner, if known.
    pub fn decide(&self, identity: &Identity, campaign_organization: Option<&str>) -> Decision {
        let bound = |placeholder: &String| self.bindings.get(placeholder).map(String::as_str);
        let allowed = self.policy.terms.iter().any(|term| match term {
            Term::User(placeholder) => bound(placeholder) == Some(identity.user_id.as_str()),
            Term::Organization(placeholder) => {
                identity.organization_id.is_some()
                    && bound(placeholder) == identity.organization_id.as_deref()
            }
            Term::CampaignOrganization(_) => {
                identity.organization_id.is_some()
                    && campaign_organization == identity.organization_id.as_deref()
            }
            Term::Role(role) => identity.has_role(role),
            Term::OwnAdminRole(placeholder) => {
                bound(placeholder).is_some_and(|role| ADMIN_ROLES.contains(&role) && identity.has_role(role))
            }
            Term::Admin => ADMIN_ROLES.iter().any(|role| identity.has_role(role)),
            Term::Authenticated => true,
        });
        if allowed {
            Decision::Allowed { policy: self.policy.pattern.clone() }
        } else {
            Decision::Denied { policy: Some(self.policy.pattern.clone()) }
        }
    }
}

/// The outcome of a policy check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allowed {
        policy: String,
    },
    /// `policy` is `None` when no policy matches the channel.
    Denied {
        policy: Option<String>,
    },
}

/// The ordered policies in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySet {
    policies: Vec<Policy>,
}

impl PolicySet {
    /// Builds the set: `configured` policies first (replacing defaults with the same pattern),
    /// then the remaining defaults. Every bad pattern or term is reported.
    pub fn new(configured: &[PolicySpec], with_defaults: bool) -> Result<PolicySet, Vec<PolicyError>> {
        let mut specs: Vec<PolicySpec> = configured.to_vec();
        if with_defaults {
            for default in default_policies() {
                if !specs.iter().any(|spec| spec.channel == default.channel) {
                    specs.push(default);
                }
            }
        }
        let mut errors = Vec::new();
        let mut policies = Vec::new();
        for (index, spec) in specs.iter().enumerate() {
            match parse_policy(index, spec) {
                Ok(policy) => policies.push(policy),
                Err(mut problems) => errors.append(&mut problems),
            }
        }
        if errors.is_empty() {
            Ok(PolicySet { policies })
        } else {
            Err(errors)
        }
    }

    /// Finds the policy for a channel name given without its `private-`/`presence-` prefix.
    pub fn find(&self, channel: &str) -> Option<Match<'_>> {
        self.policies.iter().find_map(|policy| {
            match_segments(&policy.segments, channel).map(|bindings| Match { policy, bindings })
        })
    }

    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.policies.iter().map(|policy| policy.pattern.as_str())
    }
}

fn parse_policy(index: usize, spec: &PolicySpec) -> Result<Policy, Vec<PolicyError>> {
    let pattern_error = |problem: &str| PolicyError::Pattern { index, problem: problem.to_owned() };
    let mut segments = Vec::new();
    let mut rest = spec.channel.as_str();
    if rest.is_empty() {
        return Err(vec![pattern_error("must not be empty")]);
    }
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('{') {
            let Some((name, tail)) = after.split_once('}') else {
                return Err(vec![pattern_error("unclosed {")]);
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(vec![pattern_error("placeholder names are letters, digits and _")]);
            }
            if matches!(segments.last(), Some(Segment::Placeholder(_))) {
                return Err(vec![pattern_error("two placeholders must be separated by text")]);
            }
            segments.push(Segment::Placeholder(name.to_owned()));
            rest = tail;
        } else {
            let end = rest.find('{').unwrap_or(rest.len());
            let literal = &rest[..end];
            if literal.contains('}') {
                return Err(vec![pattern_error("unmatched }")]);
            }
            segments.push(Segment::Literal(literal.to_owned()));
            rest = &rest[end..];
        }
    }
    let placeholders: Vec<&str> = segments
        .iter()
        .filter_map(|segment| match segment {
            Segment::Placeholder(name) => Some(name.as_str()),
            Segment::Literal(_) => None,
        })
        .collect();
    let mut errors = Vec::new();
    let mut terms = Vec::new();
    if spec.allow.is_empty() {
        errors.push(PolicyError::Term {
            index,
            term: String::new(),
            problem: "at least one allow term is needed".into(),
        });
    }
    for text in &spec.allow {
        match parse_term(text, &placeholders) {
            Ok(term) => terms.push(term),
            Err(problem) => errors.push(PolicyError::Term { index, term: text.clone(), problem }),
        }
    }
    if errors.is_empty() {
        Ok(Policy { pattern: spec.channel.clone(), segments, terms })
    } else {
        Err(errors)
    }
}

fn parse_term(text: &str, placeholders: &[&str]) -> Result<Term, String> {
    let placeholder = |value: &str| -> Result<String, String> {
        let name = value
            .strip_prefix('{')
            .and_then(|inner| inner.strip_suffix('}'))
            .ok_or_else(|| format!("{value:?} must be a {{placeholder}} of the channel pattern"))?;
        if placeholders.contains(&name) {
            Ok(name.to_owned())
        } else {
            Err(format!("the channel pattern has no placeholder {{{name}}}"))
        }
    };
    match text.split_once(':') {
        None if text == "admin" => Ok(Term::Admin),
        None if text == "authenticated" => Ok(Term::Authenticated),
        Some(("user", value)) => placeholder(value).map(Term::User),
        Some(("organization", value)) => placeholder(value).map(Term::Organization),
        Some(("campaign-organization", value)) => placeholder(value).map(Term::CampaignOrganization),
        Some(("own-admin-role", value)) => placeholder(value).map(Term::OwnAdminRole),
        Some(("role", role)) if !role.is_empty() && !role.contains('{') => Ok(Term::Role(role.to_owned())),
        _ => Err("unknown rule; use user:{p}, organization:{p}, campaign-organization:{p}, role:NAME, own-admin-role:{p}, admin or authenticated".into()),
    }
}

/// Matches a channel against pattern segments; placeholders take one or more characters other
/// than `.`, up to the next literal.
fn match_segments(segments: &[Segment], channel: &str) -> Option<BTreeMap<String, String>> {
    let mut bindings = BTreeMap::new();
    let mut rest = channel;
    let mut index = 0;
    while index < segments.len() {
        match &segments[index] {
            Segment::Literal(literal) => rest = rest.strip_prefix(literal.as_str())?,
            Segment::Placeholder(name) => {
                let value = match segments.get(index + 1) {
                    Some(Segment::Literal(next)) => &rest[..rest.find(next.as_str())?],
                    _ => rest,
                };
                if value.is_empty() || value.contains('.') {
                    return None;
                }
                bindings.insert(name.clone(), value.to_owned());
                rest = &rest[value.len()..];
            }
        }
        index += 1;
    }
    rest.is_empty().then_some(bindings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn user(id: &str, organization: Option<&str>, roles: &[&str]) -> Identity {
        Identity {
            user_id: id.into(),
            organization_id: organization.map(str::to_owned),
            roles: roles.iter().map(|role| (*role).to_owned()).collect(),
            name: None,
            claims: Map::new(),
        }
    }

    fn decide(channel: &str, identity: &Identity, campaign_org: Option<&str>) -> bool {
        let set = PolicySet::new(&[], true).expect("defaults are valid");
        match set.find(channel) {
            Some(found) => matches!(found.decide(identity, campaign_org), Decision::Allowed { .. }),
            None => false,
        }
    }

    #[test]
    fn personal_channels_belong_to_their_user() {
        assert!(decide("user.notifications.42", &user("42", None, &[]), None));
        assert!(!decide("user.notifications.42", &user("43", None, &["super_admin"]), None));
        assert!(!decide("user.notifications.42.extra", &user("42", None, &[]), None));
    }

    #[test]
    fn organization_channels_admit_members_and_two_admin_roles() {
        assert!(decide("organization.7", &user("1", Some("7"), &[]), None));
        assert!(!decide("organization.7", &user("1", Some("8"), &[]), None));
        assert!(decide("organization.7", &user("1", None, &["csr_admin"]), None));
        assert!(!decide("organization.7", &user("1", None, &["finance_admin"]), None));
    }

    #[test]
    fn campaign_channels_need_the_learnt_organization() {
        let member = user("1", Some("7"), &[]);
        assert!(decide("campaign.3", &member, Some("7")));
        assert!(!decide("campaign.3", &member, Some("8")));
        assert!(!decide("campaign.3", &member, None), "unknown campaign: admins only");
        assert!(decide("campaign.3", &user("1", None, &["super_admin"]), None));
        let set = PolicySet::new(&[], true).expect("valid");
        assert_eq!(set.find("campaign.3").expect("matches").campaign_to_look_up(), Some("3"));
    }

    #[test]
    fn admin_channels_follow_roles() {
        assert!(decide("admin-dashboard", &user("1", None, &["hr_manager"]), None));
        assert!(!decide("admin-dashboard", &user("1", None, &["donor"]), None));
        assert!(decide("admin-role-csr_admin", &user("1", None, &["csr_admin"]), None));
        assert!(!decide("admin-role-csr_admin", &user("1", None, &["super_admin"]), None));
        assert!(!decide("admin-role-donor", &user("1", None, &["donor"]), None), "not an admin role");
        assert!(decide("security-alerts", &user("1", None, &["super_admin"]), None));
        assert!(!decide("security-alerts", &user("1", None, &["csr_admin"]), None));
        assert!(decide("compliance-notifications", &user("1", None, &["csr_admin"]), None));
        assert!(!decide("compliance-notifications", &user("1", None, &["finance_admin"]), None));
        assert!(decide("payment-notifications", &user("1", None, &["finance_admin"]), None));
        assert!(!decide("payment-notifications", &user("1", None, &["hr_manager"]), None));
    }

    #[test]
    fn unmatched_channels_are_refused() {
        assert!(!decide("something-else", &user("1", None, &["super_admin"]), None));
    }

    #[test]
    fn configured_policies_replace_defaults_and_bad_ones_are_named() {
        let custom = PolicySpec { channel: "admin-dashboard".into(), allow: vec!["role:super_admin".into()] };
        let set = PolicySet::new(&[custom], true).expect("valid");
        let found = set.find("admin-dashboard").expect("matches");
        assert!(matches!(found.decide(&user("1", None, &["hr_manager"]), None), Decision::Denied { .. }));

        let bad = [
            PolicySpec {
                channel: "team.{teamId}".into(),
                allow: vec!["member:{teamId}".into(), "user:{other}".into()],
            },
            PolicySpec { channel: "x.{".into(), allow: vec!["admin".into()] },
        ];
        let errors = PolicySet::new(&bad, false).expect_err("invalid");
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].to_string().starts_with("policies[0].allow: \"member:{teamId}\""));
    }

    fn only(channel: &str, allow: &[&str]) -> Result<PolicySet, Vec<PolicyError>> {
        let spec =
            PolicySpec { channel: channel.into(), allow: allow.iter().map(|t| (*t).to_owned()).collect() };
        PolicySet::new(&[spec], false)
    }

    #[test]
    fn a_decision_names_the_policy_that_decided() {
        let set = PolicySet::new(&[], true).expect("valid");
        let found = set.find("organization.7").expect("matches");
        // The 403 body and the per-policy counters carry this pattern (docs/authorization.md).
        assert_eq!(found.policy(), "organization.{organizationId}");
        assert_eq!(
            found.decide(&user("1", Some("8"), &[]), None),
            Decision::Denied { policy: Some("organization.{organizationId}".into()) }
        );
    }

    #[test]
    fn configured_policies_come_first_then_the_defaults_not_replaced() {
        let team = PolicySpec { channel: "team.{teamId}".into(), allow: vec!["authenticated".into()] };
        let dashboard = PolicySpec { channel: "admin-dashboard".into(), allow: vec!["admin".into()] };
        let set = PolicySet::new(&[team, dashboard], true).expect("valid");
        let patterns: Vec<&str> = set.patterns().collect();
        assert_eq!(
            patterns,
            [
                "team.{teamId}",
                "admin-dashboard",
                "user.notifications.{userId}",
                "organization.{organizationId}",
                "campaign.{campaignId}",
                "admin-role-{role}",
                "security-alerts",
                "compliance-notifications",
                "payment-notifications",
            ]
        );
        assert!(PolicySet::new(&[], false).expect("valid").patterns().next().is_none(), "defaults dropped");
    }

    #[test]
    fn placeholder_names_are_letters_digits_and_underscores() {
        assert!(only("team.{team_id2}", &["user:{team_id2}"]).is_ok());
        for pattern in ["team.{}", "team.{team-id}", "team.{team id}", "team.{a.b}"] {
            let errors = only(pattern, &["admin"]).expect_err(pattern);
            assert!(matches!(errors[..], [PolicyError::Pattern { index: 0, .. }]), "{pattern}: {errors:?}");
        }
    }

    #[test]
    fn authenticated_admits_any_token_and_admin_any_admin_role() {
        let anyone = only("lobby", &["authenticated"]).expect("valid");
        let found = anyone.find("lobby").expect("matches");
        assert!(matches!(found.decide(&user("1", None, &[]), None), Decision::Allowed { .. }));
        let admins = only("staff", &["admin"]).expect("valid");
        let found = admins.find("staff").expect("matches");
        assert!(matches!(found.decide(&user("1", None, &[]), None), Decision::Denied { .. }));
        assert!(matches!(found.decide(&user("1", None, &["finance_admin"]), None), Decision::Allowed { .. }));
    }

    #[test]
    fn unknown_and_incomplete_terms_are_refused() {
        for term in ["everyone", "admins", "role:", "role:{teamId}", "user:teamId", "member:{teamId}"] {
            let errors = only("team.{teamId}", &[term]).expect_err(term);
            assert!(
                matches!(&errors[..], [PolicyError::Term { index: 0, term: named, .. }] if named == term),
                "{term}: {errors:?}"
            );
        }
    }

    #[test]
    fn a_placeholder_is_one_segment_without_dots_up_to_the_next_literal() {
        // As Laravel's channel routes: `{teamId}` matches `[^.]+`.
        let set = only("team.{teamId}.chat", &["organization:{teamId}"]).expect("valid");
        let found = set.find("team.7.chat").expect("matches");
        assert!(matches!(found.decide(&user("1", Some("7"), &[]), None), Decision::Allowed { .. }));
        assert!(matches!(found.decide(&user("1", Some("7.chat"), &[]), None), Decision::Denied { .. }));
        assert!(set.find("team.7.x.chat").is_none(), "a dot inside the placeholder");
        assert!(set.find("team..chat").is_none(), "an empty placeholder");
        assert!(set.find("team.7.chat.x").is_none(), "text after the pattern");
        let defaults = PolicySet::new(&[], true).expect("valid");
        assert!(defaults.find("user.notifications.42.extra").is_none());
        assert!(defaults.find("user.notifications.").is_none());
    }
}
