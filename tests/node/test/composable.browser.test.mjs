// The front end's composable (clients/js, `useNotificationWebSocket`) in a real browser against
// the real binary: Debian's Chromium driven by playwright-core, the demo page
// (clients/js/examples/index.html) served with vue, laravel-echo and pusher-js straight from
// node_modules. The page authorizes at Herald with a bearer token, lists notifications, survives
// a server crash and catches up on what it missed while disconnected. Behind a gate that drops
// its WebSocket and HTTP-transport connections (as a proxy blocking them would), it polls the
// inbox and the channel history, then goes back to real time once the gate opens.
//
// Without /usr/bin/chromium (`apt-get install chromium`) the tests skip, unless CI=true or
// HERALD_REQUIRE_BROWSER=1, where they fail. Never downloads a browser.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { launchBrowser, skip } from '../lib/browser.mjs';
import { startGate } from '../lib/gate.mjs';
import { startServer } from '../lib/harness.mjs';
import { startStaticServer } from '../../../clients/js/examples/serve.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../../..');

/** Backoff of the page's own reconnection: long enough to ingest while it waits. */
const BACKOFF_MS = 6000;

let server;
let files;
let browser;
const pages = [];
const gates = [];

before(async () => {
  if (skip) return;
  files = await startStaticServer({ '/node_modules/': resolve(here, '../node_modules'), '/clients/js/': join(repo, 'clients/js') });
  server = await startServer({ auth: { cors_origins: [files.url('')] } });
  browser = await launchBrowser();
});

after(async () => {
  for (const page of pages) await page.close().catch(() => {});
  for (const gate of gates) await gate.stop();
  await browser?.close();
  await server?.stop();
  await files?.close();
});

/**
 * Opens the demo page as `user` (`{id, org, roles}`); `diagnostics()` is its console. `init`:
 * a script run in the page before its own (playwright's `addInitScript`).
 */
async function openPage(user, query = {}, { init } = {}) {
  const token = server.token({ user: user.id, org: user.org, roles: user.roles ?? [], name: `User ${user.id}` });
  const params = new URLSearchParams({
    herald: server.url(''),
    key: server.apps.main.key,
    token,
    user: String(user.id),
    ...(user.org !== undefined ? { org: String(user.org) } : {}),
    roles: (user.roles ?? []).join(','),
    ...query,
  });
  const page = await browser.newPage({ viewport: { width: 900, height: 700 } });
  pages.push(page);
  const logs = [];
  page.on('console', (message) => logs.push(`console.${message.type()}: ${message.text()}`));
  page.on('pageerror', (error) => logs.push(`pageerror: ${error.message}`));
  page.on('requestfailed', (request) => logs.push(`requestfailed: ${request.url()} ${request.failure()?.errorText}`));
  if (init) await page.addInitScript(init);
  await page.goto(files.url(`/clients/js/examples/index.html?${params}`));
  page.diagnostics = () => `\n--- page log ---\n${logs.join('\n')}\n--- herald log ---\n${server.logs().slice(-3000)}`;
  return page;
}

/** Waits for `selector`, failing with the page's and the server's logs. */
async function expectVisible(page, selector, timeout = 5000) {
  try {
    await page.waitForSelector(selector, { timeout, state: 'attached' });
  } catch (error) {
    const shown = await page
      .evaluate(() => ({
        status: document.querySelector('[data-testid="status"]')?.dataset.status,
        error: document.querySelector('[data-testid="error"]')?.textContent ?? null,
        items: [...document.querySelectorAll('li.item')].map((node) => `${node.dataset.id}/${node.dataset.source}`),
      }))
      .catch((failure) => failure.message);
    throw new Error(`${error.message.split('\n')[0]}\n--- page shows ---\n${JSON.stringify(shown)}${page.diagnostics()}`);
  }
}

const status = (page) => page.getAttribute('[data-testid="status"]', 'data-status');
const items = (page, id) => page.locator(`li.item[data-id="${id}"]`);

function notificationEvent(id, title, userId = 42) {
  return {
    id: `${id}-created`,
    type: 'notification.created',
    data: { notification: { id, user_id: userId, type: 'donation_receipt', title, message: `Receipt ${id} is ready`, priority: 'normal' } },
  };
}

