// Watchlist events: a client signed in with a `watchlist` hears, through pusher-js's
// `pusher.user.watchlist`, `online` with the watched users already online right after sign-in,
// then `online` when a watched user's first connection signs in and `offline` when their last
// signed-in connection closes.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { record, signIn, unique, useServer, waitFor } from '../lib/harness.mjs';

let server;
useServer((started) => (server = started));

/** A pusher-js client signed in as `user` (with its watchlist, if any). */
async function signedIn(user, before = () => {}) {
  const client = server.client('main', { user });
  before(client);
  await signIn(client);
  return client;
}

test('a watcher hears who is online at sign-in, then first sign-ins and last goodbyes', async () => {
  const ada = unique('ada');
  const bob = unique('bob');
  const adaClient = await signedIn({ id: ada });

  let online;
  let offline;
  const watcher = await signedIn({ id: unique('watcher'), watchlist: [ada, bob] }, (client) => {
    online = record(client.user.watchlist, 'online');
    offline = record(client.user.watchlist, 'offline');
  });
  await online.until(1);
  assert.deepEqual(online.events[0], { name: 'online', user_ids: [ada] });

  const bobPhone = await signedIn({ id: bob });
  await online.until(2);
  assert.deepEqual(online.events[1], { name: 'online', user_ids: [bob] });
  const bobLaptop = await signedIn({ id: bob });
  bobPhone.disconnect();
  adaClient.disconnect();
  await offline.until(1);
  assert.deepEqual(offline.events[0], { name: 'offline', user_ids: [ada] }, 'bob still has his laptop');
  bobLaptop.disconnect();
  await offline.until(2);
  assert.deepEqual(offline.events[1], { name: 'offline', user_ids: [bob] });
  assert.equal(online.events.length, 2, "bob's second connection is not news");
  watcher.disconnect();
});

test('a watchlist of more than 100 ids is a 4302 error and the sign-in still succeeds', async () => {
  const ids = Array.from({ length: 101 }, (_, i) => `w${i}`);
  const errors = [];
  const client = await signedIn({ id: unique('big'), watchlist: ids }, (pusher) => {
    pusher.connection.bind('message', (event) => {
      if (event.event === 'pusher:error') errors.push(event.data);
    });
  });
  await waitFor(() => errors.length > 0);
  assert.equal(errors[0].code, 4302);
  assert.equal(client.connection.state, 'connected');
});
