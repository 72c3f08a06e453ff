// Client events (`client-*`): relayed to the other members only, where and as fast as allowed.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  barrier,
  connected,
  errorCode,
  rawFrames,
  record,
  subscribe,
  unique,
  useServer,
  waitForEvent,
  withTimeout,
  TRANSPORTS,
} from '../lib/harness.mjs';

let server;
let sdk;
useServer((started) => {
  server = started;
  sdk = started.sdk();
});

/** Two connected clients of `app` subscribed to `name`. */
async function pair(name, app = 'main', options = [{}, {}]) {
  const sender = server.client(app, options[0]);
  const receiver = server.client(app, options[1]);
  await Promise.all([connected(sender), connected(receiver)]);
  const { channel: senderChannel } = await subscribe(sender, name);
  const { channel: receiverChannel } = await subscribe(receiver, name);
  return { sender, receiver, senderChannel, receiverChannel };
}

test('client event on a private channel: received by the other member, not echoed to the sender', async () => {
  const name = unique('private-chat');
  const { sender, senderChannel, receiverChannel } = await pair(name);
  const echoed = record(senderChannel, 'client-typing');
  const received = waitForEvent(receiverChannel, 'client-typing');
  assert.equal(senderChannel.trigger('client-typing', { who: 'sender', typing: true }), true);
  assert.deepEqual(await received, { who: 'sender', typing: true });

  await barrier(sdk, senderChannel);
  assert.deepEqual(echoed.events, [], 'the sender never gets its own client event');
  assert.equal(sender.connection.state, 'connected');
});

test('client event on a presence channel carries the sender user_id', async () => {
  const name = unique('presence-chat');
  const { senderChannel, receiverChannel } = await pair(name, 'main', [
    { presence: { user_id: 'sender-1', user_info: {} } },
    { presence: { user_id: 'receiver-1', user_info: {} } },
  ]);
  const received = new Promise((resolve) => {
    receiverChannel.bind('client-wave', (data, metadata) => resolve({ data, metadata }));
  });
  senderChannel.trigger('client-wave', { hi: 1 });
  const { data, metadata } = await withTimeout(received, 5000, 'client-wave');
  assert.deepEqual(data, { hi: 1 });
  assert.equal(metadata.user_id, 'sender-1');
});

test('client event on a public channel is refused with pusher:error and not relayed', async () => {
  const name = unique('public-chat');
  const { sender, senderChannel, receiverChannel } = await pair(name);
  const relayed = record(receiverChannel, 'client-nope');
  const error = waitForEvent(sender.connection, 'error');
  senderChannel.trigger('client-nope', { x: 1 });
  const event = await error;
  assert.equal(event.type, 'PusherError');
  assert.match(event.data.message, /private and presence/);
  await barrier(sdk, receiverChannel);
  assert.deepEqual(relayed.events, []);
  assert.equal(sender.connection.state, 'connected', 'the sender is not disconnected');
});

test('client event when the app disables client events is refused and not relayed', async () => {
  const quiet = server.sdk('noClientEvents');
  const name = unique('private-quiet');
  const { sender, senderChannel, receiverChannel } = await pair(name, 'noClientEvents');
  const relayed = record(receiverChannel, 'client-blocked');
  const error = waitForEvent(sender.connection, 'error');
  senderChannel.trigger('client-blocked', { x: 1 });
  const event = await error;
  assert.equal(event.type, 'PusherError');
  assert.match(event.data.message, /not enabled/);
  await barrier(quiet, receiverChannel);
  assert.deepEqual(relayed.events, []);
  assert.equal(sender.connection.state, 'connected');
});

test('client events over 10 per second: pusher:error 4301, the socket stays open', async () => {
  const name = unique('private-flood');
  const { sender, senderChannel, receiverChannel } = await pair(name);
  const frames = rawFrames(sender);
  const errors = record(sender.connection, 'error');
  const relayed = record(receiverChannel, 'client-flood');

  for (let i = 1; i <= 12; i += 1) senderChannel.trigger('client-flood', { i });
  await errors.until(2);
  assert.deepEqual(errors.events.map(errorCode), [4301, 4301]);
  // pusher:error carries its data as an object (as Pusher does), not as a JSON string.
  const errorFrames = frames.filter((f) => f.event === 'pusher:error').map((f) => f.data);
  assert.equal(errorFrames[0].code, 4301);

  await barrier(sdk, receiverChannel);
  const order = relayed.events.map((d) => d.i);
  if (TRANSPORTS.includes('ws')) {
    assert.deepEqual(order, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 'the first 10 were relayed');
  } else {
    // Over HTTP pusher-js posts each event in a request of its own, and requests made in the
    // same tick may arrive in any order: 10 of the 12 are relayed, whichever came first.
    assert.equal(order.length, 10, 'ten were relayed');
    assert.equal(new Set(order).size, 10, 'none twice');
  }

  // Not closed: the same socket still receives events.
  await barrier(sdk, senderChannel);
  assert.equal(sender.connection.state, 'connected');
  assert.equal(frames.some((f) => f.event === 'pusher:error' && f.data.code !== 4301), false);
});

test('client events are refused on encrypted channels, on unsubscribed channels and over 10 KB', async () => {
  const encrypted = unique('private-encrypted-chat');
  const { sender, senderChannel, receiverChannel } = await pair(encrypted);
  const relayed = record(receiverChannel, 'client-secret');
  const errors = record(sender.connection, 'error');
  // pusher-js refuses these itself, so the frames are sent raw.
  sender.connection.send_event('client-secret', { x: 1 }, encrypted);
  await errors.until(1);
  assert.equal(errors.events[0].type, 'PusherError');

  const elsewhere = unique('private-not-subscribed');
  sender.connection.send_event('client-stray', { x: 1 }, elsewhere);
  await errors.until(2);
  assert.match(errors.events[1].data.message, /subscribed/);

  const name = unique('private-big');
  const big = await pair(name);
  const bigRelayed = record(big.receiverChannel, 'client-big');
  const bigErrors = record(big.sender.connection, 'error');
  big.senderChannel.trigger('client-big', 'x'.repeat(10241));
  await bigErrors.until(1);
  assert.match(bigErrors.events[0].data.message, /10240/);

  await barrier(sdk, receiverChannel);
  await barrier(sdk, big.receiverChannel);
  assert.deepEqual(relayed.events, []);
  assert.deepEqual(bigRelayed.events, []);
  assert.equal(sender.connection.state, 'connected');
  assert.equal(big.sender.connection.state, 'connected');
});