/** A gate in front of Herald's port (closed: it drops every connection), stopped after the tests. */
async function gate(options) {
  const opened = await startGate(server.port, options);
  gates.push(opened);
  return opened;
}

/**
 * The request line of pusher-js's HTTP transports (xhr_streaming, or xhr_polling's `/xhr`) under
 * `/pusher`: Chromium sends the CORS preflight (`OPTIONS`) first, a server that allows it the POST.
 */
const httpTransport = (key) => new RegExp(`^(OPTIONS|POST) /pusher/app/${key}/\\d+/\\w+/xhr(_streaming)?\\?`);

/** The ids of the list, top to bottom, and every id that is listed more than once. */
async function listed(page) {
  const ids = await page.locator('li.item').evaluateAll((nodes) => nodes.map((node) => node.dataset.id));
  return { ids, repeated: ids.filter((id, index) => ids.indexOf(id) !== index) };
}

/** Records every `data-status` the page shows, from now on, in `window.statusLog`. */
async function recordStatuses(page) {
  await page.evaluate(() => {
    const element = document.querySelector('[data-testid="status"]');
    window.statusLog = [element.dataset.status];
    new MutationObserver(() => {
      if (window.statusLog.at(-1) !== element.dataset.status) window.statusLog.push(element.dataset.status);
    }).observe(element, { attributes: true, attributeFilter: ['data-status'] });
  });
}

async function ingest(event) {
  const response = await server.sdk().post({ path: '/domain-events', body: event });
  const { events } = await response.json();
  assert.equal(events[0].status, 'accepted', JSON.stringify(events));
}

test('the composable connects, shows live notifications, survives a crash and catches up', { skip }, async () => {
  const page = await openPage(
    { id: 42 },
    { baseMs: String(BACKOFF_MS), maxMs: String(BACKOFF_MS), unavailableTimeout: '500' },
  );
  await expectVisible(page, '[data-testid="status"][data-status="connected"]');
  await expectVisible(page, '[data-channel="user.notifications.42"][data-state="subscribed"]');
  await expectVisible(page, '[data-channel="system-maintenance"][data-state="subscribed"]');
  // No admin channel for a user without admin roles.
  assert.equal(await page.locator('[data-channel="admin-dashboard"]').count(), 0);

  // Live, on the socket.
  await ingest(notificationEvent('receipt-live', 'Thank you!'));
  await expectVisible(page, 'li.item[data-id="receipt-live"][data-source="socket"]');
  assert.match(await items(page, 'receipt-live').innerText(), /Thank you! — Receipt receipt-live is ready/);
  assert.equal(await page.textContent('[data-testid="unread"]'), '1 unread');

  // The server crashes: the page notices, pusher-js gives up after `unavailableTimeout`, and the
  // composable schedules its own reconnection.
  await server.kill('SIGKILL');
  await expectVisible(page, '[data-testid="status"]:not([data-status="connected"])');
  await expectVisible(page, '[data-testid="retry"]', 5000);
  assert.equal(await status(page), 'reconnecting');
  assert.match(await page.textContent('[data-testid="error"]'), /connection closed \(code 1006\)/);

  // Back on the same port and database; what happens while the page waits is only in the inbox.
  await server.start();
  await ingest(notificationEvent('receipt-missed', 'Missed while offline'));
  const statusAtIngest = await status(page);
  assert.equal(statusAtIngest, 'reconnecting', 'the page reconnected before the ingest: raise BACKOFF_MS');

  await expectVisible(page, '[data-testid="status"][data-status="connected"]', BACKOFF_MS + 5000);
  assert.equal(await page.locator('[data-testid="error"]').count(), 0, 'the connection error is cleared once connected');
  await expectVisible(page, 'li.item[data-id="receipt-missed"]', 5000);
  assert.equal(await items(page, 'receipt-missed').getAttribute('data-source'), 'catch-up');
  assert.equal(await items(page, 'receipt-missed').count(), 1);
  assert.equal(await items(page, 'receipt-live').count(), 1, 'the catch-up must not duplicate what the socket delivered');
  assert.equal(await page.locator('li.item').count(), 2);
  // Newest first.
  assert.deepEqual(await page.locator('li.item').evaluateAll((nodes) => nodes.map((node) => node.dataset.id)), [
    'receipt-missed',
    'receipt-live',
  ]);
  // The handlers ran once per notification, the missed one as a catch-up.
  assert.deepEqual(await page.evaluate(() => window.heraldDemo.handled), [
    { id: 'receipt-live', event: 'notification.created', source: 'socket' },
    { id: 'receipt-missed', event: 'notification.created', source: 'catch-up' },
  ]);
  assert.equal(await page.textContent('[data-testid="unread"]'), '2 unread');

  // Live again after the reconnection.
  await expectVisible(page, '[data-channel="user.notifications.42"][data-state="subscribed"]');
  await ingest(notificationEvent('receipt-after', 'Back online'));
  await expectVisible(page, 'li.item[data-id="receipt-after"][data-source="socket"]');

  // markRead goes to the inbox.
  await items(page, 'receipt-missed').getByRole('button', { name: 'Mark read' }).click();
  await expectVisible(page, 'li.item[data-id="receipt-missed"][data-read="true"]');
  const inbox = await fetch(server.url('/api/v1/notifications'), {
    headers: { Authorization: `Bearer ${server.token({ user: 42 })}` },
  }).then((response) => response.json());
  const read = Object.fromEntries(inbox.data.map((row) => [row.id, row.read_at !== null]));
  assert.deepEqual(read, { 'receipt-after': false, 'receipt-missed': true, 'receipt-live': false });
  assert.equal(await page.textContent('[data-testid="unread"]'), '2 unread');

  mkdirSync(join(repo, 'test-artifacts'), { recursive: true });
  await page.screenshot({ path: join(repo, 'test-artifacts/composable.png'), fullPage: true });
});

