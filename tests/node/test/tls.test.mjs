// Native TLS: pusher-js with forceTLS and the `pusher` SDK with useTLS against Herald serving
// its own certificate, plain clients on the same port, and a tls_only app (4000, then pusher-js
// reconnects with TLS by itself).
//
// The certificate is self-signed, made by openssl for this file, and trusted explicitly:
// pusher-js's Node build opens sockets through faye-websocket with no TLS options, so this file
// wraps `Pusher.Runtime.createWebSocket` to hand faye `{ tls: { ca } }` (restored afterwards);
// the SDK gets an https.Agent with the same `ca`. Nothing turns certificate checks off.

import { after, afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Pusher, connected, errorCode, startServer, subscribe, unique, waitForEvent } from '../lib/harness.mjs';

const TLS_ONLY = { id: 'tls-only-app', key: 'tls-only-key', secret: 'tls-only-secret', tls_only: true };

let server;
let dir;
let ca;
const createWebSocket = Pusher.Runtime.createWebSocket;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'herald-tls-'));
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ], { stdio: 'ignore' });
  ca = readFileSync(cert);
  Pusher.Runtime.createWebSocket = function trustingTheTestCertificate(url) {
    const Socket = this.getWebSocketAPI();
    return new Socket(url, [], { tls: { ca } });
  };
  server = await startServer({ server: { tls_cert: cert, tls_key: key }, apps: { tlsOnly: TLS_ONLY } });
});
afterEach(() => server.disconnectAll());
after(async () => {
  Pusher.Runtime.createWebSocket = createWebSocket;
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** pusher-js options for `wss://127.0.0.1:{port}` (the port serves TLS and plain alike). */
function tlsOptions() {
  return { forceTLS: true, wssPort: server.port, enabledTransports: ['ws', 'wss'] };
}

test('pusher-js with forceTLS and the SDK with useTLS work against Herald\'s own certificate', async () => {
  const client = server.client('main', tlsOptions());
  await connected(client);
  assert.equal(client.connection.isUsingTLS(), true);
  const channel = unique('tls');
  const { channel: subscribed } = await subscribe(client, channel);
  const sdk = server.sdk('main', { useTLS: true, agent: new Agent({ ca }) });
  const received = waitForEvent(subscribed, 'greeting');
  const response = await sdk.trigger(channel, 'greeting', { over: 'https' });
  assert.equal(response.status, 200);
  assert.deepEqual(await received, { over: 'https' });
});

test('a plain client still connects on the same port', async () => {
  const client = server.client();
  await connected(client);
  assert.equal(client.connection.isUsingTLS(), false);
});

test('a tls_only app answers a plain connection with 4000 and pusher-js comes back over TLS', async () => {
  const client = server.client('tlsOnly');
  const refused = waitForEvent(client.connection, 'error', {
    filter: (event) => errorCode(event) !== null,
    label: 'the 4000 error',
  });
  assert.equal(errorCode(await refused), 4000);
  await connected(client, 10000);
  assert.equal(client.connection.isUsingTLS(), true);
  const { channel } = await subscribe(client, unique('secure'));
  assert.equal(channel.subscribed, true);
});
