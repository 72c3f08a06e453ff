// Connecting: the handshake, refusals by close code, and the user-authentication deadline.

import { after, afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  connected,
  connectionOutcome,
  errorCode,
  record,
  signIn,
  subscribe,
  unique,
  waitFor,
  waitForEvent,
  startServer,
} from '../lib/harness.mjs';

let server;
before(async () => {
  server = await startServer();
});
afterEach(() => server.disconnectAll());
after(async () => {
  await server?.stop();
});

/**
 * Waits until a client refused during the handshake has settled: the Pusher error code it saw,
 * the states it went through, and whether it scheduled a reconnection.
 */
async function refusal(client) {
  const states = record(client.connection, 'state_change');
  const retries = record(client.connection, 'connecting_in');
  const error = await waitForEvent(client.connection, 'error', {
    filter: (event) => errorCode(event) !== null,
    label: 'a connection error with a Pusher code',
  });
  await waitFor(() => client.connection.state === 'disconnected');
  return { code: errorCode(error), error, states: states.events.map((s) => s.current), retries: retries.events };
}

test('connection is established with a socket id and the activity timeout', async () => {
  const first = server.client();
  const second = server.client();
  const [a, b] = await Promise.all([connected(first), connected(second)]);
  assert.match(a, /^\d+\.\d+$/);
  assert.match(b, /^\d+\.\d+$/);
  assert.notEqual(a, b, 'socket ids are unique');
  // pusher-js refuses a handshake without activity_timeout; 120 s is announced by default.
  assert.equal(first.connection.activityTimeout, 120 * 1000);
});

test('pusher:ping is answered with pusher:pong', async () => {
  const client = server.client();
  await connected(client);
  const pong = waitForEvent(client.connection.connection, 'pong');
  client.connection.send_event('pusher:ping', {});
  await pong;
});

test('events clients may not send (pusher_internal:*) get a pusher:error and the socket stays open', async () => {
  const client = server.client();
  await connected(client);
  const error = waitForEvent(client.connection, 'error');
  client.connection.send_event('pusher_internal:subscription_succeeded', {}, 'public-x');
  const event = await error;
  assert.equal(event.type, 'PusherError');
  assert.match(event.data.message, /pusher_internal:subscription_succeeded/);
  // Still usable afterwards.
  await subscribe(client, unique('public-after-error'));
  assert.equal(client.connection.state, 'connected');
});

test('unknown app key: error 4001 and pusher-js does not reconnect', async () => {
  const client = server.client('main', { key: 'no-such-key' });
  const result = await refusal(client);
  assert.equal(result.code, 4001);
  assert.equal(result.states.includes('connected'), false);
  assert.deepEqual(result.retries, [], 'no reconnection scheduled');
  assert.equal(client.connection.retryTimer ?? null, null);
  assert.equal(client.connection.socket_id, undefined);
});

test('disabled app: error 4003 and no reconnection', async () => {
  const client = server.client('disabled');
  const result = await refusal(client);
  assert.equal(result.code, 4003);
  assert.deepEqual(result.retries, []);
  assert.equal(client.connection.retryTimer ?? null, null);
});

test('app over its connection quota: error 4004; the slot is released on disconnect', async () => {
  const first = server.client('limited');
  await connected(first);
  const second = server.client('limited');
  const result = await refusal(second);
  assert.equal(result.code, 4004);
  assert.deepEqual(result.retries, []);
  assert.equal(first.connection.state, 'connected', 'the connection inside the quota is untouched');

  // Once the first connection is gone its slot is free again. The server forgets a closed
  // socket asynchronously, so a new client may still be refused for a moment: retry, bounded.
  first.disconnect();
  const deadline = Date.now() + 5000;
  for (;;) {
    const third = server.client('limited');
    const outcome = await connectionOutcome(third);
    if (outcome === 'connected') break;
    assert.equal(outcome, 4004);
    assert.ok(Date.now() < deadline, 'the quota slot was never released');
  }
});

test('user authentication required: an idle connection is closed with 4009, signed-in and authorized ones stay', async () => {
  const user = { id: unique('user') };
  const signedIn = server.client('authRequired', { user });
  await signIn(signedIn);

  const authorized = server.client('authRequired');
  await connected(authorized);
  const privateName = unique('private-auth-required');
  const { channel: privateChannel } = await subscribe(authorized, privateName);

  // Started last, so the survivors' deadlines (had they no authorization) would come first.
  const idle = server.client('authRequired');
  await connected(idle);
  const started = Date.now();
  const errors = record(idle.connection, 'error');
  const retries = record(idle.connection, 'connecting_in');
  await waitFor(() => idle.connection.state === 'disconnected', 6000);
  const elapsed = Date.now() - started;
  const codes = errors.events.map(errorCode);
  assert.ok(codes.includes(4009), `4009 expected, got ${JSON.stringify(errors.events)}`);
  assert.ok(elapsed >= 1500, `closed after ${elapsed} ms; the timeout is 2 s`);
  assert.deepEqual(retries.events, []);
  assert.equal(idle.connection.retryTimer ?? null, null, '4009 is final: no reconnection');

  // The survivors still receive events.
  const sdk = server.sdk('authRequired');
  await waitFor(() => signedIn.user.serverToUserChannel?.subscribed);
  const toUser = waitForEvent(signedIn.user, 'still-here');
  await sdk.sendToUser(user.id, 'still-here', { ok: true });
  assert.deepEqual(await toUser, { ok: true });
  const onPrivate = waitForEvent(privateChannel, 'still-here');
  await sdk.trigger(privateName, 'still-here', { ok: 1 });
  assert.deepEqual(await onPrivate, { ok: 1 });
  assert.equal(signedIn.connection.state, 'connected');
  assert.equal(authorized.connection.state, 'connected');
});
