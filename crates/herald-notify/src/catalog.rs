//! The event catalog: each domain event type's fields, and the broadcasts, channels, lane and
//! inbox notification it turns into (shared/DESIGN.md, "Event catalog").

use herald_store::Lane;
use serde_json::{json, Map, Value};

use crate::amount::Amount;
use crate::fields::{Check, FieldError, Fields};

/// The domain event types Herald accepts.
pub const EVENT_TYPES: [&str; 8] = [
    "donation.large_received",
    "campaign.milestone_reached",
    "campaign.approval_needed",
    "payment.failed",
    "security.alert",
    "system.maintenance",
    "compliance.issue",
    "notification.created",
];

const SEVERITIES: [&str; 4] = ["low", "medium", "high", "critical"];
const PRIORITIES: [&str; 4] = ["low", "normal", "high", "urgent"];

/// Settings routing depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogSettings {
    /// Donations below this amount (when the event gives no `threshold`) are not broadcast.
    pub large_donation_threshold: Amount,
}

impl Default for CatalogSettings {
    fn default() -> Self {
        CatalogSettings { large_donation_threshold: Amount::parse("1000").expect("1000 is an amount") }
    }
}

/// One broadcast an event turns into.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedBroadcast {
    /// The Pusher event name (`donation.large`); Echo listens with a leading dot.
    pub event_name: &'static str,
    /// Logical channel names (`organization.7`).
    pub channels: Vec<String>,
    pub lane: Lane,
    pub priority: String,
    /// The event's fields, without `id`, `type`, `priority`, `created_at` (added when stored).
    pub fields: Map<String, Value>,
    /// The user whose personal channel is among `channels`, and the notification type their
    /// preferences are keyed by.
    pub personal: Option<(String, String)>,
}

/// The inbox notification an event stores for one user.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedNotification {
    /// The platform's own notification id, when it gave one.
    pub id: Option<String>,
    pub user_id: String,
    pub notification_type: String,
    pub title: String,
    pub message: String,
    pub priority: String,
    pub data: Value,
    pub action_url: Option<String>,
}

/// What one valid domain event becomes.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub broadcast: Option<PlannedBroadcast>,
    pub notification: Option<PlannedNotification>,
    /// Why nothing is broadcast (e.g. a donation below its threshold).
    pub ignored: Option<String>,
    /// `(campaign_id, organization_id)` to remember for the campaign channel policy.
    pub campaign: Option<(String, String)>,
}

/// A channel of the catalog by its logical name (`payment-notifications`,
/// `user.notifications.42`): what the notification layer stores and the policies match. Clients
/// subscribe to its `wire` name; `from_wire` reads a wire name back.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CatalogChannel(String);

impl CatalogChannel {
    /// The channel of this logical name.
    pub fn new(logical: impl Into<String>) -> CatalogChannel {
        CatalogChannel(logical.into())
    }

    /// The personal channel of a user.
    pub fn user(user_id: &str) -> CatalogChannel {
        CatalogChannel(format!("user.notifications.{user_id}"))
    }

