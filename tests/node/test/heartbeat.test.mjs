// Heartbeats, on a server with a 1 s activity timeout and a 1 s pong timeout.

import { after, afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { APPS, connected, errorCode, rawSocket, record, startServer, waitFor, withTimeout } from '../lib/harness.mjs';

let server;
const sockets = [];
before(async () => {
  server = await startServer({ server: { activity_timeout_secs: 1, pong_timeout_secs: 1 } });
});
afterEach(() => {
  for (const s of sockets.splice(0)) s.close();
  server.disconnectAll();
});
after(async () => {
  await server?.stop();
});

test('the configured activity timeout is announced, and pusher-js adopts it', async () => {
  const client = server.client();
  await connected(client);
  assert.equal(client.connection.activityTimeout, 1000);
});

test('silence: the server sends pusher:ping; pusher:pong keeps the socket; no pong closes it with 4201', async () => {
  const raw = rawSocket(server, `/app/${APPS.main.key}?protocol=7`);
  sockets.push(raw);
  await raw.frame('pusher:connection_established');
  const pings = () => raw.frames.filter((f) => f.event === 'pusher:ping');

  await waitFor(() => pings().length === 1, 3000);
  raw.send({ event: 'pusher:pong', data: {} });
  // Answered: the socket lives on until the next round of silence, and is pinged again.
  await waitFor(() => pings().length === 2, 3000);
  // Not answered this time.
  const { code } = await raw.closed(4000);
  assert.equal(code, 4201);
  const errors = raw.frames.filter((f) => f.event === 'pusher:error');
  assert.deepEqual(errors.map((f) => f.data.code), [4201]);
});

test('WebSocket ping frames are answered with pong frames', async () => {
  const raw = rawSocket(server, `/app/${APPS.main.key}?protocol=7`);
  sockets.push(raw);
  await raw.frame('pusher:connection_established');
  await withTimeout(new Promise((resolve) => raw.socket.ping('hello', resolve)), 2000, 'a pong frame');
});

test('pusher-js keeps a connection alive through several heartbeat rounds', async () => {
  const client = server.client();
  await connected(client);
  const errors = record(client.connection, 'error');
  const states = record(client.connection, 'state_change');
  const transport = client.connection.connection;
  const beats = [];
  transport.bind('ping', () => beats.push('server ping'));
  transport.bind('pong', () => beats.push('server pong'));
  // Each round takes about 1 s; a missed pong would close the socket within 1 s of it.
  await waitFor(() => beats.length >= 3, 6000);
  assert.equal(client.connection.state, 'connected');
  assert.deepEqual(states.events, []);
  assert.deepEqual(errors.events.map(errorCode), []);
});
