// Helpers shared by the notification-layer tests: Echo and pusher-js clients that authorize at
// Herald's /broadcasting/auth with a bearer token, subscription and event waits (all with
// timeouts), and the payload check every catalog broadcast must pass.

import assert from 'node:assert/strict';

import Pusher from 'pusher-js';
import Echo from 'laravel-echo';

import { TIMEOUT_MS, waitFor, withTimeout } from './harness.mjs';

/** A notification id Herald generates. */
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
/** RFC 3339 in UTC, as Herald writes times: always exactly three millisecond digits. */
export const RFC3339_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/**
 * An Echo configured as the platform's front end is: Herald authorizes private channels with
 * the bearer token (no token: public channels only). Pushed to `sockets` for disconnecting.
 */
export function echoFor(server, token, sockets) {
  const options = { broadcaster: 'pusher', Pusher, ...server.clientOptions('main') };
  if (token !== undefined) {
    options.authEndpoint = server.url('/broadcasting/auth');
    options.auth = { headers: { Authorization: `Bearer ${token}` } };
  }
  const echo = new Echo(options);
  sockets.push(echo);
  return echo;
}

/** A raw pusher-js client (no Echo) authorizing private channels at Herald with the token. */
export function pusherFor(server, token, sockets) {
  const client = new Pusher(server.apps.main.key, {
    ...server.clientOptions('main'),
    channelAuthorization: {
      endpoint: server.url('/broadcasting/auth'),
      transport: 'ajax',
      headers: { Authorization: `Bearer ${token}` },
    },
  });
  sockets.push(client);
  return client;
}

/** Resolves once the Echo channel is subscribed; rejects (with `.status`) when refused. */
export function echoSubscribed(channel, label) {
  return withTimeout(
    new Promise((resolve, reject) => {
      channel.subscribed(() => resolve(channel));
      channel.error((error) => {
        const refused = new Error(`${label}: subscription refused (${JSON.stringify(error)})`);
        refused.status = error?.status;
        reject(refused);
      });
    }),
    TIMEOUT_MS,
    `subscription to ${label}`,
  );
}

/** Records every `event` an Echo channel (`.listen`) or pusher-js channel (`.bind`) receives. */
export function recorder(channel, event) {
  const events = [];
  if (typeof channel.listen === 'function') channel.listen(event, (data) => events.push(data));
  else channel.bind(event, (data) => events.push(data));
  return {
    events,
    /** Waits (at most TIMEOUT_MS) for the first received event for which `match` holds. */
    next(match = () => true, label = event) {
      return waitFor(() => events.find(match), TIMEOUT_MS).catch((error) => {
        throw new Error(`${label}: ${error.message}; received ${JSON.stringify(events)}`);
      });
    },
  };
}

/**
 * Checks the common payload fields (id, type, priority, created_at) and that the rest is
 * exactly `fields`; a `notification` object carries the payload's id too.
 */
export function assertPayload(payload, { type, priority, fields }, label) {
  assert.match(payload.id, UUID, `${label}: id`);
  assert.match(payload.created_at, RFC3339_UTC, `${label}: created_at`);
  const age = Date.now() - Date.parse(payload.created_at);
  assert.ok(age > -5000 && age < 60000, `${label}: created_at ${payload.created_at} is recent`);
  const expected = { id: payload.id, type, priority, created_at: payload.created_at, ...fields };
  if (expected.notification) expected.notification = { ...expected.notification, id: payload.id };
  assert.deepEqual(payload, expected, label);
}

// The catalog: an example input per type, and what a client must receive (notifications.test.mjs,
// and the HTTP-transport browser test).

/**
 * `channels`: `[kind, logical name]`, kind `private` (Echo.private, wire `private-…`) or `public`.
 * `fields`: the payload besides id/type/priority/created_at (ids become strings, currency upper
 * case, times UTC with milliseconds, defaults filled in). `lane`: the queue lane the audit's
 * `routed` entry names.
 */
