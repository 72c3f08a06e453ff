// Subscription counting (`subscription_count = true` on the app): real pusher-js clients hear
// `pusher:subscription_count` on the channel, with `channel.subscriptionCount` set, as
// connections come and go. Presence channels and apps without counting hear nothing.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { connected, record, subscribe, unique, useServer, waitFor } from '../lib/harness.mjs';

const counted = { id: 'counted-app', key: 'counted-key', secret: 'counted-secret', subscription_count: true };

let server;
useServer((started) => (server = started), { apps: { counted } });

/** A connected client of the counting app. */
async function client() {
  const pusher = server.client('counted');
  await connected(pusher);
  return pusher;
}

/** Waits until the recorded counts end with `count`. */
function until(recorded, count) {
  return waitFor(() => recorded.events.at(-1)?.subscription_count === count, undefined);
}

test('every subscriber hears the count as connections subscribe, unsubscribe and leave', async () => {
  const name = unique('room');
  const first = await client();
  const firstChannel = first.subscribe(name);
  const firstCounts = record(firstChannel, 'pusher:subscription_count');
  await subscribe(first, name);
  await until(firstCounts, 1);
  assert.deepEqual(firstCounts.events.at(-1), { subscription_count: 1 });

  const second = await client();
  const secondChannel = second.subscribe(name);
  const secondCounts = record(secondChannel, 'pusher:subscription_count');
  await until(secondCounts, 2);
  await until(firstCounts, 2);
  assert.equal(firstChannel.subscriptionCount, 2);
  assert.equal(secondChannel.subscriptionCount, 2);

  const third = await client();
  third.subscribe(name);
  await until(firstCounts, 3);
  second.unsubscribe(name);
  await until(firstCounts, 2);
  third.disconnect();
  await until(firstCounts, 1);
  assert.equal(firstChannel.subscriptionCount, 1);
  assert.deepEqual(
    firstCounts.events.map((event) => event.subscription_count),
    [1, 2, 3, 2, 1],
  );
});

test('presence channels hear no subscription count', async () => {
  const name = unique('presence-room');
  const member = server.client('counted', { presence: { user_id: 'm1', user_info: {} } });
  const channel = member.subscribe(name);
  const counts = record(channel, 'pusher:subscription_count');
  await subscribe(member, name);
  const other = server.client('counted', { presence: { user_id: 'm2', user_info: {} } });
  const joined = record(channel, 'pusher:member_added');
  await subscribe(other, name);
  await joined.until(1);
  assert.deepEqual(counts.events, []);
});

test('an app without subscription counting sends no count', async () => {
  const name = unique('quiet');
  const first = server.client('main');
  const channel = first.subscribe(name);
  const counts = record(channel, 'pusher:subscription_count');
  await subscribe(first, name);
  const second = server.client('main');
  await subscribe(second, name);
  // Barrier: an event triggered after the second subscription arrives after any count would.
  const done = record(channel, 'done');
  await server.sdk('main').trigger(name, 'done', {});
  await done.until(1);
  assert.deepEqual(counts.events, []);
});
