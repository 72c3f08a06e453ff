// Herald as its own authorization back end: laravel-echo's authEndpoint and userAuthentication
// pointed at /broadcasting/auth and /broadcasting/user-auth, with a platform bearer token.

import { after, afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';

import Pusher from 'pusher-js';
import Echo from 'laravel-echo';

import { startServer, waitForEvent, withTimeout } from '../lib/harness.mjs';

let server;
const echoes = [];
before(async () => {
  server = await startServer();
});
afterEach(() => {
  for (const echo of echoes.splice(0)) echo.disconnect();
});
after(async () => {
  await server?.stop();
});

/** An Echo configured the way the platform's front end is: Herald authorizes with the token. */
function echoFor(token) {
  const echo = new Echo({
    broadcaster: 'pusher',
    Pusher,
    ...server.clientOptions('main'),
    authEndpoint: server.url('/broadcasting/auth'),
    auth: { headers: { Authorization: `Bearer ${token}` } },
    userAuthentication: {
      endpoint: server.url('/broadcasting/user-auth'),
      transport: 'ajax',
      headers: { Authorization: `Bearer ${token}` },
    },
  });
  echoes.push(echo);
  return echo;
}

function outcome(channel, label) {
  return withTimeout(
    new Promise((resolve) => {
      channel.subscribed(() => resolve({ ok: true }));
      channel.error((error) => resolve({ ok: false, error }));
    }),
    5000,
    label,
  );
}

test('Echo.private("user.notifications.42") is allowed for user 42 and refused for user 43', async () => {
  const owner = echoFor(server.token({ user: 42, name: 'Ada' }));
  const received = new Promise((resolve) =>
    owner.private('user.notifications.42').listen('.notification.created', resolve),
  );
  assert.deepEqual(await outcome(owner.private('user.notifications.42'), 'owner'), { ok: true });
  await server.sdk().trigger('private-user.notifications.42', 'notification.created', { title: 'Hello' });
  assert.deepEqual(await withTimeout(received, 5000, 'notification'), { title: 'Hello' });

  const stranger = echoFor(server.token({ user: 43 }));
  const refused = await outcome(stranger.private('user.notifications.42'), 'stranger');
  assert.equal(refused.ok, false);
  assert.equal(refused.error.status, 403);
});

test('an invalid token is refused with 401', async () => {
  const echo = echoFor('not-a-token');
  const refused = await outcome(echo.private('user.notifications.42'), 'bad token');
  assert.equal(refused.ok, false);
  assert.equal(refused.error.status, 401);
});

test('Echo.join(...) presence carries the user_info from the token', async () => {
  const admin = echoFor(server.token({ user: 7, org: 3, roles: ['csr_admin'], name: 'Grace' }));
  const members = await withTimeout(
    new Promise((resolve, reject) => {
      admin.join('organization.3').here(resolve).error(reject);
    }),
    5000,
    'here()',
  );
  assert.deepEqual(members, [{ name: 'Grace' }]);

  const joined = new Promise((resolve) => admin.join('organization.3').joining(resolve));
  const member = echoFor(server.token({ user: 8, org: 3, name: 'Linus' }));
  member.join('organization.3');
  assert.deepEqual(await withTimeout(joined, 5000, 'joining()'), { name: 'Linus' });
});

test('userAuthentication signs in through /broadcasting/user-auth and receives sendToUser', async () => {
  const echo = echoFor(server.token({ user: 99, name: 'Signed' }));
  const pusher = echo.connector.pusher;
  await waitForEvent(pusher.connection, 'connected');
  const signedIn = new Promise((resolve) => pusher.bind('pusher:signin_success', resolve));
  pusher.signin();
  const success = await withTimeout(signedIn, 5000, 'signin_success');
  assert.equal(JSON.parse(success.user_data).id, '99');
  const delivered = new Promise((resolve) => pusher.user.bind('welcome', resolve));
  // pusher-js subscribes to #server-to-user-99 by itself after signing in; retry until it has.
  const deadline = Date.now() + 5000;
  let data;
  while (!data && Date.now() < deadline) {
    await server.sdk().sendToUser('99', 'welcome', { hello: true });
    data = await Promise.race([delivered, new Promise((resolve) => setTimeout(resolve, 100, undefined))]);
  }
  assert.deepEqual(data, { hello: true });
});
