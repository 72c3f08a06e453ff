//! `NotificationBroadcaster`: the original module's helpers as a Rust API. Each helper builds
//! the domain event and sends it through the same ingest as `POST /apps/{id}/domain-events`.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::fields::rfc3339;
use crate::service::{new_id, EventOutcome, IngestError, Notifier};

/// A donation, as the platform describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Donation {
    pub id: String,
    pub amount: f64,
    pub currency: String,
    pub campaign_id: String,
    pub organization_id: String,
    pub donor_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Campaign {
    pub id: String,
    pub title: String,
    pub organization_id: String,
    pub goal_amount: f64,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Payment {
    pub id: String,
    pub donation_id: String,
    pub amount: f64,
    pub currency: String,
    pub reason: String,
    pub user_id: String,
    pub organization_id: String,
}

/// A notification for one user's inbox and personal channel.
#[derive(Debug, Clone, PartialEq)]
pub struct UserNotification {
    pub id: Option<String>,
    pub user_id: String,
    pub notification_type: String,
    pub title: String,
    pub message: String,
    /// `low`, `normal`, `high` or `urgent` (urgent goes to the critical lane).
    pub priority: String,
    pub data: Value,
    pub action_url: Option<String>,
}

/// Sends the platform's notifications; cheap to clone.
#[derive(Debug, Clone)]
pub struct NotificationBroadcaster {
    notifier: Arc<Notifier>,
}

impl NotificationBroadcaster {
    pub fn new(notifier: Arc<Notifier>) -> NotificationBroadcaster {
        NotificationBroadcaster { notifier }
    }

    pub fn notifier(&self) -> &Arc<Notifier> {
        &self.notifier
    }

    /// Ingests raw domain events (`{"id", "type", "occurred_at", "data"}`), as the HTTP API does.
    pub async fn ingest(&self, events: &[Value]) -> Result<Vec<EventOutcome>, IngestError> {
        self.notifier.ingest(events).await
    }

    async fn send(&self, event_type: &str, data: Value) -> Result<EventOutcome, IngestError> {
        let event = json!({ "id": new_id(), "type": event_type, "occurred_at": rfc3339(herald_store::now_ms()), "data": data });
        let mut outcomes = self.notifier.ingest(&[event]).await?;
        Ok(outcomes.remove(0))
    }

    /// `donation.large_received`; below `threshold` (or the configured one) it is only audited.
    pub async fn large_donation_alert(
        &self,
        donation: &Donation,
        threshold: Option<f64>,
    ) -> Result<EventOutcome, IngestError> {
        let mut data = json!({
            "donation_id": donation.id, "amount": donation.amount, "currency": donation.currency,
            "campaign_id": donation.campaign_id, "organization_id": donation.organization_id,
            "donor_name": donation.donor_name,
        });
        if let Some(threshold) = threshold {
            data["threshold"] = json!(threshold);
        }
        self.send("donation.large_received", data).await
    }

    /// `campaign.milestone_reached` (25, 50, 75 or 100 percent).
    pub async fn campaign_milestone(
        &self,
        campaign: &Campaign,
        milestone: u8,
        amount_raised: f64,
    ) -> Result<EventOutcome, IngestError> {
        self.send(
            "campaign.milestone_reached",
            json!({
                "campaign_id": campaign.id, "campaign_title": campaign.title, "organization_id": campaign.organization_id,
                "milestone": milestone, "amount_raised": amount_raised, "goal_amount": campaign.goal_amount,
                "currency": campaign.currency,
            }),
        )
        .await
    }

    /// `campaign.approval_needed`, submitted by `(user id, name)`.
    pub async fn approval_needed(
        &self,
        campaign: &Campaign,
        submitted_by: (&str, &str),
    ) -> Result<EventOutcome, IngestError> {
        self.send(
            "campaign.approval_needed",
            json!({
                "campaign_id": campaign.id, "campaign_title": campaign.title, "organization_id": campaign.organization_id,
                "submitted_by": { "id": submitted_by.0, "name": submitted_by.1 },
            }),
        )
        .await
    }

    /// `payment.failed` (critical lane; also the payer's inbox).
    pub async fn payment_failed(&self, payment: &Payment) -> Result<EventOutcome, IngestError> {
        self.send(
            "payment.failed",
            json!({
                "payment_id": payment.id, "donation_id": payment.donation_id, "amount": payment.amount,
                "currency": payment.currency, "reason": payment.reason, "user_id": payment.user_id,
                "organization_id": payment.organization_id,
            }),
        )
        .await
    }

    /// `security.alert`; `high` and `critical` go to the critical lane.
    pub async fn security_alert(
        &self,
        kind: &str,
        message: &str,
        severity: &str,
        details: Value,
    ) -> Result<EventOutcome, IngestError> {
        self.send(
            "security.alert",
            json!({ "alert_type": kind, "message": message, "severity": severity, "details": details }),
        )
        .await
    }

    /// `system.maintenance`; `emergency` goes to the critical lane. `scheduled_for` is RFC 3339.
    pub async fn maintenance(
        &self,
        kind: &str,
        scheduled_for: &str,
        duration_minutes: u32,
        affected_services: &[&str],
    ) -> Result<EventOutcome, IngestError> {
        self.send(
            "system.maintenance",
            json!({
                "maintenance_type": kind, "scheduled_for": scheduled_for, "duration_minutes": duration_minutes,
                "affected_services": affected_services,
            }),
        )
        .await
    }

    /// `compliance.issue`.
    pub async fn compliance_issue(
        &self,
        issue_type: &str,
        severity: &str,
        message: &str,
        organization_id: Option<&str>,
        details: Value,
    ) -> Result<EventOutcome, IngestError> {
        self.send(
            "compliance.issue",
            json!({
                "issue_type": issue_type, "severity": severity, "message": message,
                "organization_id": organization_id, "details": details,
            }),
        )
        .await
    }

    /// `notification.created`: the user's inbox and personal channel.
    pub async fn notify_user(&self, notification: &UserNotification) -> Result<EventOutcome, IngestError> {
        self.send(
            "notification.created",
            json!({ "notification": {
                "id": notification.id, "user_id": notification.user_id, "type": notification.notification_type,
                "title": notification.title, "message": notification.message, "priority": notification.priority,
                "data": notification.data, "action_url": notification.action_url,
            } }),
        )
        .await
    }
}
