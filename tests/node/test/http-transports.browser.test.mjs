// A browser without WebSockets (a network that blocks them looks the same to pusher-js): Debian's
// Chromium driven by playwright-core, on a page whose WebSocket constructor is removed before
// pusher-js loads. pusher-js falls back to its HTTP transports on Herald's main port, and every
// catalog broadcast still reaches the page through Echo, private channels authorized at Herald
// with a bearer token from another origin (CORS).
//
// Without /usr/bin/chromium (`apt-get install chromium`) the tests skip, unless CI=true or
// HERALD_REQUIRE_BROWSER=1, where they fail. Never downloads a browser.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { launchBrowser, skip } from '../lib/browser.mjs';
import { startServer } from '../lib/harness.mjs';
import { CATALOG, assertPayload } from '../lib/notifications.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const modules = resolve(here, '../node_modules');

/** The page: WebSocket gone first, then pusher-js and Echo's browser builds from node_modules. */
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>Herald without WebSockets</title>
<script>
  delete window.WebSocket;
  delete window.MozWebSocket;
  window.WebSocket = undefined;
</script>
<script src="/node_modules/pusher-js/dist/web/pusher.js"></script>
<script src="/node_modules/laravel-echo/dist/echo.iife.js"></script>
<body>no WebSocket here</body>`;

/** Serves the page and the two scripts (nothing else) on a port of its own: another origin. */
function startPageServer() {
  const files = {
    '/node_modules/pusher-js/dist/web/pusher.js': resolve(modules, 'pusher-js/dist/web/pusher.js'),
    '/node_modules/laravel-echo/dist/echo.iife.js': resolve(modules, 'laravel-echo/dist/echo.iife.js'),
  };
  const http = createServer(async (request, response) => {
    const path = new URL(request.url, 'http://page').pathname;
    if (path === '/') {
      response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE);
    } else if (files[path]) {
      response.writeHead(200, { 'content-type': 'text/javascript' }).end(await readFile(files[path]));
    } else {
      response.writeHead(404).end();
    }
  });
  return new Promise((resolvePromise) => {
    http.listen(0, '127.0.0.1', () => {
      const { port } = http.address();
      resolvePromise({ origin: `http://127.0.0.1:${port}`, close: () => new Promise((done) => http.close(done)) });
    });
  });
}

let server;
let pageServer;
let browser;

before(async () => {
  if (skip) return;
  pageServer = await startPageServer();
  server = await startServer({ auth: { cors_origins: [pageServer.origin] } });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  await pageServer?.close();
});

/** The page's Echo, as a front end configures it for the fallback: httpHost/httpPort set. */
function echoOptions(token) {
  const { key, wsHost, wsPort, httpHost, httpPort, httpsPort } = server.clientOptions('main');
  return {
    broadcaster: 'pusher',
    key,
    cluster: 'mt1',
    wsHost,
    wsPort,
    httpHost,
    httpPort,
    httpsPort,
    forceTLS: false,
    disableStats: true,
    authEndpoint: server.url('/broadcasting/auth'),
    auth: { headers: { Authorization: `Bearer ${token}` } },
  };
}

async function metric(name) {
  const text = await fetch(`http://127.0.0.1:${server.adminPort}/metrics`).then((response) => response.text());
  const line = text.split('\n').find((row) => row.startsWith(name));
  return line === undefined ? undefined : Number(line.split(' ').pop());
}

test('without a WebSocket constructor, Echo receives every catalog broadcast over HTTP', { skip }, async () => {
  const page = await browser.newPage();
  const logs = [];
  page.on('console', (message) => logs.push(`console.${message.type()}: ${message.text()}`));
  page.on('pageerror', (error) => logs.push(`pageerror: ${error.message}`));
  const diagnostics = () => `\n--- page log ---\n${logs.join('\n')}\n--- herald log ---\n${server.logs().slice(-3000)}`;
  await page.goto(`${pageServer.origin}/`);
  assert.equal(await page.evaluate(() => typeof window.WebSocket), 'undefined');

  const token = server.token({ user: 42, org: 7, roles: ['super_admin', 'csr_admin', 'finance_admin'], name: 'Ada' });
  const subscriptions = [];
  for (const entry of CATALOG) {
    for (const [kind, name] of entry.channels) subscriptions.push({ kind, name, event: `.${entry.event}` });
  }
  // Subscribe to every catalog channel and record what arrives, by channel and event.
  await page.evaluate(
    ({ options, subscriptions }) => {
      window.received = [];
      window.subscribed = new Set();
      const echo = new window.Echo.default({ ...options, Pusher: window.Pusher });
      window.echo = echo;
      const seen = new Set();
      for (const { kind, name, event } of subscriptions) {
        const channel = kind === 'private' ? echo.private(name) : echo.channel(name);
        if (!seen.has(`${kind}:${name}`)) {
          seen.add(`${kind}:${name}`);
          channel.subscribed(() => window.subscribed.add(name));
          channel.error((error) => console.error(`subscription to ${name} failed: ${JSON.stringify(error)}`));
        }
        channel.listen(event, (payload) => window.received.push({ name, event, payload }));
      }
    },
    { options: echoOptions(token), subscriptions },
  );
  const channels = [...new Set(subscriptions.map(({ name }) => name))];
  try {
    await page.waitForFunction((count) => window.subscribed.size === count, channels.length, { timeout: 15000 });
  } catch (error) {
    throw new Error(`${error.message.split('\n')[0]}: subscribed ${await page.evaluate(() => [...window.subscribed])}${diagnostics()}`);
  }
  const transport = await page.evaluate(() => window.echo.connector.pusher.connection.connection.transport.name);
  assert.match(transport, /^xhr_(streaming|polling)$/, 'pusher-js fell back to an HTTP transport');
  assert.equal(await metric(`herald_transport_connections{app="${server.apps.main.id}",transport="${transport}"}`), 1);
  assert.equal(await metric(`herald_transport_connections{app="${server.apps.main.id}",transport="ws"}`), 0);

  const sdk = server.sdk();
  for (const [index, entry] of CATALOG.entries()) {
    const id = `browser-http-${index}-${Math.random().toString(36).slice(2, 8)}`;
    const response = await sdk.post({
      path: '/domain-events',
      body: { id, type: entry.type, occurred_at: new Date().toISOString(), data: entry.data },
    });
    assert.equal(response.status, 202);
  }
  const expected = CATALOG.flatMap((entry) => entry.channels.map(([, name]) => ({ name, event: `.${entry.event}` })));
  try {
    await page.waitForFunction((count) => window.received.length >= count, expected.length, { timeout: 15000 });
  } catch (error) {
    const got = await page.evaluate(() => window.received.map(({ name, event }) => `${event} on ${name}`));
    throw new Error(`${error.message.split('\n')[0]}: received ${JSON.stringify(got)}${diagnostics()}`);
  }
  const received = await page.evaluate(() => window.received);
  assert.equal(received.length, expected.length, 'each broadcast once per channel');
  for (const entry of CATALOG) {
    for (const [, name] of entry.channels) {
      const got = received.find((item) => item.name === name && item.event === `.${entry.event}`);
      assert.ok(got, `${entry.event} on ${name}`);
      assertPayload(got.payload, { type: entry.event, priority: entry.priority, fields: entry.fields }, name);
    }
  }
  await page.close();
});
