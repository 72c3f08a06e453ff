// The wire protocol seen by a raw WebSocket: exact frames and close codes.

import { createHmac } from 'node:crypto';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { APPS, rawSocket, startServer } from '../lib/harness.mjs';

let server;
const sockets = [];
before(async () => {
  server = await startServer();
});
after(async () => {
  for (const s of sockets) s.close();
  await server?.stop();
});

function open(path) {
  const raw = rawSocket(server, path);
  sockets.push(raw);
  return raw;
}

test('pusher:connection_established carries its data as a JSON string with socket_id and activity_timeout', async () => {
  const raw = open(`/app/${APPS.main.key}?protocol=7&client=js&version=8.6.0`);
  const hello = await raw.frame('pusher:connection_established');
  assert.equal(typeof hello.data, 'string');
  const data = JSON.parse(hello.data);
  assert.match(data.socket_id, /^\d+\.\d+$/);
  assert.equal(data.activity_timeout, 120);
});

const refusals = [
  ['unknown app key', `/app/no-such-key?protocol=7`, 4001],
  ['disabled app', `/app/${APPS.disabled.key}?protocol=7`, 4003],
  ['no protocol version', `/app/${APPS.main.key}`, 4008],
  ['bad version string', `/app/${APPS.main.key}?protocol=seven`, 4006],
  ['unsupported protocol version', `/app/${APPS.main.key}?protocol=99`, 4007],
  ['unknown path', `/not-an-app-path?protocol=7`, 4005],
];
for (const [what, path, code] of refusals) {
  test(`${what}: pusher:error ${code}, then close code ${code}`, async () => {
    const raw = open(path);
    const { code: closeCode } = await raw.closed();
    assert.equal(closeCode, code);
    assert.equal(raw.frames.length, 1, JSON.stringify(raw.frames));
    assert.equal(raw.frames[0].event, 'pusher:error');
    assert.equal(raw.frames[0].data.code, code);
    assert.equal(typeof raw.frames[0].data.message, 'string');
  });
}

test('over the connection quota: close code 4004', async () => {
  const first = open(`/app/${APPS.limited.key}?protocol=7`);
  await first.frame('pusher:connection_established');
  const second = open(`/app/${APPS.limited.key}?protocol=7`);
  assert.equal((await second.closed()).code, 4004);
  assert.deepEqual(second.frames.map((f) => [f.event, f.data.code]), [['pusher:error', 4004]]);
  first.close();
});

test(
  'socket ids are unique across apps',
  async () => {
    const ids = [];
    for (const app of [APPS.main, APPS.noClientEvents, APPS.authRequired]) {
      const raw = open(`/app/${app.key}?protocol=7`);
      ids.push(JSON.parse((await raw.frame('pusher:connection_established')).data).socket_id);
    }
    assert.equal(new Set(ids).size, ids.length, `socket ids repeat: ${ids.join(', ')}`);
  },
);

test(
  'sign-in whose user_data has no string id: one pusher:error 4009, then close 4009',
  async () => {
    const raw = open(`/app/${APPS.main.key}?protocol=7`);
    const socketId = JSON.parse((await raw.frame('pusher:connection_established')).data).socket_id;
    const userData = JSON.stringify({ id: 12345 });
    const signature = createHmac('sha256', APPS.main.secret).update(`${socketId}::user::${userData}`).digest('hex');
    raw.send({ event: 'pusher:signin', data: { auth: `${APPS.main.key}:${signature}`, user_data: userData } });
    const { code } = await raw.closed();
    assert.equal(code, 4009);
    const errors = raw.frames.filter((f) => f.event === 'pusher:error');
    assert.ok(errors.length >= 1);
    assert.ok(errors.every((f) => f.data.code === 4009), JSON.stringify(errors));
    assert.equal(errors.length, 1, `expected one pusher:error, got ${JSON.stringify(errors)}`);
  },
);