export const CATALOG = [
  {
    type: 'donation.large_received',
    data: { donation_id: 11, amount: 5000, currency: 'eur', campaign_id: 3, organization_id: 7, donor_name: 'Ada' },
    event: 'donation.large',
    lane: 'broadcasts',
    priority: 'high',
    channels: [['private', 'admin-dashboard'], ['private', 'organization.7'], ['private', 'campaign.3']],
    fields: {
      donation_id: '11', amount: 5000, currency: 'EUR', campaign_id: '3', organization_id: '7',
      donor_name: 'Ada', threshold: 1000,
    },
  },
  {
    type: 'campaign.milestone_reached',
    data: {
      campaign_id: 3, campaign_title: 'Clean water', organization_id: 7, milestone: 50,
      amount_raised: 5000, goal_amount: 10000, currency: 'EUR',
    },
    event: 'campaign.milestone',
    lane: 'broadcasts',
    priority: 'normal',
    channels: [['private', 'admin-dashboard'], ['private', 'organization.7'], ['private', 'campaign.3']],
    fields: {
      campaign_id: '3', campaign_title: 'Clean water', organization_id: '7', milestone: 50,
      amount_raised: 5000, goal_amount: 10000, currency: 'EUR',
    },
  },
  {
    type: 'campaign.approval_needed',
    data: { campaign_id: 4, campaign_title: 'Trees', organization_id: 7, submitted_by: { id: 9, name: 'Grace' } },
    event: 'campaign.approval_needed',
    lane: 'broadcasts',
    priority: 'high',
    channels: [['private', 'admin-dashboard'], ['private', 'admin-role-csr_admin'], ['private', 'admin-role-super_admin']],
    fields: { campaign_id: '4', campaign_title: 'Trees', organization_id: '7', submitted_by: { id: '9', name: 'Grace' } },
  },
  {
    type: 'payment.failed',
    data: {
      payment_id: 'p1', donation_id: 12, amount: 25, currency: 'USD', reason: 'card declined',
      user_id: 42, organization_id: 7,
    },
    event: 'payment.failed',
    lane: 'critical-broadcasts',
    priority: 'urgent',
    channels: [
      ['private', 'payment-notifications'],
      ['private', 'admin-role-finance_admin'],
      ['private', 'user.notifications.42'],
    ],
    fields: {
      payment_id: 'p1', donation_id: '12', amount: 25, currency: 'USD', reason: 'card declined',
      user_id: '42', organization_id: '7',
    },
    inbox: true,
  },
  {
    type: 'security.alert',
    data: { alert_type: 'brute_force', message: '50 failed logins', severity: 'high', details: { ip: '203.0.113.9' } },
    event: 'security.alert',
    lane: 'critical-broadcasts',
    priority: 'high',
    channels: [['private', 'security-alerts']],
    fields: { alert_type: 'brute_force', message: '50 failed logins', severity: 'high', details: { ip: '203.0.113.9' } },
  },
  {
    type: 'system.maintenance',
    data: {
      maintenance_type: 'scheduled', scheduled_for: '2026-12-01T03:00:00+01:00', duration_minutes: 30,
      affected_services: ['api', 'dashboard'],
    },
    event: 'system.maintenance',
    lane: 'broadcasts',
    priority: 'normal',
    channels: [['public', 'system-maintenance']],
    fields: {
      maintenance_type: 'scheduled', scheduled_for: '2026-12-01T02:00:00.000Z', duration_minutes: 30,
      affected_services: ['api', 'dashboard'],
    },
  },
  {
    type: 'compliance.issue',
    data: { issue_type: 'kyc_missing', severity: 'medium', message: 'KYC documents missing', organization_id: 7 },
    event: 'compliance.issue',
    lane: 'broadcasts',
    priority: 'normal',
    channels: [['private', 'compliance-notifications'], ['private', 'admin-role-csr_admin']],
    fields: {
      issue_type: 'kyc_missing', severity: 'medium', message: 'KYC documents missing', organization_id: '7', details: {},
    },
  },
  {
    type: 'notification.created',
    data: {
      notification: {
        user_id: 42, type: 'donation_receipt', title: 'Thank you', message: 'Receipt ready',
        action_url: '/receipts/1',
      },
    },
    event: 'notification.created',
    lane: 'broadcasts',
    priority: 'normal',
    channels: [['private', 'user.notifications.42']],
    fields: {
      notification: {
        user_id: '42', type: 'donation_receipt', title: 'Thank you', message: 'Receipt ready',
        priority: 'normal', data: {}, action_url: '/receipts/1',
      },
    },
    inbox: true,
  },
];
