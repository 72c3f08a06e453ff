// The notification layer through real clients: domain events ingested with the `pusher` server
// SDK's generic signed request (`sdk.post({path: '/domain-events'})`), received by laravel-echo
// (authorized by Herald's own /broadcasting/auth with a bearer token) and by raw pusher-js on
// every channel of the catalog; the inbox REST API; the signed audit API; idempotency; 422s.

import { after, afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { APPS, TIMEOUT_MS, rawFrames, startServer, subscribe, withTimeout } from '../lib/harness.mjs';
import {
  CATALOG,
  RFC3339_UTC,
  UUID,
  assertPayload,
  echoFor as bearerEcho,
  echoSubscribed,
  pusherFor as bearerPusher,
  recorder,
} from '../lib/notifications.mjs';

let server;
let sdk;
/** A token holding every role the catalog's admin channels need. */
let adminToken;
/** Echo instances and pusher-js clients of the current test, disconnected after it. */
const sockets = [];

before(async () => {
  server = await startServer();
  sdk = server.sdk();
  adminToken = server.token({ user: 42, org: 7, roles: ['super_admin', 'csr_admin', 'finance_admin'], name: 'Ada' });
});
afterEach(() => {
  for (const socket of sockets.splice(0)) socket.disconnect();
});
after(async () => {
  await server?.stop();
});

// ---------------------------------------------------------------------------------------------
// Helpers

/** An Echo authorizing at Herald with the bearer token; disconnected after the test. */
function echoFor(token) {
  return bearerEcho(server, token, sockets);
}

/** A raw pusher-js client authorizing at Herald with the bearer token. */
function pusherFor(token) {
  return bearerPusher(server, token, sockets);
}

/** Ingests through the SDK's generic signed POST; expects 202 and returns the parsed body. */
async function ingest(body) {
  const response = await sdk.post({ path: '/domain-events', body });
  assert.equal(response.status, 202);
  return response.json();
}

/**
 * Ingests something the server must refuse; returns `{status, body}` of the refusal. `signer`:
 * another SDK instance (another app's credentials); `params`: signed query parameters.
 */
async function ingestRefused(body, { signer = sdk, params } = {}) {
  try {
    const response = await signer.post({ path: '/domain-events', body, params });
    assert.fail(`expected a refusal, got ${response.status}: ${await response.text()}`);
  } catch (error) {
    if (error.status === undefined) throw error;
    return { status: error.status, body: JSON.parse(error.body) };
  }
}

/** Audit entries through the signed `GET /apps/{id}/audit`. */
async function audit(params) {
  const response = await sdk.get({ path: '/audit', params });
  assert.equal(response.status, 200);
  return (await response.json()).entries;
}

/** Polls the audit until `predicate(entries)` holds, with a deadline. */
async function auditUntil(params, predicate, label, ms = TIMEOUT_MS) {
  const deadline = Date.now() + ms;
  let entries;
  for (;;) {
    entries = await audit(params);
    if (predicate(entries)) return entries;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${label}; audit: ${JSON.stringify(entries)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** The user's REST API with a bearer token. */
async function api(method, path, token) {
  const response = await withTimeout(
    fetch(server.url(path), { method, headers: { Authorization: `Bearer ${token}` } }),
    TIMEOUT_MS,
    `${method} ${path}`,
  );
  return { status: response.status, body: await response.json() };
}

let sequence = 0;
/** An event id no other test uses (the idempotency key). */
function eventId(label) {
  sequence += 1;
  return `node-${label}-${sequence}-${Math.random().toString(36).slice(2, 8)}`;
}

// ---------------------------------------------------------------------------------------------
// The catalog (lib/notifications.mjs): every type reaches its channels.

for (const entry of CATALOG) {
  test(`${entry.type} reaches ${entry.channels.map(([, name]) => name).join(', ')} as .${entry.event}`, async () => {
    const echo = echoFor(adminToken);
    const listeners = [];
    for (const [kind, name] of entry.channels) {
      const channel = kind === 'private' ? echo.private(name) : echo.channel(name);
      listeners.push({ name, subscribed: echoSubscribed(channel, name), received: recorder(channel, `.${entry.event}`) });
    }
    await Promise.all(listeners.map(({ subscribed }) => subscribed));

    const id = eventId(entry.type);
    const body = await ingest({ id, type: entry.type, occurred_at: new Date().toISOString(), data: entry.data });
    assert.equal(body.events.length, 1);
    const [outcome] = body.events;
    assert.equal(outcome.status, 'accepted', JSON.stringify(body));
    assert.equal(outcome.id, id);
    assert.equal(outcome.type, entry.type);
    assert.equal(outcome.broadcasts_queued, 1);
    assert.equal(outcome.notification_ids.length, entry.inbox ? 1 : 0, JSON.stringify(outcome));

    const payloads = [];
    for (const { name, received } of listeners) {
      const payload = await received.next(() => true, `${entry.event} on ${name}`);
      assertPayload(payload, { type: entry.event, priority: entry.priority, fields: entry.fields }, name);
      payloads.push(payload);
    }
    // One broadcast: the same notification id and payload on every channel.
    for (const payload of payloads) assert.deepEqual(payload, payloads[0]);
    if (entry.inbox) assert.equal(outcome.notification_ids[0], payloads[0].id, 'the inbox id is the broadcast id');
    const [routed] = await audit({ event_id: id, status: 'routed' });
    assert.deepEqual(routed?.detail, {
      event: entry.event,
      channels: entry.channels.map(([, name]) => name),
      lane: entry.lane,
    });
    assert.equal(routed.broadcast_id, payloads[0].id);
  });
}

test('raw pusher-js clients receive catalog broadcasts on private and public channels', async () => {
  const client = pusherFor(adminToken);
  const { channel: alerts } = await subscribe(client, 'private-security-alerts');
  const { channel: maintenance } = await subscribe(client, 'system-maintenance');
  const alert = recorder(alerts, 'security.alert');
  const notice = recorder(maintenance, 'system.maintenance');

  // pusher-js binds the bare event name (Echo's '.security.alert' without the dot).
  await ingest({
    events: [
      {
        id: eventId('raw-alert'),
        type: 'security.alert',
        data: { alert_type: 'login_anomaly', message: 'new country', severity: 'critical' },
      },
      {
        id: eventId('raw-maintenance'),
        type: 'system.maintenance',
        data: { maintenance_type: 'emergency', scheduled_for: '2026-12-01T02:00:00Z', duration_minutes: 0, affected_services: [] },
      },
    ],
  });
  assertPayload(
    await alert.next(() => true, 'security.alert (raw)'),
    {
      type: 'security.alert',
      priority: 'urgent',
      fields: { alert_type: 'login_anomaly', message: 'new country', severity: 'critical', details: {} },
    },
    'private-security-alerts',
  );
  assertPayload(
    await notice.next(() => true, 'system.maintenance (raw)'),
    {
      type: 'system.maintenance',
      priority: 'urgent',
      fields: { maintenance_type: 'emergency', scheduled_for: '2026-12-01T02:00:00.000Z', duration_minutes: 0, affected_services: [] },
    },
    'system-maintenance',
  );

  // The channel policy still applies: a csr_admin may not listen to security alerts.
  const csr = pusherFor(server.token({ user: 5, org: 7, roles: ['csr_admin'] }));
  await assert.rejects(subscribe(csr, 'private-security-alerts'), (error) => {
    assert.equal(error.data?.status, 403, JSON.stringify(error.data));
    return true;
  });
});

test('campaign.milestone_reached teaches a campaign\'s organization to the campaign channel policy', async () => {
  const member = server.token({ user: 70, org: 17, name: 'Member' });
  // Campaign 35 is unknown: even a member of its future organization is refused.
  await assert.rejects(echoSubscribed(echoFor(member).private('campaign.35'), 'campaign.35 (unknown)'), (error) => {
    assert.equal(error.status, 403);
    return true;
  });

  await ingest({
    id: eventId('teach'),
    type: 'campaign.milestone_reached',
    data: {
      campaign_id: 35, campaign_title: 'Library', organization_id: 17, milestone: 100,
      amount_raised: 20000, goal_amount: 20000, currency: 'EUR',
    },
  });

  const channel = echoFor(member).private('campaign.35');
  const donations = recorder(channel, '.donation.large');
  await echoSubscribed(channel, 'campaign.35 (member)');
  const outsider = server.token({ user: 71, org: 18 });
  await assert.rejects(echoSubscribed(echoFor(outsider).private('campaign.35'), 'campaign.35 (outsider)'), (error) => {
    assert.equal(error.status, 403);
    return true;
  });

  await ingest({
    id: eventId('campaign-donation'),
    type: 'donation.large_received',
    data: { donation_id: 99, amount: '250.50', currency: 'EUR', campaign_id: 35, organization_id: 17, threshold: 100 },
  });
  assertPayload(
    await donations.next(() => true, 'donation.large on campaign.35'),
    {
      type: 'donation.large',
      priority: 'high',
      fields: {
        donation_id: '99', amount: 250.5, currency: 'EUR', campaign_id: '35', organization_id: '17',
        donor_name: null, threshold: 100,
      },
    },
    'private-campaign.35',
  );
});

test('a donation below its threshold is ignored with a reason and not broadcast', async () => {
  const channel = echoFor(adminToken).private('organization.8');
  const donations = recorder(channel, '.donation.large');
  await echoSubscribed(channel, 'organization.8');
  const small = eventId('small');
  const body = await ingest({
    id: small,
    type: 'donation.large_received',
    data: { donation_id: 1, amount: 20, currency: 'EUR', campaign_id: 5, organization_id: 8 },
  });
  const [outcome] = body.events;
  assert.equal(outcome.status, 'ignored');
  assert.match(outcome.reason, /below the large-donation threshold 1000/);
  assert.equal(outcome.broadcasts_queued, 0);

  // Sentinel: a large one afterwards arrives, and it is the only one.
  await ingest({
    id: eventId('large'),
    type: 'donation.large_received',
    data: { donation_id: 2, amount: 2000, currency: 'EUR', campaign_id: 5, organization_id: 8 },
  });
  await donations.next((payload) => payload.donation_id === '2', 'the large donation');
  assert.deepEqual(donations.events.map((payload) => payload.donation_id), ['2']);
  const kinds = (await audit({ event_id: small })).map((entry) => entry.status).sort();
  assert.deepEqual(kinds, ['ignored', 'received']);
});

test('payment.failed and notification.created land in the inbox; read marks hide them from ?unread=true', async () => {
  const userToken = server.token({ user: 42, org: 7, name: 'Ada' });
  const body = await ingest({
    events: [
      {
        id: eventId('inbox-payment'),
        type: 'payment.failed',
        data: {
          payment_id: 'p-inbox', donation_id: 13, amount: 12.5, currency: 'eur', reason: 'insufficient funds',
          user_id: 42, organization_id: 7,
        },
      },
      {
        id: eventId('inbox-note'),
        type: 'notification.created',
        data: {
          notification: {
            id: `note-${Date.now()}`, user_id: 42, type: 'campaign_update', title: 'News',
            message: 'Your campaign was approved', priority: 'high', data: { campaign_id: 3 },
          },
        },
      },
    ],
  });
  const [payment, note] = body.events;
  assert.equal(payment.status, 'accepted');
  assert.equal(note.status, 'accepted');
  const paymentId = payment.notification_ids[0];
  const noteId = note.notification_ids[0];
  assert.match(paymentId, UUID);
  assert.match(noteId, /^note-\d+$/, 'the platform\'s own notification id is kept');

  const { status, body: inbox } = await api('GET', '/api/v1/notifications', userToken);
  assert.equal(status, 200, JSON.stringify(inbox));
  const byId = new Map(inbox.data.map((item) => [item.id, item]));
  const stored = byId.get(paymentId);
  assert.ok(stored, `payment notification listed: ${JSON.stringify(inbox)}`);
  assert.deepEqual(
    { ...stored, created_at: undefined },
    {
      id: paymentId,
      type: 'payment.failed',
      title: 'Payment failed',
      message: 'Your payment of 12.50 EUR failed: insufficient funds',
      priority: 'urgent',
      data: {
        payment_id: 'p-inbox', donation_id: '13', amount: 12.5, currency: 'EUR', reason: 'insufficient funds',
        user_id: '42', organization_id: '7',
      },
      action_url: null,
      created_at: undefined,
      read_at: null,
    },
  );
  assert.match(stored.created_at, RFC3339_UTC);
  assert.deepEqual(
    { ...byId.get(noteId), created_at: undefined },
    {
      id: noteId,
      type: 'campaign_update',
      title: 'News',
      message: 'Your campaign was approved',
      priority: 'high',
      data: { campaign_id: 3 },
      action_url: null,
      created_at: undefined,
      read_at: null,
    },
  );

  // Another user cannot mark it; the owner can.
  const stranger = await api('POST', `/api/v1/notifications/${paymentId}/read`, server.token({ user: 43 }));
  assert.equal(stranger.status, 404);
  const marked = await api('POST', `/api/v1/notifications/${paymentId}/read`, userToken);
  assert.equal(marked.status, 200, JSON.stringify(marked.body));
  assert.deepEqual(marked.body, { id: paymentId, read: true });

  const unread = await api('GET', '/api/v1/notifications?unread=true', userToken);
  assert.equal(unread.status, 200);
  const unreadIds = unread.body.data.map((item) => item.id);
  assert.ok(!unreadIds.includes(paymentId), `read notification not listed as unread: ${unreadIds}`);
  assert.ok(unreadIds.includes(noteId), `unread notification still listed: ${unreadIds}`);
  const all = await api('GET', '/api/v1/notifications', userToken);
  const read = all.body.data.find((item) => item.id === paymentId);
  assert.match(read.read_at, RFC3339_UTC);

  assert.equal((await api('GET', '/api/v1/notifications', 'not-a-token')).status, 401);
});

test('the audit API shows received, routed and (eventually) delivered for payment.failed', async () => {
  const id = eventId('audited');
  await ingest({
    id,
    type: 'payment.failed',
    data: {
      payment_id: 'p-audit', donation_id: 14, amount: 9, currency: 'GBP', reason: 'expired card',
      user_id: 44, organization_id: 7,
    },
  });
  const entries = await auditUntil(
    { type: 'payment.failed' },
    (list) => list.some((entry) => entry.event_id === id && entry.status === 'delivered'),
    `a delivered entry for ${id}`,
  );
  assert.ok(entries.every((entry) => entry.type === 'payment.failed'));
  const mine = entries.filter((entry) => entry.event_id === id);
  const kinds = new Set(mine.map((entry) => entry.status));
  for (const kind of ['received', 'routed', 'delivered']) assert.ok(kinds.has(kind), `${kind} in ${[...kinds]}`);
  const routed = mine.find((entry) => entry.status === 'routed');
  assert.deepEqual(routed.detail, {
    event: 'payment.failed',
    channels: ['payment-notifications', 'admin-role-finance_admin', 'user.notifications.44'],
    lane: 'critical-broadcasts',
  });
  const delivered = mine.find((entry) => entry.status === 'delivered');
  assert.equal(delivered.broadcast_id, routed.broadcast_id);
  assert.equal(delivered.detail.lane, 'critical-broadcasts');
  assert.equal(delivered.detail.driver, 'herald');
});

test('the same event id twice is a duplicate and is broadcast once', async () => {
  const channel = echoFor(adminToken).channel('system-maintenance');
  const notices = recorder(channel, '.system.maintenance');
  await echoSubscribed(channel, 'system-maintenance');
  const event = {
    id: eventId('once'),
    type: 'system.maintenance',
    data: { maintenance_type: 'started', scheduled_for: '2026-12-01T02:00:00Z', duration_minutes: 5, affected_services: ['api'] },
  };
  const first = await ingest(event);
  assert.equal(first.events[0].status, 'accepted');
  const original = await notices.next(() => true, 'the first broadcast');

  const again = await ingest(event);
  assert.deepEqual(again.events, [{ ...first.events[0], status: 'duplicate' }]);
  // Twice within one batch too.
  const batch = await ingest({ events: [event, event] });
  assert.deepEqual(batch.events.map((outcome) => outcome.status), ['duplicate', 'duplicate']);

  // Sentinel: a later event arrives on the same socket; the repeats never did.
  const sentinel = eventId('sentinel');
  await ingest({
    id: sentinel,
    type: 'system.maintenance',
    data: { maintenance_type: 'completed', scheduled_for: '2026-12-01T02:05:00Z', duration_minutes: 5, affected_services: ['api'] },
  });
  await notices.next((payload) => payload.maintenance_type === 'completed', 'the sentinel');
  assert.deepEqual(
    notices.events.map((payload) => payload.maintenance_type),
    ['started', 'completed'],
    'the duplicate was not broadcast',
  );
  assert.equal(notices.events[0].id, original.id);
  const routed = await audit({ event_id: event.id, status: 'routed' });
  assert.equal(routed.length, 1, `routed once: ${JSON.stringify(routed)}`);
});

test('an invalid event answers 422 naming the field, and nothing of its batch is stored', async () => {
  const bad = { id: eventId('bad'), type: 'security.alert', data: { alert_type: 'x', message: 'm', severity: 'apocalyptic' } };
  const single = await ingestRefused(bad);
  assert.equal(single.status, 422);
  assert.equal(single.body.field, 'events[0].data.severity');
  assert.match(single.body.error, /severity: must be one of low, medium, high, critical/);

  const good = { id: eventId('good'), type: 'security.alert', data: { alert_type: 'x', message: 'm', severity: 'low' } };
  const batch = await ingestRefused({ events: [good, bad] });
  assert.equal(batch.status, 422);
  assert.equal(batch.body.field, 'events[1].data.severity');

  const unknown = await ingestRefused({ type: 'donation.tiny', data: {} });
  assert.deepEqual([unknown.status, unknown.body.field], [422, 'events[0].type']);
  const missing = await ingestRefused({
    type: 'payment.failed',
    data: { payment_id: 1, donation_id: 2, amount: 3, currency: 'EUR', reason: 'x', organization_id: 7 },
  });
  assert.deepEqual([missing.status, missing.body.field], [422, 'events[0].data.user_id']);
  const milestone = await ingestRefused({
    type: 'campaign.milestone_reached',
    data: { campaign_id: 1, campaign_title: 't', organization_id: 2, milestone: 30, amount_raised: 1, goal_amount: 2, currency: 'EUR' },
  });
  assert.deepEqual([milestone.status, milestone.body.field], [422, 'events[0].data.milestone']);
  const when = await ingestRefused({ ...good, id: eventId('when'), occurred_at: 'yesterday' });
  assert.deepEqual([when.status, when.body.field], [422, 'events[0].occurred_at']);
  const tooMany = await ingestRefused({
    events: Array.from({ length: 101 }, (_, n) => ({ ...good, id: `${good.id}-${n}` })),
  });
  assert.deepEqual([tooMany.status, tooMany.body.field], [422, 'events']);

  for (const id of [bad.id, good.id]) assert.deepEqual(await audit({ event_id: id }), [], `${id} not stored`);
  // The good event alone is accepted afterwards: the refused batch did not store it.
  assert.equal((await ingest(good)).events[0].status, 'accepted');
});


test('reusing a platform notification id under a new event id is a 422 naming the field (409 within one batch), never 503', async () => {
  const reused = eventId('reused-notification');
  const notification = (id, user) => ({ id, user_id: user, type: 'donation_receipt', title: 'T', message: 'M' });
  const note = (label, id, user = 42) => ({
    id: eventId(label),
    type: 'notification.created',
    data: { notification: notification(id, user) },
  });
  const first = await ingest(note('reuse-1', reused));
  assert.equal(first.events[0].status, 'accepted');
  assert.deepEqual(first.events[0].notification_ids, [reused]);

  // Alone, and at index 1 of a batch whose other event is valid: 422 with the event's index.
  const alone = note('reuse-2', reused, 43);
  const single = await ingestRefused(alone);
  assert.equal(single.status, 422, JSON.stringify(single.body));
  assert.equal(single.body.field, 'events[0].data.notification.id');
  assert.match(single.body.error, new RegExp(`notification "${reused}" was already sent by another event`));
  const fresh = note('reuse-fresh', eventId('fresh-notification'));
  const inBatch = await ingestRefused({ events: [fresh, note('reuse-3', reused)] });
  assert.equal(inBatch.status, 422, JSON.stringify(inBatch.body));
  assert.equal(inBatch.body.field, 'events[1].data.notification.id');

  // Two events of one batch naming the same new notification id: refused (409 Conflict, or
  // 422), never a storage outage, and nothing of the batch is stored.
  const shared = eventId('shared-notification');
  const pair = [note('pair-1', shared), note('pair-2', shared, 43)];
  const clash = await ingestRefused({ events: pair });
  assert.ok([409, 422].includes(clash.status), `409 or 422, got ${clash.status}: ${JSON.stringify(clash.body)}`);
  assert.equal(typeof clash.body.error, 'string');

  for (const event of [alone, fresh, ...pair]) {
    assert.deepEqual(await audit({ event_id: event.id }), [], `${event.id} not stored`);
  }
  // The other user's inbox did not get the reused id.
  const inbox = await api('GET', '/api/v1/notifications', server.token({ user: 43 }));
  assert.equal(inbox.status, 200);
  assert.ok(!inbox.body.data.some((item) => item.id === reused || item.id === shared), JSON.stringify(inbox.body));
  // The refused events were not stored, so they are accepted once they carry their own ids.
  assert.equal((await ingest(fresh)).events[0].status, 'accepted');
});

test('a repeated event id is audited under the original event\'s type', async () => {
  const id = eventId('retyped');
  await ingest({ id, type: 'security.alert', data: { alert_type: 'x', message: 'm', severity: 'low' } });
  const again = await ingest({ id, type: 'compliance.issue', data: { issue_type: 'x', severity: 'low', message: 'm' } });
  assert.equal(again.events[0].status, 'duplicate');
  assert.equal(again.events[0].type, 'security.alert');
  const entries = await audit({ event_id: id });
  assert.ok(entries.some((entry) => entry.status === 'duplicate'), JSON.stringify(entries));
  assert.deepEqual([...new Set(entries.map((entry) => entry.type))], ['security.alert'], JSON.stringify(entries));
  // Filtering by the type of the repeat finds nothing of this event.
  assert.deepEqual(await audit({ event_id: id, type: 'compliance.issue' }), []);
});

test('only the notification app may ingest or read the audit: another app\'s credentials get 403 naming it', async () => {
  const other = server.sdk('noClientEvents');
  const event = { id: eventId('other-app'), type: 'security.alert', data: { alert_type: 'x', message: 'm', severity: 'low' } };
  const refused = await ingestRefused(event, { signer: other });
  assert.equal(refused.status, 403, JSON.stringify(refused.body));
  assert.match(refused.body.error, new RegExp(`belongs to app "${APPS.main.id}"`));
  await assert.rejects(other.get({ path: '/audit', params: { event_id: event.id } }), (error) => {
    assert.equal(error.status, 403, error.body);
    assert.match(JSON.parse(error.body).error, new RegExp(`belongs to app "${APPS.main.id}"`));
    return true;
  });
  // Nothing was stored: the notification app then accepts the same event as new.
  assert.deepEqual(await audit({ event_id: event.id }), []);
  assert.equal((await ingest(event)).events[0].status, 'accepted');
});

test('?status=200 (signed like every parameter) answers 200 instead of 202, for the PHP SDK', async () => {
  const event = { id: eventId('status-200'), type: 'security.alert', data: { alert_type: 'x', message: 'm', severity: 'low' } };
  const response = await sdk.post({ path: '/domain-events', body: event, params: { status: 200 } });
  assert.equal(response.status, 200);
  const body = await response.json();
  assert.deepEqual(body.events.map(({ id, status }) => [id, status]), [[event.id, 'accepted']]);
  assert.equal(body.events[0].broadcasts_queued, 1);
  // A duplicate too; 202 may be asked for explicitly; errors keep their status.
  const again = await sdk.post({ path: '/domain-events', body: event, params: { status: 200 } });
  assert.equal(again.status, 200);
  assert.deepEqual((await again.json()).events, [{ ...body.events[0], status: 'duplicate' }]);
  const explicit = await sdk.post({
    path: '/domain-events',
    body: { ...event, id: eventId('status-202') },
    params: { status: 202 },
  });
  assert.equal(explicit.status, 202);
  const invalid = await ingestRefused({ ...event, id: eventId('status-422'), data: {} }, { params: { status: 200 } });
  assert.deepEqual([invalid.status, invalid.body.field], [422, 'events[0].data.alert_type']);
  const other = await ingestRefused({ ...event, id: eventId('status-201') }, { params: { status: 201 } });
  assert.deepEqual([other.status, other.body.field], [400, 'status']);
});

test('whole-number amounts are integers on the wire, fractional ones keep their fraction', async () => {
  const client = pusherFor(adminToken);
  await subscribe(client, 'private-organization.9');
  const frames = rawFrames(client);
  const donation = (label, amount) => ({
    id: eventId(label),
    type: 'donation.large_received',
    data: { donation_id: label, amount, currency: 'EUR', campaign_id: 9, organization_id: 9 },
  });
  await ingest({ events: [donation('whole', '2500.00'), donation('fraction', 1250.75)] });
  const wire = (donationId) =>
    withTimeout(
      (async () => {
        for (;;) {
          const frame = frames.find((f) => f.event === 'donation.large' && JSON.parse(f.data).donation_id === donationId);
          if (frame) return frame.data;
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      })(),
      TIMEOUT_MS,
      `donation.large ${donationId} on private-organization.9`,
    );
  const whole = await wire('whole');
  assert.match(whole, /"amount":2500,/, whole);
  assert.match(whole, /"threshold":1000,/, whole);
  const fraction = await wire('fraction');
  assert.match(fraction, /"amount":1250\.75,/, fraction);
});
