// `[channels] admin_visibility = "public"` (set through HERALD_CHANNELS__ADMIN_VISIBILITY): the
// notification layer broadcasts the admin channels under the original module's public names, so
// a front end that cannot change yet listens with Echo.channel() and no token; the per-user
// channels stay private. Its own file, so its server never runs beside another one.

import { after, afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { startServer } from '../lib/harness.mjs';
import { assertPayload, echoFor, echoSubscribed, recorder } from '../lib/notifications.mjs';

let server;
const sockets = [];
before(async () => {
  process.env.HERALD_CHANNELS__ADMIN_VISIBILITY = 'public';
  try {
    server = await startServer();
  } finally {
    delete process.env.HERALD_CHANNELS__ADMIN_VISIBILITY;
  }
});
afterEach(() => {
  for (const socket of sockets.splice(0)) socket.disconnect();
});
after(async () => {
  await server?.stop();
});

test('payment.failed reaches Echo.channel("payment-notifications") and "admin-role-finance_admin" without a token', async () => {
  const echo = echoFor(server, undefined, sockets);
  const payments = echo.channel('payment-notifications');
  const finance = echo.channel('admin-role-finance_admin');
  const received = [recorder(payments, '.payment.failed'), recorder(finance, '.payment.failed')];
  await Promise.all([echoSubscribed(payments, 'payment-notifications'), echoSubscribed(finance, 'admin-role-finance_admin')]);
  // The user's personal channel stays private, authorized with the user's token.
  const personal = echoFor(server, server.token({ user: 42 }), sockets).private('user.notifications.42');
  received.push(recorder(personal, '.payment.failed'));
  await echoSubscribed(personal, 'user.notifications.42');

  const response = await server.sdk().post({
    path: '/domain-events',
    body: {
      id: 'legacy-payment-1',
      type: 'payment.failed',
      data: { payment_id: 'p2', donation_id: 5, amount: 10, currency: 'USD', reason: 'declined', user_id: 42, organization_id: 7 },
    },
  });
  assert.equal(response.status, 202);
  assert.equal((await response.json()).events[0].status, 'accepted');
  const labels = ['payment-notifications', 'admin-role-finance_admin', 'private-user.notifications.42'];
  const payloads = [];
  for (const [index, recorded] of received.entries()) payloads.push(await recorded.next(() => true, labels[index]));
  for (const [index, payload] of payloads.entries()) {
    assertPayload(
      payload,
      {
        type: 'payment.failed',
        priority: 'urgent',
        fields: {
          payment_id: 'p2', donation_id: '5', amount: 10, currency: 'USD', reason: 'declined',
          user_id: '42', organization_id: '7',
        },
      },
      labels[index],
    );
    assert.deepEqual(payload, payloads[0]);
  }
});

test('donation.large goes to the public admin-dashboard; organization and campaign channels stay private', async () => {
  const echo = echoFor(server, undefined, sockets);
  const dashboard = echo.channel('admin-dashboard');
  const donations = recorder(dashboard, '.donation.large');
  await echoSubscribed(dashboard, 'admin-dashboard');
  const member = echoFor(server, server.token({ user: 7, org: 7 }), sockets).private('organization.7');
  const organization = recorder(member, '.donation.large');
  await echoSubscribed(member, 'organization.7');

  const response = await server.sdk().post({
    path: '/domain-events',
    body: {
      id: 'legacy-donation-1',
      type: 'donation.large_received',
      data: { donation_id: 1, amount: 5000, currency: 'EUR', campaign_id: 3, organization_id: 7 },
    },
  });
  assert.equal(response.status, 202);
  const seen = [await donations.next(() => true, 'admin-dashboard'), await organization.next(() => true, 'private-organization.7')];
  for (const payload of seen) assert.equal(payload.donation_id, '1');
  assert.deepEqual(seen[0], seen[1]);

  const audit = await (await server.sdk().get({ path: '/audit', params: { event_id: 'legacy-donation-1', status: 'routed' } })).json();
  // The audit names logical channels; the public/private choice is made on delivery.
  assert.deepEqual(audit.entries[0].detail.channels, ['admin-dashboard', 'organization.7', 'campaign.3']);
});
