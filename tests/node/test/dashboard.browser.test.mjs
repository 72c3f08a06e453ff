// The admin dashboard (`/dashboard` on the admin listener) in a real browser against the real
// binary: Debian's Chromium driven by playwright-core. The page follows the Server-Sent Events
// stream: live counters, deliveries in the feed (from the signed ingest and from its own "Send test
// broadcast" button), and it recovers by itself, without a reload, after the server is killed and
// a new process starts on the same ports and database. Leaves test-artifacts/dashboard.png.
//
// Without /usr/bin/chromium (`apt-get install chromium`) the test skips, unless CI=true or
// HERALD_REQUIRE_BROWSER=1, where it fails. Never downloads a browser.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { launchBrowser, skip } from '../lib/browser.mjs';
import { startServer } from '../lib/harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../../..');

let server;
let browser;
let page;
const logs = [];

before(async () => {
  if (skip) return;
  server = await startServer();
  assert.ok(server.adminPort, 'the banner names the admin listener');
  browser = await launchBrowser();
});

after(async () => {
  await page?.close().catch(() => {});
  await browser?.close();
  await server?.stop();
});

function diagnostics() {
  return `\n--- page log ---\n${logs.join('\n')}\n--- herald log ---\n${server.logs().slice(-3000)}`;
}

/** Waits for `selector`, failing with the page's and the server's logs. */
async function expectVisible(selector, timeout = 5000) {
  try {
    await page.waitForSelector(selector, { timeout, state: 'attached' });
  } catch (error) {
    throw new Error(`${error.message.split('\n')[0]}${diagnostics()}`);
  }
}

const feedRow = (eventId, status = 'delivered') => `#feed tr[data-event-id="${eventId}"][data-status="${status}"]`;

async function ingest(event) {
  const response = await server.sdk().post({ path: '/domain-events', body: event });
  const { events } = await response.json();
  assert.equal(events[0].status, 'accepted', JSON.stringify(events));
}

function securityAlert(id, severity = 'low') {
  return { id, type: 'security.alert', data: { alert_type: 'login_anomaly', message: `alert ${id}`, severity } };
}

test('the dashboard shows live deliveries and recovers by itself after a server crash', { skip }, async () => {
  page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  page.on('console', (message) => logs.push(`console.${message.type()}: ${message.text()}`));
  page.on('pageerror', (error) => logs.push(`pageerror: ${error.message}`));
  const dashboard = `http://127.0.0.1:${server.adminPort}/dashboard`;
  const response = await page.goto(dashboard);
  assert.equal(response.status(), 200, 'a loopback admin listener without a token opens directly');
  assert.match(response.headers()['content-security-policy'], /default-src 'self'/);

  await expectVisible('#connection[data-state="live"]');
  assert.equal(await page.textContent('#connection'), 'live');
  await expectVisible('#apps tr[data-app="main-app"]');
  await expectVisible('#queue tr[data-lane="critical-broadcasts"]');
  assert.match(await page.textContent('#driver'), /herald/);

  // A socket on the main app shows up in the counters.
  const client = server.client();
  await new Promise((resolveConnected) => client.connection.bind('connected', resolveConnected));
  await page.waitForFunction(
    () => document.querySelector('#apps tr[data-app="main-app"] td')?.textContent === '1',
    null,
    { timeout: 5000 },
  );
  // … and in the count by transport (a pusher-js client in Node connects over WebSocket).
  assert.match(await page.textContent('#apps tr[data-app="main-app"] td.transports'), /\bws 1\b/);

  // The signed ingest: the delivery appears in the feed with its channels, lane and latency.
  await ingest(securityAlert('dash-before'));
  await expectVisible(feedRow('dash-before'));
  const row = page.locator(feedRow('dash-before'));
  assert.match(await row.innerText(), /security\.alert/);
  assert.match(await row.innerText(), /private-security-alerts/);
  assert.match(await row.innerText(), /\d+ ms/);
  await ingest(securityAlert('dash-critical', 'critical'));
  await expectVisible(feedRow('dash-critical'));
  assert.match(await page.locator(feedRow('dash-critical')).innerText(), /critical-broadcasts/);

  // "Send test broadcast" goes through the same pipeline.
  await page.selectOption('#test-type', 'maintenance');
  await page.click('#test-send');
  await page.waitForFunction(() => /accepted/.test(document.querySelector('#test-result').textContent), null, {
    timeout: 5000,
  });
  const sent = (await page.textContent('#test-result')).match(/event ([0-9a-f-]{36})/);
  assert.ok(sent, await page.textContent('#test-result'));
  await expectVisible(feedRow(sent[1]));

  // The server crashes: the page says so and keeps trying, without a reload.
  await page.evaluate(() => {
    window.heraldNotReloaded = true;
  });
  await server.kill('SIGKILL');
  await expectVisible('#connection[data-state="reconnecting"]');
  assert.equal(await page.textContent('#connection'), 'reconnecting…');

  // A new process on the same ports and database: live again, and new deliveries keep coming.
  await server.start();
  await expectVisible('#connection[data-state="live"]', 15000);
  await ingest(securityAlert('dash-after'));
  await expectVisible(feedRow('dash-after'));
  assert.equal(await page.evaluate(() => window.heraldNotReloaded), true, 'recovered without a reload');
  assert.equal(await page.locator('#feed tr[data-event-id="dash-before"]').count(), 1, 'no repeats after the catch-up');
  // Newest first.
  const order = await page.locator('#feed tbody tr[data-event-id]').evaluateAll((rows) => rows.map((r) => r.dataset.eventId));
  assert.equal(order[0], 'dash-after', order.join(', '));
  assert.ok(order.indexOf('dash-before') > order.indexOf('dash-critical'), order.join(', '));
  assert.deepEqual(logs.filter((line) => line.startsWith('pageerror')), [], diagnostics());
  // The counters of the new process (since its start) count the delivery too.
  await page.waitForFunction(
    () => /Delivered1 \(critical 0\)/.test(document.querySelector('#delivery').textContent),
    null,
    { timeout: 5000 },
  );

  mkdirSync(join(repo, 'test-artifacts'), { recursive: true });
  await page.screenshot({ path: join(repo, 'test-artifacts/dashboard.png'), fullPage: true });
  client.disconnect();
});

test('the first paint shows the status before the stream says anything', { skip }, async () => {
  const context = await browser.newContext();
  const first = await context.newPage();
  first.on('pageerror', (error) => logs.push(`pageerror: ${error.message}`));
  // The stream never answers: whatever the page shows came with the page itself.
  await first.route('**/admin/api/stream', () => {});
  try {
    await first.goto(`http://127.0.0.1:${server.adminPort}/dashboard`);
    await first.waitForSelector('#apps tr[data-app="main-app"]', { timeout: 5000, state: 'attached' });
    await first.waitForSelector('#queue tr[data-lane="critical-broadcasts"]', { timeout: 5000, state: 'attached' });
    assert.match(await first.textContent('#driver'), /herald/);
    assert.match(await first.textContent('#version'), /^v\d/);
    assert.equal(await first.textContent('#connection'), 'connecting…', 'the stream is still to come');
    assert.deepEqual(logs.filter((line) => line.startsWith('pageerror')), [], diagnostics());
  } finally {
    await context.close();
  }
});
