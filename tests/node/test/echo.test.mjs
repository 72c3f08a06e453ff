// laravel-echo on the pusher broadcaster, the way a Laravel front end uses Herald.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { unique, useServer, waitForEvent, withTimeout } from '../lib/harness.mjs';

let server;
let sdk;
useServer((started) => {
  server = started;
  sdk = started.sdk();
});

/** Resolves once an Echo channel is subscribed; rejects on a subscription error. */
function subscribed(channel, label) {
  return withTimeout(
    new Promise((resolve, reject) => {
      channel.subscribed(resolve);
      channel.error((error) => reject(new Error(`${label}: ${JSON.stringify(error)}`)));
    }),
    5000,
    `Echo subscription to ${label}`,
  );
}

/** A callback and a promise of its next call (first argument), with a timeout. */
function nextCall(label) {
  let callback;
  const promise = new Promise((resolve) => {
    callback = resolve;
  });
  return { callback: (value) => callback(value), promise: withTimeout(promise, 5000, label) };
}

test('Echo.channel(...).listen(".event.name") receives an SDK trigger', async () => {
  const echo = server.echo();
  const name = unique('orders');
  const shipped = nextCall('.order.shipped');
  const namespaced = nextCall('OrderShipped');
  const channel = echo.channel(name).listen('.order.shipped', shipped.callback).listen('OrderShipped', namespaced.callback);
  await subscribed(channel, name);
  assert.match(echo.socketId(), /^\d+\.\d+$/);
  assert.equal(echo.connectionStatus(), 'connected');

  await sdk.trigger(name, 'order.shipped', { id: 7, status: 'shipped' });
  assert.deepEqual(await shipped.promise, { id: 7, status: 'shipped' });
  // Without the leading dot Echo prefixes the Laravel namespace.
  await sdk.trigger(name, 'App\\Events\\OrderShipped', { id: 8 });
  assert.deepEqual(await namespaced.promise, { id: 8 });
});

test('Echo.private(...) authorizes through the authorizer option and receives events', async () => {
  const echo = server.echo();
  const name = unique('account');
  const updated = nextCall('.balance.updated');
  const channel = echo.private(name).listen('.balance.updated', updated.callback);
  await subscribed(channel, `private-${name}`);
  await sdk.trigger(`private-${name}`, 'balance.updated', { balance: 100 });
  assert.deepEqual(await updated.promise, { balance: 100 });
});

test('Echo.join(...): here, joining and leaving', async () => {
  const name = unique('room');
  const alice = server.echo('main', { presence: { user_id: 'alice', user_info: { name: 'Alice' } } });
  const here = nextCall('here (alice)');
  const joining = nextCall('joining');
  const leaving = nextCall('leaving');
  alice.join(name).here(here.callback).joining(joining.callback).leaving(leaving.callback);
  assert.deepEqual(await here.promise, [{ name: 'Alice' }]);

  const bob = server.echo('main', { presence: { user_id: 'bob', user_info: { name: 'Bob' } } });
  const bobHere = nextCall('here (bob)');
  bob.join(name).here(bobHere.callback);
  const bobSees = await bobHere.promise;
  assert.deepEqual(
    bobSees.slice().sort((a, b) => a.name.localeCompare(b.name)),
    [{ name: 'Alice' }, { name: 'Bob' }],
  );
  assert.deepEqual(await joining.promise, { name: 'Bob' });

  bob.leave(name);
  assert.deepEqual(await leaving.promise, { name: 'Bob' });
});

test('Echo.private(...).whisper reaches listenForWhisper on another Echo instance', async () => {
  const name = unique('chat');
  const sender = server.echo();
  const receiver = server.echo();
  const senderChannel = sender.private(name);
  const typing = nextCall('whisper typing');
  const receiverChannel = receiver.private(name).listenForWhisper('typing', typing.callback);
  await Promise.all([subscribed(senderChannel, name), subscribed(receiverChannel, name)]);

  const echoed = [];
  senderChannel.listenForWhisper('typing', (data) => echoed.push(data));
  senderChannel.whisper('typing', { user: 'sender', typing: true });
  assert.deepEqual(await typing.promise, { user: 'sender', typing: true });

  // The whisper is not echoed back to the sender (barrier: a later event on the same channel).
  const done = waitForEvent(sender.connector.pusher.channel(`private-${name}`), 'sentinel');
  await sdk.trigger(`private-${name}`, 'sentinel', {});
  await done;
  assert.deepEqual(echoed, []);
});
