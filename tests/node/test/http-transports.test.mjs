// pusher-js's HTTP fallback transports (xhr_streaming, xhr_polling) against the real binary: the
// WebSocket suite's public, private, presence, client-event, sign-in, authorization and Echo
// cases, and the notification catalog through Echo, run again with pusher-js restricted to each
// transport (`HERALD_NODE_TRANSPORTS`, read by the harness's clientOptions), each file in a
// child `node --test`.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { TRANSPORTS } from '../lib/harness.mjs';

function childEnv(extra) {
  const env = { ...process.env, ...extra };
  delete env.NODE_TEST_CONTEXT;
  return env;
}

const here = dirname(fileURLToPath(import.meta.url));
const FILES = [
  'channels.test.mjs',
  'presence.test.mjs',
  'client-events.test.mjs',
  'users.test.mjs',
  'authorization.test.mjs',
  'echo.test.mjs',
  'notifications.test.mjs',
];

// Inside a child run this file has nothing to do (it would start its own children again).
const skip = !TRANSPORTS.includes('ws') ? 'already running over an HTTP transport' : false;

for (const transport of ['xhr_streaming', 'xhr_polling']) {
  for (const file of FILES) {
    test(`${file} over ${transport}`, { skip }, () => {
      const run = spawnSync(process.execPath, ['--test', '--test-reporter=tap', '--test-concurrency=1', resolve(here, file)], {
        // Without the parent's NODE_TEST_CONTEXT the child reports as a run of its own (TAP).
        env: childEnv({ HERALD_NODE_TRANSPORTS: transport }),
        encoding: 'utf8',
        timeout: 300_000,
      });
      const failures = (run.stdout ?? '')
        .split('\n')
        .filter((line) => /^\s*not ok /.test(line) || /^# (pass|fail) /.test(line));
      assert.equal(run.status, 0, `${file} over ${transport} failed:\n${failures.join('\n')}\n${run.stdout?.slice(-4000)}`);
      assert.match(run.stdout, /^# fail 0$/m);
      assert.doesNotMatch(run.stdout, /^# pass 0$/m, 'the file ran its tests');
    });
  }
}