    /// The channel a wire name (`private-payment-notifications`) or a logical name stands for.
    pub fn from_wire(name: &str) -> CatalogChannel {
        CatalogChannel(herald_protocol::base_name(name).to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// The name on the wire: Pusher's `private-` prefix on the personal channels, and on the
    /// admin channels unless `admin_channels_public` (`channels.admin_visibility = "public"`).
    pub fn wire(&self, admin_channels_public: bool) -> String {
        let logical = self.0.as_str();
        let admin = logical == "admin-dashboard"
            || logical.starts_with("admin-role-")
            || matches!(logical, "security-alerts" | "compliance-notifications" | "payment-notifications");
        let personal =
            ["user.notifications.", "organization.", "campaign."].iter().any(|p| logical.starts_with(p));
        if personal || (admin && !admin_channels_public) {
            format!("private-{logical}")
        } else {
            logical.to_owned()
        }
    }
}

/// Validates `data` for `event_type` and plans what it becomes. On refusal, every field at fault
/// (at least one), in the order the type's fields are read.
pub fn plan(event_type: &str, data: &Value, settings: &CatalogSettings) -> Result<Plan, Vec<FieldError>> {
    let data = Fields::new(data, "data").map_err(|error| vec![error])?;
    let mut check = Check::default();
    let plan = match event_type {
        "donation.large_received" => large_donation(&data, settings, &mut check),
        "campaign.milestone_reached" => milestone(&data, &mut check),
        "campaign.approval_needed" => approval_needed(&data, &mut check),
        "payment.failed" => payment_failed(&data, &mut check),
        "security.alert" => security_alert(&data, &mut check),
        "system.maintenance" => maintenance(&data, &mut check),
        "compliance.issue" => compliance_issue(&data, &mut check),
        "notification.created" => notification_created(&data, &mut check),
        other => {
            return Err(vec![FieldError {
                field: "type".into(),
                problem: format!("unknown event type {other:?}; known: {}", EVENT_TYPES.join(", ")),
            }])
        }
    };
    check.finish()?;
    plan.ok_or_else(|| unreachable_error(event_type))
}

/// Each type's function returns `None` only after recording an error; this keeps `plan` total.
fn unreachable_error(event_type: &str) -> Vec<FieldError> {
    vec![FieldError { field: "data".into(), problem: format!("is not a valid {event_type} event") }]
}

fn broadcast(
    event_name: &'static str,
    channels: Vec<String>,
    lane: Lane,
    priority: &str,
    fields: Value,
) -> PlannedBroadcast {
    let Value::Object(fields) = fields else { unreachable!("fields are built as objects") };
    PlannedBroadcast { event_name, channels, lane, priority: priority.to_owned(), fields, personal: None }
}

fn only(broadcast: PlannedBroadcast) -> Plan {
    Plan { broadcast: Some(broadcast), notification: None, ignored: None, campaign: None }
}

fn severity_priority(severity: &str) -> &'static str {
    match severity {
        "low" => "low",
        "medium" => "normal",
        "high" => "high",
        _ => "urgent",
    }
}

// Each type below reads every field through `check` (so all errors are collected), and returns
// `None` when any of them was wrong.

fn large_donation(data: &Fields<'_>, settings: &CatalogSettings, check: &mut Check) -> Option<Plan> {
    let donation_id = check.take(data.id("donation_id"));
    let amount = check.take(data.amount("amount"));
    let currency = check.take(data.currency("currency"));
    let campaign_id = check.take(data.id("campaign_id"));
    let organization_id = check.take(data.id("organization_id"));
    let donor_name = check.take(data.optional_string("donor_name"));
    let threshold = check.take(data.optional_amount("threshold"));
    if !check.is_clean() {
        return None;
    }
    let threshold = threshold.unwrap_or_else(|| settings.large_donation_threshold.clone());
    let campaign = Some((campaign_id.clone(), organization_id.clone()));
    if amount < threshold {
        return Some(Plan {
            broadcast: None,
            notification: None,
            ignored: Some(format!("amount {amount} is below the large-donation threshold {threshold}")),
            campaign,
        });
    }
    let fields = json!({
        "donation_id": donation_id, "amount": amount.to_json(), "currency": currency, "campaign_id": campaign_id,
        "organization_id": organization_id, "donor_name": donor_name, "threshold": threshold.to_json(),
    });
    let channels = vec![
        "admin-dashboard".into(),
        format!("organization.{organization_id}"),
        format!("campaign.{campaign_id}"),
    ];
    let mut plan = only(broadcast("donation.large", channels, Lane::Normal, "high", fields));
    plan.campaign = campaign;
    Some(plan)
}

fn milestone(data: &Fields<'_>, check: &mut Check) -> Option<Plan> {
    let campaign_id = check.take(data.id("campaign_id"));
    let campaign_title = check.take(data.string("campaign_title"));
    let organization_id = check.take(data.id("organization_id"));
    let milestone = check.ok(data.integer("milestone", 0, 100));
    if milestone.is_some_and(|milestone| ![25, 50, 75, 100].contains(&milestone)) {
        check.push(data.error("milestone", "must be 25, 50, 75 or 100"));
    }
    let amount_raised = check.take(data.amount("amount_raised"));
    let goal_amount = check.take(data.amount("goal_amount"));
    let currency = check.take(data.currency("currency"));
    let milestone = milestone.filter(|_| check.is_clean())?;
    let fields = json!({
        "campaign_id": campaign_id, "campaign_title": campaign_title, "organization_id": organization_id,
        "milestone": milestone, "amount_raised": amount_raised.to_json(), "goal_amount": goal_amount.to_json(), "currency": currency,
    });
    let channels = vec![
        "admin-dashboard".into(),
        format!("organization.{organization_id}"),
        format!("campaign.{campaign_id}"),
    ];
    let priority = if milestone == 100 { "high" } else { "normal" };
    let mut plan = only(broadcast("campaign.milestone", channels, Lane::Normal, priority, fields));
    plan.campaign = Some((campaign_id, organization_id));
    Some(plan)
}

fn approval_needed(data: &Fields<'_>, check: &mut Check) -> Option<Plan> {
    let campaign_id = check.take(data.id("campaign_id"));
    let campaign_title = check.take(data.string("campaign_title"));
    let organization_id = check.take(data.id("organization_id"));
    let submitted_by = check.ok(data.object("submitted_by"));
    let submitter = submitted_by
        .map(|submitted_by| (check.take(submitted_by.id("id")), check.take(submitted_by.string("name"))));
    let (submitter_id, submitter_name) = submitter.filter(|_| check.is_clean())?;
    let fields = json!({
        "campaign_id": campaign_id, "campaign_title": campaign_title, "organization_id": organization_id,
        "submitted_by": { "id": submitter_id, "name": submitter_name },
    });
    let channels =
        vec!["admin-dashboard".into(), "admin-role-csr_admin".into(), "admin-role-super_admin".into()];
    let mut plan = only(broadcast("campaign.approval_needed", channels, Lane::Normal, "high", fields));
    plan.campaign = Some((campaign_id, organization_id));
    Some(plan)
}

fn payment_failed(data: &Fields<'_>, check: &mut Check) -> Option<Plan> {
    let payment_id = check.take(data.id("payment_id"));
    let donation_id = check.take(data.id("donation_id"));
    let amount = check.take(data.amount("amount"));
    let currency = check.take(data.currency("currency"));
    let reason = check.take(data.string("reason"));
    let user_id = check.take(data.id("user_id"));
    let organization_id = check.take(data.id("organization_id"));
    if !check.is_clean() {
        return None;
    }
    let fields = json!({
        "payment_id": payment_id, "donation_id": donation_id, "amount": amount.to_json(), "currency": currency,
        "reason": reason, "user_id": user_id, "organization_id": organization_id,
    });
    let channels = vec![
        "payment-notifications".into(),
        "admin-role-finance_admin".into(),
        CatalogChannel::user(&user_id).into_string(),
    ];
    let mut planned = broadcast("payment.failed", channels, Lane::Critical, "urgent", fields.clone());
    planned.personal = Some((user_id.clone(), "payment.failed".into()));
    Some(Plan {
        broadcast: Some(planned),
        notification: Some(PlannedNotification {
            id: None,
            user_id,
            notification_type: "payment.failed".into(),
            title: "Payment failed".into(),
            message: format!("Your payment of {} {currency} failed: {reason}", amount.with_cents()),
            priority: "urgent".into(),
            data: fields,
            action_url: None,
        }),
        ignored: None,
        campaign: None,
    })
}

fn security_alert(data: &Fields<'_>, check: &mut Check) -> Option<Plan> {
    let alert_type = check.take(data.string("alert_type"));
    let message = check.take(data.string("message"));
    let severity = check.take(data.one_of("severity", &SEVERITIES));
    let details = check.take(data.free_object("details"));
    if !check.is_clean() {
        return None;
    }
    let lane = if matches!(severity.as_str(), "high" | "critical") { Lane::Critical } else { Lane::Normal };
    let priority = severity_priority(&severity);
    let fields =
        json!({ "alert_type": alert_type, "message": message, "severity": severity, "details": details });
    Some(only(broadcast("security.alert", vec!["security-alerts".into()], lane, priority, fields)))
}

fn maintenance(data: &Fields<'_>, check: &mut Check) -> Option<Plan> {
    let kind =
        check.take(data.one_of("maintenance_type", &["scheduled", "started", "completed", "emergency"]));
    let scheduled_for = check.take(data.timestamp("scheduled_for"));
    let duration = check.take(data.integer("duration_minutes", 0, 10_080));
    let services = check.take(data.strings("affected_services"));
    if !check.is_clean() {
        return None;
    }
    let lane = if kind == "emergency" { Lane::Critical } else { Lane::Normal };
    let priority = if kind == "emergency" { "urgent" } else { "normal" };
    let fields = json!({
        "maintenance_type": kind, "scheduled_for": crate::fields::rfc3339(scheduled_for),
        "duration_minutes": duration, "affected_services": services,
    });
    Some(only(broadcast("system.maintenance", vec!["system-maintenance".into()], lane, priority, fields)))
}

fn compliance_issue(data: &Fields<'_>, check: &mut Check) -> Option<Plan> {
    let issue_type = check.take(data.string("issue_type"));
    let severity = check.take(data.one_of("severity", &SEVERITIES));
    let message = check.take(data.string("message"));
    let organization_id = check.take(data.optional_id("organization_id"));
    let details = check.take(data.free_object("details"));
    if !check.is_clean() {
        return None;
    }
    let fields = json!({
        "issue_type": issue_type, "severity": severity, "message": message,
        "organization_id": organization_id, "details": details,
    });
    let channels = vec!["compliance-notifications".into(), "admin-role-csr_admin".into()];
    Some(only(broadcast("compliance.issue", channels, Lane::Normal, severity_priority(&severity), fields)))
}

fn notification_created(data: &Fields<'_>, check: &mut Check) -> Option<Plan> {
    let notification = check.ok(data.object("notification"))?;
    let id = check.take(notification.optional_id("id"));
    let user_id = check.take(notification.id("user_id"));
    let notification_type = check.take(notification.string("type"));
    let title = check.take(notification.string("title"));
    let message = check.take(notification.string("message"));
    let priority = check.take(notification.optional_one_of("priority", &PRIORITIES));
    let extra = check.take(notification.free_object("data"));
    let action_url = check.take(notification.optional_link("action_url"));
    if !check.is_clean() {
        return None;
    }
    let priority = priority.unwrap_or_else(|| "normal".into());
    let lane = if priority == "urgent" { Lane::Critical } else { Lane::Normal };
    let body = json!({
        "user_id": user_id, "type": notification_type, "title": title, "message": message,
        "priority": priority, "data": extra, "action_url": action_url,
    });
    let mut planned = broadcast(
        "notification.created",
        vec![CatalogChannel::user(&user_id).into_string()],
        lane,
        &priority,
        json!({ "notification": body }),
    );
    planned.personal = Some((user_id.clone(), notification_type.clone()));
    Some(Plan {
        broadcast: Some(planned),
        notification: Some(PlannedNotification {
            id,
            user_id,
            notification_type,
            title,
            message,
            priority,
            data: extra,
            action_url,
        }),
        ignored: None,
        campaign: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wire_name_reads_back_as_the_catalog_channel() {
        let channels = [
            "admin-dashboard",
            "admin-role-csr_admin",
            "security-alerts",
            "compliance-notifications",
            "payment-notifications",
            "organization.7",
            "campaign.3",
            "user.notifications.42",
            "system-maintenance",
        ];
        for public_admin in [false, true] {
            for logical in channels {
                let wire = CatalogChannel::new(logical).wire(public_admin);
                assert_eq!(CatalogChannel::from_wire(&wire).as_str(), logical, "{wire}");
            }
        }
    }

    fn planned(event_type: &str, data: Value) -> Result<Plan, Vec<FieldError>> {
        plan(event_type, &data, &CatalogSettings::default())
    }

    #[test]
    fn large_donations_below_the_threshold_are_ignored() {
        let data = json!({ "donation_id": 1, "amount": 500, "currency": "usd", "campaign_id": 3, "organization_id": 7 });
        let below = planned("donation.large_received", data.clone()).expect("valid");
        assert!(below.broadcast.is_none());
        assert!(below.ignored.expect("reason").contains("below"));
        let mut above = data;
        above["threshold"] = json!(100);
        let plan = planned("donation.large_received", above).expect("valid");
        let broadcast = plan.broadcast.expect("broadcast");
        assert_eq!(broadcast.channels, vec!["admin-dashboard", "organization.7", "campaign.3"]);
        assert_eq!(broadcast.fields["currency"], "USD");
        assert_eq!(plan.campaign, Some(("3".into(), "7".into())));
    }

    #[test]
    fn lanes_follow_severity_and_priority() {
        let alert = |severity: &str| {
            planned("security.alert", json!({ "alert_type": "x", "message": "m", "severity": severity }))
                .expect("valid")
                .broadcast
                .expect("broadcast")
                .lane
        };
        assert_eq!(alert("critical"), Lane::Critical);
        assert_eq!(alert("high"), Lane::Critical);
        assert_eq!(alert("medium"), Lane::Normal);
        let note = |priority: &str| {
            let data = json!({ "notification": { "user_id": 5, "type": "t", "title": "T", "message": "M", "priority": priority } });
            planned("notification.created", data).expect("valid").broadcast.expect("broadcast").lane
        };
        assert_eq!(note("urgent"), Lane::Critical);
        assert_eq!(note("low"), Lane::Normal);
    }

    #[test]
    fn invalid_fields_are_named() {
        let cases = [
            ("payment.failed", json!({}), "data.payment_id"),
            (
                "campaign.milestone_reached",
                json!({ "campaign_id": 1, "campaign_title": "t", "organization_id": 2, "milestone": 30, "amount_raised": 1, "goal_amount": 2, "currency": "EUR" }),
                "data.milestone",
            ),
            (
                "system.maintenance",
                json!({ "maintenance_type": "scheduled", "scheduled_for": "tomorrow", "duration_minutes": 5, "affected_services": [] }),
                "data.scheduled_for",
            ),
            (
                "notification.created",
                json!({ "notification": { "user_id": 1, "type": "t", "title": "T", "message": "M", "priority": "asap" } }),
                "data.notification.priority",
            ),
            (
                "campaign.approval_needed",
                json!({ "campaign_id": 1, "campaign_title": "t", "organization_id": 2, "submitted_by": { "id": 3 } }),
                "data.submitted_by.name",
            ),
            (
                "donation.large_received",
                json!({ "donation_id": 1, "amount": -5, "currency": "EUR", "campaign_id": 1, "organization_id": 2 }),
                "data.amount",
            ),
            ("nope.event", json!({}), "type"),
        ];
        for (event_type, data, field) in cases {
            let errors = planned(event_type, data).expect_err("invalid");
            assert_eq!(errors[0].field, field, "{event_type}: {errors:?}");
        }
    }

    #[test]
    fn every_invalid_field_is_named_in_reading_order() {
        let data = json!({ "campaign_id": "bad id!", "milestone": 30, "amount_raised": "-0", "goal_amount": "1e3", "submitted_by": 1 });
        let errors = planned("campaign.milestone_reached", data).expect_err("invalid");
        let fields: Vec<&str> = errors.iter().map(|error| error.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "data.campaign_id",
                "data.campaign_title",
                "data.organization_id",
                "data.milestone",
                "data.amount_raised",
                "data.goal_amount",
                "data.currency"
            ]
        );
        let nested =
            json!({ "campaign_id": 1, "campaign_title": "t", "organization_id": 2, "submitted_by": {} });
        let errors = planned("campaign.approval_needed", nested).expect_err("invalid");
        let fields: Vec<&str> = errors.iter().map(|error| error.field.as_str()).collect();
        assert_eq!(fields, ["data.submitted_by.id", "data.submitted_by.name"]);
    }

    #[test]
    fn action_urls_are_links_a_browser_cannot_run() {
        let with_url = |url: &str| {
            planned(
                "notification.created",
                json!({ "notification": { "user_id": 1, "type": "t", "title": "T", "message": "M", "action_url": url } }),
            )
        };
        for url in ["/a", "/", "https://x.example/a?b#c", "Http://x.example"] {
            assert!(with_url(url).is_ok(), "{url}");
        }
        for url in [
            "javascript:x",
            "JAVASCRIPT:x",
            " /a",
            "java\tscript:x",
            "//x.example",
            "/\\x.example",
            "data:,x",
            "x/y",
            "https://",
        ] {
            let errors = with_url(url).expect_err(url);
            assert_eq!(errors[0].field, "data.notification.action_url", "{url}");
        }
    }

    #[test]
    fn thresholds_compare_exactly() {
        let donation = |amount: &str, threshold: &str| {
            let data = json!({ "donation_id": 1, "amount": amount, "currency": "EUR", "campaign_id": 3, "organization_id": 7, "threshold": threshold });
            planned("donation.large_received", data).expect("valid").broadcast.is_some()
        };
        assert!(donation("1000.0001", "1000"));
        assert!(donation("1000.00", "1000"));
        assert!(!donation("999.9999", "1000"));
        assert!(!donation("0.1", "0.1001"));
    }

    #[test]
    fn wire_channels_follow_the_documented_table() {
        // docs/events.md, "Channels on the wire": (logical, default, admin_visibility = "public").
        let table = [
            ("admin-dashboard", "private-admin-dashboard", "admin-dashboard"),
            ("admin-role-csr_admin", "private-admin-role-csr_admin", "admin-role-csr_admin"),
            ("security-alerts", "private-security-alerts", "security-alerts"),
            ("compliance-notifications", "private-compliance-notifications", "compliance-notifications"),
            ("payment-notifications", "private-payment-notifications", "payment-notifications"),
            ("organization.7", "private-organization.7", "private-organization.7"),
            ("campaign.3", "private-campaign.3", "private-campaign.3"),
            ("user.notifications.42", "private-user.notifications.42", "private-user.notifications.42"),
            ("system-maintenance", "system-maintenance", "system-maintenance"),
        ];
        for (logical, private, public) in table {
            let channel = CatalogChannel::new(logical);
            assert_eq!(channel.wire(false), private, "{logical}");
            assert_eq!(channel.wire(true), public, "{logical} with public admin channels");
            assert_eq!(CatalogChannel::from_wire(&channel.wire(false)), channel, "{logical} read back");
        }
    }

    #[test]
    fn failed_payments_reach_finance_and_the_donor_at_once() {
        let data = json!({ "payment_id": "p-7781", "donation_id": 9003, "amount": 25, "currency": "usd",
            "reason": "card declined", "user_id": 42, "organization_id": 7 });
        let plan = planned("payment.failed", data).expect("valid");
        let broadcast = plan.broadcast.expect("broadcast");
        assert_eq!(broadcast.event_name, "payment.failed");
        assert_eq!(
            broadcast.channels,
            ["payment-notifications", "admin-role-finance_admin", "user.notifications.42"]
        );
        assert_eq!(CatalogChannel::user("42").as_str(), "user.notifications.42");
        assert_eq!((broadcast.lane, broadcast.priority.as_str()), (Lane::Critical, "urgent"));
        assert_eq!(broadcast.personal, Some(("42".into(), "payment.failed".into())));
        let inbox = plan.notification.expect("an inbox notification");
        assert_eq!(inbox.user_id, "42");
        assert_eq!(inbox.notification_type, "payment.failed");
        assert_eq!(inbox.title, "Payment failed");
        assert_eq!(inbox.message, "Your payment of 25.00 USD failed: card declined");
        assert_eq!(inbox.priority, "urgent");
        assert_eq!(inbox.action_url, None);
        assert_eq!(inbox.data, Value::Object(broadcast.fields));
    }

    #[test]
    fn priorities_follow_severity_for_alerts_and_compliance_issues() {
        let severities = [("low", "low"), ("medium", "normal"), ("high", "high"), ("critical", "urgent")];
        for (severity, priority) in severities {
            let alert =
                planned("security.alert", json!({ "alert_type": "x", "message": "m", "severity": severity }))
                    .expect("valid")
                    .broadcast
                    .expect("broadcast");
            assert_eq!(alert.priority, priority, "security.alert {severity}");
            let issue = planned(
                "compliance.issue",
                json!({ "issue_type": "x", "message": "m", "severity": severity }),
            )
            .expect("valid")
            .broadcast
            .expect("broadcast");
            assert_eq!(issue.priority, priority, "compliance.issue {severity}");
            assert_eq!(issue.lane, Lane::Normal, "compliance.issue {severity}");
        }
    }

    #[test]
    fn only_the_full_milestone_is_high_priority() {
        let milestone = |milestone: u32| {
            let data = json!({ "campaign_id": 3, "campaign_title": "t", "organization_id": 7, "milestone": milestone,
                "amount_raised": "7500.00", "goal_amount": 10000, "currency": "EUR" });
            planned("campaign.milestone_reached", data).expect("valid").broadcast.expect("broadcast").priority
        };
        assert_eq!(milestone(100), "high");
        for normal in [25, 50, 75] {
            assert_eq!(milestone(normal), "normal", "{normal}");
        }
    }

    #[test]
    fn emergency_maintenance_is_urgent_on_the_critical_lane() {
        let maintenance = |kind: &str| {
            let data = json!({ "maintenance_type": kind, "scheduled_for": "2026-12-01T03:00:00+01:00",
                "duration_minutes": 30, "affected_services": ["api", "dashboard"] });
            planned("system.maintenance", data).expect("valid").broadcast.expect("broadcast")
        };
        let emergency = maintenance("emergency");
        assert_eq!((emergency.lane, emergency.priority.as_str()), (Lane::Critical, "urgent"));
        assert_eq!(emergency.channels, ["system-maintenance"]);
        for kind in ["scheduled", "started", "completed"] {
            let planned = maintenance(kind);
            assert_eq!((planned.lane, planned.priority.as_str()), (Lane::Normal, "normal"), "{kind}");
        }
        assert_eq!(maintenance("scheduled").fields["scheduled_for"], "2026-12-01T02:00:00.000Z");
    }
}
