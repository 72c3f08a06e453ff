// User sign-in, events sent to a user, and terminating a user's connections.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { connected, errorCode, record, signIn, unique, useServer, waitFor, waitForEvent } from '../lib/harness.mjs';

let server;
let sdk;
useServer((started) => {
  server = started;
  sdk = started.sdk();
});

/** A client signed in as `user` whose `#server-to-user-` channel is subscribed. */
async function signedIn(user) {
  const client = server.client('main', { user });
  const event = await signIn(client);
  assert.deepEqual(JSON.parse(event.data.user_data), user);
  await waitFor(() => client.user.serverToUserChannel?.subscribed);
  assert.equal(client.user.serverToUserChannel.name, `#server-to-user-${user.id}`);
  return client;
}

test('sign-in, then sendToUser reaches every connection of that user and no one else', async () => {
  const id = unique('user');
  const phone = await signedIn({ id, name: 'Phone' });
  const laptop = await signedIn({ id, name: 'Laptop' });
  const stranger = await signedIn({ id: unique('stranger') });
  const strangerGot = record(stranger.user, 'notification');

  const onPhone = waitForEvent(phone.user, 'notification');
  const onLaptop = waitForEvent(laptop.user, 'notification');
  const response = await sdk.sendToUser(id, 'notification', { text: 'you have mail' });
  assert.equal(response.status, 200);
  assert.deepEqual(await onPhone, { text: 'you have mail' });
  assert.deepEqual(await onLaptop, { text: 'you have mail' });

  // Barrier for the stranger: an event to its own user arrives after anything sent before.
  const strangerDone = waitForEvent(stranger.user, 'done');
  await sdk.sendToUser(stranger.user.user_data.id, 'done', {});
  await strangerDone;
  assert.deepEqual(strangerGot.events, []);
});

test('terminateUserConnections closes that user\'s connections with 4009; others stay', async () => {
  const id = unique('terminated');
  const victim = await signedIn({ id });
  const bystander = await signedIn({ id: unique('bystander') });
  const errors = record(victim.connection, 'error');
  const retries = record(victim.connection, 'connecting_in');

  const response = await sdk.terminateUserConnections(id);
  assert.equal(response.status, 200);
  await waitFor(() => victim.connection.state === 'disconnected' || victim.connection.state === 'unavailable');
  assert.ok(errors.events.map(errorCode).includes(4009), JSON.stringify(errors.events));
  assert.deepEqual(retries.events, [], '4009 is final: pusher-js does not reconnect');
  assert.equal(victim.connection.retryTimer ?? null, null);

  // The bystander is untouched.
  const got = waitForEvent(bystander.user, 'still-there');
  await sdk.sendToUser(bystander.user.user_data.id, 'still-there', { ok: true });
  assert.deepEqual(await got, { ok: true });
  assert.equal(bystander.connection.state, 'connected');
});

test('a sign-in with a bad signature closes the connection with 4009', async () => {
  const wrong = server.sdk('main', { secret: 'wrong-secret' });
  const client = server.client('main', {
    userAuthentication: {
      customHandler: ({ socketId }, callback) => callback(null, wrong.authenticateUser(socketId, { id: 'mallory' })),
    },
  });
  await connected(client);
  const errors = record(client.connection, 'error');
  client.signin();
  await waitFor(() => client.connection.state === 'disconnected');
  assert.ok(errors.events.map(errorCode).includes(4009), JSON.stringify(errors.events));
});

test('a connection may subscribe only to the #server-to-user- channel of the user it signed in as', async () => {
  const alice = await signedIn({ id: unique('alice') });
  const bobId = unique('bob');
  const error = waitForEvent(alice.connection, 'message', {
    filter: (event) => event.event === 'pusher:subscription_error' && event.channel === `#server-to-user-${bobId}`,
    label: 'subscription_error for another user\'s channel',
  });
  // pusher-js refuses '#' channel names itself, so the frame is sent raw.
  alice.connection.send_event('pusher:subscribe', { channel: `#server-to-user-${bobId}`, auth: '' });
  const refused = await error;
  assert.equal(refused.data.status, 403);

  // Nothing sent to bob reaches alice.
  const leaked = record(alice.connection, 'message');
  await sdk.sendToUser(bobId, 'secret', { for: 'bob' });
  const done = waitForEvent(alice.user, 'done');
  await sdk.sendToUser(alice.user.user_data.id, 'done', {});
  await done;
  assert.deepEqual(leaked.events.filter((e) => e.event === 'secret'), []);

  // A connection that has not signed in may not subscribe to any of them.
  const anonymous = server.client();
  await connected(anonymous);
  const anonymousError = waitForEvent(anonymous.connection, 'message', {
    filter: (event) => event.event === 'pusher:subscription_error',
  });
  anonymous.connection.send_event('pusher:subscribe', { channel: `#server-to-user-${bobId}`, auth: '' });
  assert.equal((await anonymousError).data.status, 403);
});
