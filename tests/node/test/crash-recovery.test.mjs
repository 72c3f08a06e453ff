// Crash recovery as pusher-js sees it: `kill -9` while 1 000 accepted events are queued, a
// restart on the same ports, and pusher-js reconnecting by itself. The restarted server holds the
// recovered backlog until the clients are back (the reconnection grace), so every accepted event
// reaches the reconnected subscriber.
//
// The restart is slower than pusher-js's first retry (one second after the drop), as a restart
// on a busy machine is: pusher-js then tries again only after its 15 s connection timeout, and
// the grace must cover that.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { startServer, waitFor } from '../lib/harness.mjs';

const EVENTS = 1000;
const BATCH = 100;

// One queue worker: delivery is slower than ingest, so a backlog is queued when the kill comes.
process.env.HERALD_NOTIFICATIONS__WORKERS = '1';

let server;

before(async () => {
  server = await startServer();
});

after(async () => {
  await server?.stop();
});

function maintenance(n) {
  return {
    id: `crash-${n}`,
    type: 'system.maintenance',
    data: {
      maintenance_type: 'scheduled',
      scheduled_for: '2026-12-01T03:00:00Z',
      duration_minutes: n % 600,
      affected_services: ['api'],
    },
  };
}

test('kill -9 during a backlog: every accepted event reaches the reconnecting pusher-js subscriber', async () => {
  const client = server.client('main');
  const received = new Set();
  const channel = client.subscribe('system-maintenance');
  // Delivery is at least once: a broadcast delivered just before the kill may come again, with
  // the same notification id.
  channel.bind('system.maintenance', (payload) => received.add(payload.id));
  await waitFor(channel, 'pusher:subscription_succeeded');

  const sdk = server.sdk('main');
  for (let start = 0; start < EVENTS; start += BATCH) {
    const events = Array.from({ length: BATCH }, (_, n) => maintenance(start + n));
    const response = await sdk.post({ path: '/domain-events', body: { events } });
    assert.equal(response.status, 202);
  }
  const beforeKill = received.size;
  await server.kill('SIGKILL');
  await new Promise((resolveDelay) => setTimeout(resolveDelay, 1500));
  await server.start();
  // pusher-js notices the dead socket, reconnects and resubscribes by itself.
  await waitFor(() => received.size >= EVENTS, 60000).catch((error) => {
    error.message += ` (received ${received.size} of ${EVENTS}, ${beforeKill} before the kill)`;
    throw error;
  });
  assert.equal(received.size, EVENTS, `received ${received.size} of ${EVENTS} (${beforeKill} before the kill)`);
  console.log(`# delivered before the kill: ${beforeKill}; after the restart: ${EVENTS - beforeKill}`);
});
