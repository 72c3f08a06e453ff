// The HTTP API through the official `pusher` SDK: authentication and limits.

import { createHash, createHmac } from 'node:crypto';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { APPS, startServer, unique } from '../lib/harness.mjs';

let server;
let sdk;
before(async () => {
  server = await startServer();
  sdk = server.sdk();
});
after(async () => {
  await server?.stop();
});

/** Asserts that `promise` rejects with a RequestError of `status`; returns the parsed body. */
async function rejectsWith(promise, status) {
  let failure;
  await assert.rejects(promise, (error) => {
    failure = error;
    return true;
  });
  assert.equal(failure.name, 'PusherRequestError', String(failure));
  assert.equal(failure.status, status, `expected ${status}, got ${failure.status}: ${failure.body}`);
  return failure.body ? JSON.parse(failure.body) : undefined;
}

test('a trigger is accepted with 200 {}', async () => {
  const response = await sdk.trigger(unique('api'), 'event', { ok: true });
  assert.equal(response.status, 200);
  assert.deepEqual(await response.json(), {});
});

test('bad signature (SDK with the wrong secret): 401', async () => {
  const forger = server.sdk('main', { secret: 'definitely-wrong' });
  const body = await rejectsWith(forger.trigger(unique('api'), 'event', {}), 401);
  assert.equal(typeof body.error, 'string');
  await rejectsWith(forger.get({ path: '/channels' }), 401);
});

test('a key that belongs to another app: 401; an unknown app id: 404', async () => {
  const mixed = server.sdk({ ...APPS.main, key: APPS.noClientEvents.key });
  await rejectsWith(mixed.trigger(unique('api'), 'event', {}), 401);
  const unknown = server.sdk({ ...APPS.main, id: 'no-such-app' });
  await rejectsWith(unknown.trigger(unique('api'), 'event', {}), 404);
});

test('disabled app: API calls get 403', async () => {
  await rejectsWith(server.sdk('disabled').trigger(unique('api'), 'event', {}), 403);
});

test('event data over 10240 bytes: 413; exactly 10240 bytes is accepted', async () => {
  const name = unique('api-size');
  const limit = 10240;
  const ok = await sdk.trigger(name, 'big', 'x'.repeat(limit));
  assert.equal(ok.status, 200);
  await rejectsWith(sdk.trigger(name, 'big', 'x'.repeat(limit + 1)), 413);
  // The limit is in UTF-8 bytes, not characters: 5121 two-byte characters are 10242 bytes.
  await rejectsWith(sdk.trigger(name, 'big', 'é'.repeat(limit / 2 + 1)), 413);
});

test('more than 100 channels in one trigger: 400; 100 is accepted', async () => {
  // The SDK refuses more than 100 channels itself, so the request is signed by the SDK but
  // built by hand.
  const channels = Array.from({ length: 101 }, (_, i) => `many-${i}`);
  const body = await rejectsWith(sdk.post({ path: '/events', body: { name: 'e', data: '{}', channels } }), 400);
  assert.match(JSON.stringify(body), /100/);
  const response = await sdk.trigger(channels.slice(0, 100), 'e', {});
  assert.equal(response.status, 200);
});

test('more than 10 events in a batch: 400', async () => {
  const batch = Array.from({ length: 11 }, (_, i) => ({ channel: unique('batch'), name: 'e', data: { i } }));
  await rejectsWith(sdk.triggerBatch(batch), 400);
});

test('malformed requests: 400 with a reason', async () => {
  await rejectsWith(sdk.post({ path: '/events', body: { name: 'e', channels: ['a'] } }), 400); // no data
  await rejectsWith(sdk.post({ path: '/events', body: { name: 'e', data: '{}', channels: ['bad name!'] } }), 400);
  await rejectsWith(sdk.post({ path: '/events', body: { name: 'e', data: '{}', channels: ['a'], socket_id: 'nope' } }), 400);
  await rejectsWith(sdk.post({ path: '/events', body: { name: 'x'.repeat(201), data: '{}', channels: ['a'] } }), 400);
});

test('unknown routes: 404', async () => {
  await rejectsWith(sdk.get({ path: '/nothing-here' }), 404);
});

// Requests signed by hand (auth_version 1.0), for what the SDK never sends.

const md5 = (text) => createHash('md5').update(text).digest('hex');

/** The auth_signature of METHOD\nPATH\nQUERY, QUERY sorted by lower-cased key, values raw. */
function signature(secret, method, path, params) {
  const query = Object.entries(params)
    .map(([key, value]) => [key.toLowerCase(), String(value)])
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([key, value]) => `${key}=${value}`)
    .join('&');
  return createHmac('sha256', secret).update(`${method}\n${path}\n${query}`).digest('hex');
}

/** Sends a request signed by hand; `params` may override or add any auth parameter. */
async function signedFetch(method, path, { params = {}, body, app = APPS.main } = {}) {
  const all = {
    auth_key: app.key,
    auth_timestamp: Math.floor(Date.now() / 1000),
    auth_version: '1.0',
    ...(body !== undefined ? { body_md5: md5(body) } : {}),
    ...params,
  };
  const auth_signature = signature(app.secret, method, path, all);
  const query = new URLSearchParams({ ...all, auth_signature });
  return fetch(`http://127.0.0.1:${server.port}${path}?${query}`, {
    method,
    body,
    headers: body !== undefined ? { 'content-type': 'application/json' } : {},
    signal: AbortSignal.timeout(5000),
  });
}

test('hand signing matches the golden vectors of PROTOCOL.md', () => {
  const body = '{"name":"foo","channels":["project-3"],"data":"{\\"some\\":\\"data\\"}"}';
  assert.equal(md5(body), 'ec365a775a4cd0599faeb73354201b6f');
  const params = { auth_key: '278d425bdf160c739803', auth_timestamp: 1353088179, auth_version: '1.0', body_md5: md5(body) };
  assert.equal(
    signature('7ad3773142a6692b25b8', 'POST', '/apps/3/events', params),
    'da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c',
  );
});

test('a GET carrying body_md5 of the empty body (as the Python SDK sends) is accepted', async () => {
  const path = `/apps/${APPS.main.id}/channels`;
  const response = await signedFetch('GET', path, { params: { body_md5: md5('') } });
  assert.equal(response.status, 200, await response.clone().text());
  assert.ok('channels' in (await response.json()));
});

test('auth_timestamp more than 600 s from the server clock: 401; within: 200', async () => {
  const path = `/apps/${APPS.main.id}/channels`;
  const now = Math.floor(Date.now() / 1000);
  assert.equal((await signedFetch('GET', path, { params: { auth_timestamp: now - 700 } })).status, 401);
  assert.equal((await signedFetch('GET', path, { params: { auth_timestamp: now + 700 } })).status, 401);
  assert.equal((await signedFetch('GET', path, { params: { auth_timestamp: now - 500 } })).status, 200);
});

test('body_md5 that does not match the body, or a missing signature part: 401', async () => {
  const path = `/apps/${APPS.main.id}/events`;
  const body = JSON.stringify({ name: 'e', data: '{}', channels: [unique('md5')] });
  assert.equal((await signedFetch('POST', path, { body })).status, 200);
  assert.equal((await signedFetch('POST', path, { body, params: { body_md5: md5('something else') } })).status, 401);
  const unsigned = await fetch(`http://127.0.0.1:${server.port}${path}?auth_key=${APPS.main.key}`, {
    method: 'POST',
    body,
    signal: AbortSignal.timeout(5000),
  });
  assert.equal(unsigned.status, 401);
});
