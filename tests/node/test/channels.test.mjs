// Channels: public, private, encrypted and cache channels, fed by the `pusher` server SDK.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  barrier,
  clientBarrier,
  connected,
  rawFrames,
  record,
  subscribe,
  unique,
  useServer,
  waitFor,
  waitForEvent,
} from '../lib/harness.mjs';

let server;
let sdk;
useServer((started) => {
  server = started;
  sdk = started.sdk();
});

test('public channel: subscribe, then an SDK trigger arrives with the exact payload', async () => {
  const client = server.client();
  await connected(client);
  const frames = rawFrames(client);
  const name = unique('orders');
  const { channel } = await subscribe(client, name);

  const payload = { message: 'hello', n: 42, float: 1.5, nested: { list: [1, 'two', null], ok: true }, text: 'héllo ✓ "quoted" \\ back' };
  const received = waitForEvent(channel, 'order-shipped');
  const response = await sdk.trigger(name, 'order-shipped', payload);
  assert.equal(response.status, 200);
  assert.deepEqual(await response.json(), {});
  assert.deepEqual(await received, payload);

  // On the wire: the subscription acknowledgement, then the event with data as the exact string
  // the SDK sent (JSON-encoded once, never re-serialized).
  assert.deepEqual(frames[0], { event: 'pusher_internal:subscription_succeeded', channel: name, data: '{}' });
  const frame = frames.find((f) => f.event === 'order-shipped');
  assert.deepEqual(frame, { event: 'order-shipped', channel: name, data: JSON.stringify(payload) });

  // A string payload is relayed as is.
  const plain = waitForEvent(channel, 'plain');
  await sdk.trigger(name, 'plain', 'just text, not JSON');
  assert.equal(await plain, 'just text, not JSON');
});

test('unsubscribed clients stop receiving a channel', async () => {
  const client = server.client();
  await connected(client);
  const frames = rawFrames(client);
  const kept = unique('kept');
  const dropped = unique('dropped');
  const { channel: keptChannel } = await subscribe(client, kept);
  await subscribe(client, dropped);
  client.unsubscribe(dropped);
  await clientBarrier(client); // the server has handled the unsubscribe
  const info = await (await sdk.get({ path: `/channels/${dropped}`, params: { info: 'subscription_count' } })).json();
  assert.deepEqual(info, { occupied: false, subscription_count: 0 });

  await sdk.trigger(dropped, 'news', { n: 1 });
  await barrier(sdk, keptChannel);
  assert.deepEqual(frames.filter((f) => f.channel === dropped && f.event === 'news'), [], 'nothing on the wire');
});

test('private channel: authorized through the SDK signature, receives triggers', async () => {
  const client = server.client();
  await connected(client);
  const name = unique('private-account');
  const { channel } = await subscribe(client, name);
  const received = waitForEvent(channel, 'balance');
  await sdk.trigger(name, 'balance', { amount: 10 });
  assert.deepEqual(await received, { amount: 10 });
});

test('private channel with a bad signature: pusher:subscription_error AuthError 401', async () => {
  const wrong = server.sdk('main', { secret: 'not-the-secret' });
  const client = server.client('main', {
    authorize: ({ socketId, channelName }, callback) => callback(null, wrong.authorizeChannel(socketId, channelName)),
  });
  await connected(client);
  const name = unique('private-denied');
  await assert.rejects(subscribe(client, name), (error) => {
    assert.equal(error.data.type, 'AuthError');
    assert.equal(error.data.status, 401);
    assert.equal(typeof error.data.error, 'string');
    return true;
  });
  assert.equal(client.connection.state, 'connected', 'a refused subscription does not close the socket');
  const info = await (await sdk.get({ path: `/channels/${name}` })).json();
  assert.equal(info.occupied, false);
});

test('encrypted channel: SDK encrypts, the server relays ciphertext, pusher-js decrypts', async () => {
  const client = server.client();
  await connected(client);
  const frames = rawFrames(client);
  const name = unique('private-encrypted-vault');
  const { channel } = await subscribe(client, name);

  const secret = { pin: '1234', note: 'top secret ✓' };
  const received = waitForEvent(channel, 'opened');
  await sdk.trigger(name, 'opened', secret);
  assert.deepEqual(await received, secret);

  const frame = frames.find((f) => f.event === 'opened');
  const wire = JSON.parse(frame.data);
  assert.deepEqual(Object.keys(wire).sort(), ['ciphertext', 'nonce']);
  assert.equal(frame.data.includes('1234'), false, 'no plaintext on the wire');
});

test('encrypted channel: a trigger mixing it with another channel is refused (400)', async () => {
  // The SDK refuses this itself, so the request is built by hand with the SDK's signing.
  const name = unique('private-encrypted-mixed');
  await assert.rejects(
    sdk.post({ path: '/events', body: { name: 'e', data: '{}', channels: [name, unique('public')] } }),
    (error) => error.status === 400,
  );
});

