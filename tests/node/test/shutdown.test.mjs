// Graceful shutdown: sockets are closed with 4200 so pusher-js reconnects (to another node) at once.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { connected, errorCode, record, startServer, subscribe, unique, waitFor } from '../lib/harness.mjs';

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

test('SIGTERM closes connections with 4200 and pusher-js reconnects at once', async () => {
  const client = server.client();
  await connected(client);
  await subscribe(client, unique('shutdown'));
  const errors = record(client.connection, 'error');
  const states = record(client.connection, 'state_change');

  const exited = server.terminate();
  await waitFor(() => errors.events.some((e) => errorCode(e) === 4200));
  // 4200 means "reconnect now": pusher-js goes straight back to connecting, no back-off notice.
  await waitFor(() => states.events.some((s) => s.previous === 'connected' && s.current === 'connecting'));
  client.disconnect();
  const { code, signal } = await exited;
  assert.equal(signal, null);
  assert.equal(code, 0, 'herald exits cleanly after draining');
});