test('an admin page subscribes by role, dedupes across channels and catches up channel history', { skip }, async () => {
  const page = await openPage({ id: 7, org: 3, roles: ['csr_admin'] });
  for (const channel of [
    'user.notifications.7',
    'organization.3',
    'admin-dashboard',
    'admin-role-csr_admin',
    'compliance-notifications',
    'system-maintenance',
  ]) {
    await expectVisible(page, `[data-channel="${channel}"][data-state="subscribed"]`);
  }
  for (const channel of ['security-alerts', 'payment-notifications', 'admin-role-super_admin']) {
    assert.equal(await page.locator(`[data-channel="${channel}"]`).count(), 0, channel);
  }
  // The first history call of each shared channel only learns where it ends.
  await expectVisible(page, '[data-testid="unread"][data-catching-up="false"]');

  // One broadcast to admin-dashboard and organization.3: listed once.
  await ingest({
    id: 'donation-77-large',
    type: 'donation.large_received',
    data: { donation_id: 77, amount: 2500, currency: 'eur', campaign_id: 5, organization_id: 3, donor_name: 'Ada' },
  });
  await expectVisible(page, 'li.item[data-source="socket"]');
  assert.match(await page.locator('li.item').first().innerText(), /Large donation — Ada gave 2500.00 EUR to campaign 5/);
  assert.equal(await page.locator('li.item').count(), 1);
  await expectVisible(page, '[data-testid="unread"][data-catching-up="false"]');

  // Disconnected, a compliance issue goes to compliance-notifications and admin-role-csr_admin;
  // after connect() it comes back from the channel history, once.
  await page.evaluate(() => window.heraldDemo.disconnect());
  await expectVisible(page, '[data-testid="status"][data-status="disconnected"]');
  await ingest({
    id: 'compliance-kyc-9',
    type: 'compliance.issue',
    data: { issue_type: 'kyc_missing', severity: 'high', message: 'KYC documents missing for 3 donors' },
  });
  await page.evaluate(() => window.heraldDemo.connect());
  await expectVisible(page, '[data-testid="status"][data-status="connected"]');
  await expectVisible(page, 'li.item[data-source="catch-up"]');
  assert.equal(await page.locator('li.item').count(), 2);
  assert.match(await page.locator('li.item').first().innerText(), /Compliance issue \(high\) — KYC documents missing for 3 donors/);
  assert.deepEqual(
    (await page.evaluate(() => window.heraldDemo.handled)).map(({ event, source }) => `${event}/${source}`),
    ['donation.large/socket', 'compliance.issue/catch-up'],
  );
});