test('cache channel: a new subscriber gets the last event right after subscribing', async () => {
  const name = unique('cache-scores');
  await sdk.trigger(name, 'score', { home: 1, away: 0 });
  await sdk.trigger(name, 'score', { home: 2, away: 0 });

  const client = server.client();
  await connected(client);
  const frames = rawFrames(client);
  const channel = client.subscribe(name);
  const cached = waitForEvent(channel, 'score');
  const misses = record(channel, 'pusher:cache_miss');
  await subscribe(client, name);
  assert.deepEqual(await cached, { home: 2, away: 0 });
  assert.deepEqual(
    frames.map((f) => f.event),
    ['pusher_internal:subscription_succeeded', 'score'],
    'the cached event follows subscription_succeeded',
  );

  const info = await (await sdk.get({ path: `/channels/${name}`, params: { info: 'cache' } })).json();
  assert.equal(info.occupied, true);
  assert.equal(info.cache.data, JSON.stringify({ home: 2, away: 0 }));
  assert.ok(info.cache.ttl > 0 && info.cache.ttl <= 1800);

  await barrier(sdk, channel); // (this replaces the cached event, so it comes last)
  assert.deepEqual(misses.events, [], 'no cache_miss when there was an event');
});

test('cache channel: pusher:cache_miss when nothing was published yet', async () => {
  const client = server.client();
  await connected(client);
  const name = unique('cache-empty');
  const channel = client.subscribe(name);
  const miss = waitForEvent(channel, 'pusher:cache_miss');
  await subscribe(client, name);
  await miss;

  // Private cache channels behave the same.
  const privateName = unique('private-cache-empty');
  const privateChannel = client.subscribe(privateName);
  const privateMiss = waitForEvent(privateChannel, 'pusher:cache_miss');
  await subscribe(client, privateName);
  await privateMiss;
});

test('multi-channel trigger: trigger([a, b]) reaches both channels', async () => {
  const onA = server.client();
  const onB = server.client();
  const onBoth = server.client();
  await Promise.all([connected(onA), connected(onB), connected(onBoth)]);
  const a = unique('multi-a');
  const b = unique('multi-b');
  const { channel: aChannel } = await subscribe(onA, a);
  const { channel: bChannel } = await subscribe(onB, b);
  const { channel: bothA } = await subscribe(onBoth, a);
  const { channel: bothB } = await subscribe(onBoth, b);

  const gotA = waitForEvent(aChannel, 'fanout');
  const gotB = waitForEvent(bChannel, 'fanout');
  const gotBothA = waitForEvent(bothA, 'fanout');
  const gotBothB = waitForEvent(bothB, 'fanout');
  await sdk.trigger([a, b], 'fanout', { to: 'both' });
  assert.deepEqual(await Promise.all([gotA, gotB, gotBothA, gotBothB]), Array(4).fill({ to: 'both' }));
});

test('batch trigger: every event of triggerBatch arrives, in order', async () => {
  const client = server.client();
  await connected(client);
  const first = unique('batch-1');
  const second = unique('batch-2');
  const { channel: one } = await subscribe(client, first);
  const { channel: two } = await subscribe(client, second);
  const order = [];
  one.bind_global((event, data) => event.startsWith('step') && order.push([first, event, data]));
  two.bind_global((event, data) => event.startsWith('step') && order.push([second, event, data]));

  const response = await sdk.triggerBatch([
    { channel: first, name: 'step-1', data: { n: 1 } },
    { channel: second, name: 'step-2', data: { n: 2 } },
    { channel: first, name: 'step-3', data: 'three' },
  ]);
  assert.deepEqual(await response.json(), {});
  await waitFor(() => order.length >= 3);
  await barrier(sdk, one);
  assert.deepEqual(order, [
    [first, 'step-1', { n: 1 }],
    [second, 'step-2', { n: 2 }],
    [first, 'step-3', 'three'],
  ]);
});

test('batch trigger with info: one result per event', async () => {
  const client = server.client();
  await connected(client);
  const name = unique('batch-info');
  await subscribe(client, name);
  const response = await sdk.triggerBatch([
    { channel: name, name: 'a', data: {}, info: 'subscription_count' },
    { channel: unique('batch-empty'), name: 'b', data: {}, info: 'subscription_count' },
  ]);
  assert.deepEqual(await response.json(), { batch: [{ subscription_count: 1 }, { subscription_count: 0 }] });
});

test('socket exclusion: the socket named by socket_id does not get the event, others do', async () => {
  const excluded = server.client();
  const other = server.client();
  const [excludedId] = await Promise.all([connected(excluded), connected(other)]);
  const name = unique('exclusion');
  const { channel: excludedChannel } = await subscribe(excluded, name);
  const { channel: otherChannel } = await subscribe(other, name);
  const missed = record(excludedChannel, 'update');

  const received = waitForEvent(otherChannel, 'update');
  await sdk.trigger(name, 'update', { v: 1 }, { socket_id: excludedId });
  assert.deepEqual(await received, { v: 1 });
  await barrier(sdk, excludedChannel);
  assert.deepEqual(missed.events, [], 'the excluded socket never received it');
});

test('trigger with info=subscription_count returns the counts per channel', async () => {
  const clients = [server.client(), server.client()];
  await Promise.all(clients.map((c) => connected(c)));
  const busy = unique('info-busy');
  const empty = unique('info-empty');
  for (const c of clients) await subscribe(c, busy);
  const response = await sdk.trigger([busy, empty], 'ping', {}, { info: 'subscription_count' });
  assert.deepEqual(await response.json(), {
    channels: { [busy]: { subscription_count: 2 }, [empty]: { subscription_count: 0 } },
  });
});
