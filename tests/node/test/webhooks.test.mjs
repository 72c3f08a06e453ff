// Webhooks as a Laravel back end receives them: a local HTTP receiver checks every request with
// the official `pusher` SDK's `webhook()` (`isValid()`: the key header and the HMAC-SHA256
// signature of the raw body with the app secret), while real pusher-js clients cause the events.

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before, test } from 'node:test';

import { connected, startServer, subscribe, waitFor } from '../lib/harness.mjs';

/** A receiver on a free port; `respond(n, rawBody)` is the status of the n-th request (0-based). */
async function startReceiver(respond = () => 200) {
  const requests = [];
  const http = createServer((request, response) => {
    const chunks = [];
    request.on('data', (chunk) => chunks.push(chunk));
    request.on('end', () => {
      const rawBody = Buffer.concat(chunks).toString('utf8');
      const status = respond(requests.length, rawBody);
      requests.push({ headers: request.headers, rawBody, status });
      response.writeHead(status, { 'content-type': 'application/json' });
      response.end('{}');
    });
  });
  await new Promise((resolveListen) => http.listen(0, '127.0.0.1', resolveListen));
  return {
    url: `http://127.0.0.1:${http.address().port}/pusher/webhook`,
    requests,
    close: () => new Promise((resolveClose) => http.close(resolveClose)),
  };
}

const HOOKED = {
  id: 'hooked-app',
  key: 'hooked-key',
  secret: 'hooked-secret',
  client_events: true,
  subscription_count: true,
};

let receiver;
let server;
let respond = () => 200;

before(async () => {
  receiver = await startReceiver((n, rawBody) => respond(n, rawBody));
  server = await startServer({
    apps: { hooked: { ...HOOKED, webhooks: [{ url: receiver.url }] } },
    webhooks: { backoff_base_ms: 200, backoff_cap_ms: 1000 },
  });
});

after(async () => {
  await server?.stop();
  await receiver?.close();
});

/** The events of every accepted request, each checked with the SDK's `webhook().isValid()`. */
function accepted() {
  const sdk = server.sdk('hooked');
  const events = [];
  for (const request of receiver.requests.filter(({ status }) => status < 300)) {
    const webhook = sdk.webhook(request);
    assert.ok(webhook.isValid(), `the SDK validates ${request.rawBody}`);
    assert.ok(webhook.getTime() instanceof Date);
    events.push(...webhook.getEvents());
  }
  return events;
}

const names = (events) => events.map((event) => `${event.name} ${event.channel}`).sort();

test('every kind of webhook reaches the receiver and the pusher SDK validates each', async () => {
  const start = receiver.requests.length;
  const alice = server.client('hooked', { presence: { user_id: 'alice', user_info: { name: 'Alice' } } });
  const { channel: room } = await subscribe(alice, 'presence-room');
  await subscribe(alice, 'private-chat');
  room.trigger('client-typing', { on: true });
  const cache = alice.subscribe('cache-prices');
  await waitFor(cache, 'pusher:cache_miss');
  alice.unsubscribe('presence-room');

  const wanted = [
    'cache_miss cache-prices',
    'channel_occupied cache-prices',
    'channel_occupied presence-room',
    'channel_occupied private-chat',
    'channel_vacated presence-room',
    'client_event presence-room',
    'member_added presence-room',
    'member_removed presence-room',
  ];
  const mine = () => accepted().filter((event) => event.name !== 'subscription_count');
  await waitFor(() => receiver.requests.length > start && mine().length >= wanted.length, 10000);
  assert.deepEqual(names(mine()), wanted);

  const events = accepted();
  const clientEvent = events.find((event) => event.name === 'client_event');
  assert.deepEqual(clientEvent, {
    name: 'client_event',
    channel: 'presence-room',
    event: 'client-typing',
    data: JSON.stringify({ on: true }),
    socket_id: alice.connection.socket_id,
    user_id: 'alice',
  });
  const counts = events.filter((event) => event.name === 'subscription_count' && event.channel === 'private-chat');
  assert.deepEqual(counts[0], { name: 'subscription_count', channel: 'private-chat', subscription_count: 1 });
  alice.disconnect();
});

test('a page reload within 3 s sends nothing; staying away sends exactly one removal', async () => {
  const before = accepted().length;
  const first = server.client('hooked', { presence: { user_id: 'bob', user_info: {} } });
  await subscribe(first, 'presence-lobby');
  await waitFor(() => accepted().length >= before + 2, 10000);

  // The reload: the old page's socket closes, the new page subscribes again a moment later.
  first.disconnect();
  await new Promise((resolveDelay) => setTimeout(resolveDelay, 300));
  const second = server.client('hooked', { presence: { user_id: 'bob', user_info: {} } });
  await subscribe(second, 'presence-lobby');
  await new Promise((resolveDelay) => setTimeout(resolveDelay, 3500));
  const lobby = () => accepted().filter((event) => event.channel === 'presence-lobby' && event.name !== 'subscription_count');
  assert.deepEqual(names(lobby()), ['channel_occupied presence-lobby', 'member_added presence-lobby']);

  second.disconnect();
  await waitFor(() => lobby().length >= 4, 10000);
  await new Promise((resolveDelay) => setTimeout(resolveDelay, 500));
  assert.deepEqual(names(lobby()), [
    'channel_occupied presence-lobby',
    'channel_vacated presence-lobby',
    'member_added presence-lobby',
    'member_removed presence-lobby',
  ]);
});

test('a receiver answering 500 then 200 gets the webhook once, after a retry', async () => {
  const start = receiver.requests.length;
  let failed = false;
  respond = (_, rawBody) => {
    if (failed || !rawBody.includes('"channel_occupied"')) return 200;
    failed = true;
    return 500;
  };
  const client = server.client('hooked');
  await connected(client);
  await subscribe(client, 'retry-me');
  await waitFor(() => accepted().some((event) => event.channel === 'retry-me' && event.name === 'channel_occupied'), 10000);
  await new Promise((resolveDelay) => setTimeout(resolveDelay, 500));
  const mine = receiver.requests.slice(start).filter(({ rawBody }) => rawBody.includes('"channel_occupied"'));
  assert.deepEqual(mine.map(({ status }) => status), [500, 200]);
  assert.equal(mine[0].rawBody, mine[1].rawBody, 'the same body, signed the same');
  respond = () => 200;
  client.disconnect();
});

test('kill -9 with webhooks pending: they are delivered after the restart', async () => {
  // The receiver is down (503) when the events happen, so they wait in the queue.
  respond = () => 503;
  const client = server.client('hooked');
  await subscribe(client, 'survives-a-crash');
  await waitFor(() => receiver.requests.some(({ rawBody }) => rawBody.includes('survives-a-crash')), 10000);
  client.disconnect();
  await server.kill('SIGKILL');
  respond = () => 200;
  await server.start();
  await waitFor(
    () => accepted().some((event) => event.channel === 'survives-a-crash' && event.name === 'channel_occupied'),
    15000,
  );
});