test('behind a gate that drops WebSockets and the HTTP transports, the page polls, then goes back to real time', { skip }, async () => {
  const user = { id: 8, org: 4, roles: ['csr_admin'] };
  const closed = await gate();
  await ingest(notificationEvent('fallback-before', 'Before the page opened', user.id));
  // unavailableTimeout above 5 s: pusher-js (without TLS) tries ws at once, wss after 2 s and
  // its HTTP transports after 5 s before it reports `unavailable`.
  const page = await openPage(user, {
    wsHost: '127.0.0.1',
    wsPort: String(closed.port),
    unavailableTimeout: '6500',
    pollIntervalMs: '400',
    baseMs: '1000',
    maxMs: '1000',
  });
  await recordStatuses(page);
  await expectVisible(page, '[data-testid="status"][data-status="polling"]', 12000);

  // pusher-js tried the WebSocket and its HTTP transports, all on Herald's host and port (under
  // /pusher), and the gate dropped them all.
  const tried = closed.attempts.map(({ line }) => line);
  const key = server.apps.main.key;
  assert.ok(tried.some((line) => line.startsWith(`GET /app/${key}?`)), `no WebSocket attempt: ${tried.join(' | ')}`);
  assert.ok(
    tried.some((line) => httpTransport(key).test(line)),
    `no HTTP transport attempt: ${tried.join(' | ')}`,
  );
  assert.ok(closed.attempts.every(({ passed }) => !passed));

  // The first poll loaded the inbox as at start (no handler) and learned where the shared
  // channels' histories end.
  await expectVisible(page, 'li.item[data-id="fallback-before"][data-source="inbox"]');
  for (const channel of ['user.notifications.8', 'organization.4', 'compliance-notifications']) {
    assert.equal(await page.getAttribute(`[data-channel="${channel}"]`, 'data-state'), 'pending', channel);
  }

  // Sent while polling: the inbox and a shared channel's history bring them, once (the compliance
  // issue is in two of the page's channels; its payload id is Herald's, not the event's).
  await ingest(notificationEvent('fallback-polled', 'While polling', user.id));
  await ingest({
    id: 'compliance-fallback-1',
    type: 'compliance.issue',
    data: { issue_type: 'aml_review', severity: 'medium', message: 'AML review pending for 2 donations' },
  });
  await expectVisible(page, 'li.item[data-id="fallback-polled"][data-source="poll"]');
  await expectVisible(page, 'li.item[data-source="poll"]:has-text("AML review pending for 2 donations")');
  assert.equal(await status(page), 'polling');
  mkdirSync(join(repo, 'test-artifacts'), { recursive: true });
  await page.screenshot({ path: join(repo, 'test-artifacts/composable-polling.png'), fullPage: true });

  // The gate opens: the composable's next attempt connects over the WebSocket, polling stops,
  // and the catch-up brings what was sent around the switch, once.
  closed.open();
  await ingest(notificationEvent('fallback-switch', 'Around the switch', user.id));
  await expectVisible(page, '[data-testid="status"][data-status="connected"]', 15000);
  await expectVisible(page, '[data-channel="user.notifications.8"][data-state="subscribed"]');
  await expectVisible(page, 'li.item[data-id="fallback-switch"]');
  await expectVisible(page, '[data-testid="unread"][data-catching-up="false"]');
  assert.match(await items(page, 'fallback-switch').getAttribute('data-source'), /^(poll|catch-up)$/);

  // Real time again. A broadcast carrying the id of a notification the page polled is not shown
  // again (published through the HTTP API before the next one, so on the socket ahead of it).
  const polled = await page.evaluate(() => JSON.parse(JSON.stringify(window.heraldDemo.notifications.find((n) => n.id === 'fallback-polled').payload)));
  await server.sdk().trigger(`private-user.notifications.${user.id}`, 'notification.created', polled);
  await ingest(notificationEvent('fallback-live', 'Live again', user.id));
  await expectVisible(page, 'li.item[data-id="fallback-live"][data-source="socket"]');
  assert.equal(await items(page, 'fallback-polled').count(), 1);
  assert.equal(await items(page, 'fallback-polled').getAttribute('data-source'), 'poll');
  await ingest({
    id: 'compliance-fallback-2',
    type: 'compliance.issue',
    data: { issue_type: 'kyc_missing', severity: 'low', message: 'KYC renewal due' },
  });
  await expectVisible(page, 'li.item[data-source="socket"]:has-text("KYC renewal due")');

  // Nothing twice, in the list or in the handlers.
  const { ids, repeated } = await listed(page);
  assert.deepEqual(repeated, []);
  assert.equal(ids.length, 6, ids.join(' '));
  for (const text of ['AML review pending for 2 donations', 'KYC renewal due']) {
    assert.equal(await page.locator(`li.item:has-text("${text}")`).count(), 1, text);
  }
  const handled = (await page.evaluate(() => window.heraldDemo.handled)).map(({ id }) => id);
  assert.equal(new Set(handled).size, 5, handled.join(' '));
  assert.deepEqual(
    handled.filter((id) => id.startsWith('fallback-')).sort(),
    ['fallback-live', 'fallback-polled', 'fallback-switch'],
    'the inbox loaded at start calls no handler',
  );

  // Once polling, the status stayed `polling` through the composable's retries until connected.
  const statuses = await page.evaluate(() => window.statusLog);
  assert.deepEqual(statuses.slice(statuses.indexOf('polling')), ['polling', 'connected'], statuses.join(' → '));
  assert.equal(await page.locator('[data-testid="error"]').count(), 0, 'the connection error is cleared once connected');
});

test('httpFallback: false leaves pusher-js only ws and wss', { skip }, async () => {
  const user = { id: 9 };
  // No WebSocket in this browser and the gate open: with ws/wss only, pusher-js has no transport
  // (`failed`), so the page polls although Herald is reachable; with the HTTP fallback (the
  // default) it goes to Herald's /pusher path.
  const noWebSocket = () => {
    delete window.WebSocket;
  };
  const open = await gate({ open: true });
  await ingest(notificationEvent('ws-only-before', 'Before', user.id));
  const wsOnly = await openPage(
    user,
    { wsHost: '127.0.0.1', wsPort: String(open.port), httpFallback: 'false', pollIntervalMs: '400' },
    { init: noWebSocket },
  );
  await expectVisible(wsOnly, '[data-testid="status"][data-status="polling"]');
  assert.deepEqual(await wsOnly.evaluate(() => window.heraldDemo.echo().connector.pusher.config.enabledTransports), ['ws', 'wss']);
  await expectVisible(wsOnly, 'li.item[data-id="ws-only-before"][data-source="inbox"]');
  await ingest(notificationEvent('ws-only-polled', 'Polled', user.id));
  await expectVisible(wsOnly, 'li.item[data-id="ws-only-polled"][data-source="poll"]');
  assert.deepEqual(open.attempts, [], 'pusher-js tried a transport it should not have');

  const closed = await gate();
  const withFallback = await openPage(user, { wsHost: '127.0.0.1', wsPort: String(closed.port), pollIntervalMs: '400' }, { init: noWebSocket });
  assert.deepEqual(await withFallback.evaluate(() => window.heraldDemo.echo().connector.pusher.config.enabledTransports), [
    'ws',
    'wss',
    'xhr_streaming',
    'xhr_polling',
  ]);
  const key = server.apps.main.key;
  const deadline = Date.now() + 5000;
  while (!closed.attempts.some(({ line }) => httpTransport(key).test(line)) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.ok(
    closed.attempts.some(({ line }) => httpTransport(key).test(line)),
    `no HTTP transport attempt: ${closed.attempts.map(({ line }) => line).join(' | ')}${withFallback.diagnostics()}`,
  );
  assert.equal(await status(withFallback), 'connecting', 'pusher-js is still trying its HTTP transports');
});
