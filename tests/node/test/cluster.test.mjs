// Cluster mode: three `herald serve` processes (A, B, C) on one Redis and one PostgreSQL
// database, real pusher-js clients on each, the `pusher` SDK against whichever node: fan-out,
// exclusion, users, client events and presence across nodes.
//
// Needs Redis and PostgreSQL (see lib/cluster.mjs): skipped with the reason when they are not
// reachable, unless HERALD_REQUIRE_SERVICES=1.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  barrier,
  connected,
  errorCode,
  rawFrames,
  record,
  subscribe,
  unique,
  waitFor,
  waitForEvent,
} from '../lib/harness.mjs';
import { createDatabase, getJson, servicesSkip, signedIn, startCluster, startNode, until } from '../lib/cluster.mjs';
import { NAMES, barrierAll, exclusion, fanOut, presence, presenceMember } from '../lib/cluster-scenarios.mjs';

const skip = await servicesSkip();

let database;
let cluster;
before(async () => {
  if (skip) return;
  database = await createDatabase();
  cluster = await startCluster({ databaseUrl: database.url });
});

/**
 * Runs a test and disconnects its clients afterwards. (Not an `afterEach` hook: node:test runs
 * those after every subtest too, which would disconnect the clients in the middle of a test.)
 */
const cleaned = (fn) => async (t) => {
  try {
    await fn(t);
  } finally {
    cluster?.disconnectAll();
  }
};
after(async () => {
  await cluster?.stop();
  await database?.drop();
});

test('every node lists the three nodes, Redis up, in /admin/api/status; /up is ok', { skip }, cleaned(async () => {
  const ids = [];
  for (const node of cluster.nodes) {
    const view = await node.cluster();
    assert.equal(typeof view.node, 'string');
    assert.equal(view.redis.up, true);
    assert.equal(view.redis.error ?? null, null);
    assert.equal(typeof view.redis.latency_ms, 'number');
    assert.equal(view.dropped, 0);
    assert.equal(view.nodes.length, 3, JSON.stringify(view.nodes));
    assert.ok(view.nodes.some((n) => n.id === view.node), 'a node lists itself');
    ids.push(view.node);
    const up = await node.admin('/up');
    assert.deepEqual(up, { status: 200, body: { status: 'ok' } });
  }
  assert.equal(new Set(ids).size, 3, 'three distinct node ids');
  const listed = (await cluster.node('A').cluster()).nodes.map((n) => n.id).sort();
  assert.deepEqual(listed, ids.slice().sort());
}));

test('1. a trigger (and a batch) on A reaches clients on A, B and C exactly once', { skip }, cleaned(async () => {
  await fanOut(cluster);
}));

test('2. socket_id of a client on B given to a trigger on A: that client gets nothing, C does', { skip }, cleaned(async () => {
  await exclusion(cluster);
}));

test('3. terminateUserConnections through A closes the user\'s socket on B with 4009', { skip }, cleaned(async () => {
  const id = unique('cluster-terminated');
  const victim = await signedIn(cluster.client('B', { user: { id } }));
  const victimOnC = await signedIn(cluster.client('C', { user: { id } }));
  const bystander = await signedIn(cluster.client('B', { user: { id: unique('cluster-bystander') } }));
  const errors = record(victim.connection, 'error');
  const errorsOnC = record(victimOnC.connection, 'error');
  const retries = record(victim.connection, 'connecting_in');

  const response = await cluster.node('A').sdk().terminateUserConnections(id);
  assert.equal(response.status, 200);
  await waitFor(() => victim.connection.state === 'disconnected' || victim.connection.state === 'unavailable');
  await waitFor(() => victimOnC.connection.state === 'disconnected' || victimOnC.connection.state === 'unavailable');
  assert.ok(errors.events.map(errorCode).includes(4009), JSON.stringify(errors.events));
  assert.ok(errorsOnC.events.map(errorCode).includes(4009), JSON.stringify(errorsOnC.events));
  assert.deepEqual(retries.events, [], '4009 is final: pusher-js does not reconnect');

  const still = waitForEvent(bystander.user, 'still-there');
  await cluster.node('A').sdk().sendToUser(bystander.user.user_data.id, 'still-there', { ok: true });
  assert.deepEqual(await still, { ok: true });
  assert.equal(bystander.connection.state, 'connected');
}));

test('4. sendToUser through A reaches the user signed in on C (and on B), no one else', { skip }, cleaned(async () => {
  const id = unique('cluster-user');
  const onC = await signedIn(cluster.client('C', { user: { id, name: 'on C' } }));
  const onB = await signedIn(cluster.client('B', { user: { id, name: 'on B' } }));
  const strangerId = unique('cluster-stranger');
  const stranger = await signedIn(cluster.client('C', { user: { id: strangerId } }));
  const gotC = record(onC.user, 'notification');
  const gotB = record(onB.user, 'notification');
  const strangerGot = record(stranger.user, 'notification');
  const sdkA = cluster.node('A').sdk();

  const response = await sdkA.sendToUser(id, 'notification', { text: 'you have mail' });
  assert.equal(response.status, 200);
  await gotC.until(1);
  await gotB.until(1);

  // Barriers: an event to the same user through every node arrives after anything sent before.
  for (const [client, userId] of [[onC, id], [onB, id], [stranger, strangerId]]) {
    for (const node of cluster.nodes) {
      const done = waitForEvent(client.user, 'done', { filter: (data) => data?.via === node.name });
      await node.sdk().sendToUser(userId, 'done', { via: node.name });
      await done;
    }
  }
  assert.deepEqual(gotC.events, [{ text: 'you have mail' }]);
  assert.deepEqual(gotB.events, [{ text: 'you have mail' }]);
  assert.deepEqual(strangerGot.events, []);
}));

test('5. a client event on a private channel from A reaches B and C once, not the sender', { skip }, cleaned(async () => {
  const name = unique('private-cluster');
  const clients = {};
  for (const n of NAMES) {
    const client = cluster.client(n);
    await connected(client);
    clients[n] = { client, channel: (await subscribe(client, name)).channel };
  }
  const got = Object.fromEntries(NAMES.map((n) => [n, record(clients[n].channel, 'client-x')]));
  const metadata = [];
  clients.B.channel.bind('client-x', (_data, meta) => metadata.push(meta));

  assert.equal(clients.A.channel.trigger('client-x', { from: 'A' }), true);
  await got.B.until(1);
  await got.C.until(1);
  // The sender's own node would echo locally, before the barrier's sentinel.
  for (const n of NAMES) await barrierAll(cluster, clients[n].channel);
  assert.deepEqual(got.A.events, [], 'the sender does not get its own client event');
  assert.deepEqual(got.B.events, [{ from: 'A' }]);
  assert.deepEqual(got.C.events, [{ from: 'A' }]);
  assert.equal(metadata.length, 1);
  assert.equal(metadata[0].user_id, undefined, 'no user_id outside presence channels');

  // And back: B to A and C.
  assert.equal(clients.B.channel.trigger('client-x', { from: 'B' }), true);
  await got.A.until(1);
  await got.C.until(2);
  for (const n of NAMES) await barrier(cluster.node(n).sdk(), clients[n].channel);
  assert.deepEqual(got.A.events, [{ from: 'B' }]);
  assert.deepEqual(got.B.events, [{ from: 'A' }]);
  assert.deepEqual(got.C.events, [{ from: 'A' }, { from: 'B' }]);
}));

test('5b. a client event on a presence channel from A carries the sender\'s user_id on B', { skip }, cleaned(async () => {
  const name = unique('presence-client-events');
  const sender = await presenceMember(cluster, 'A', 'sender');
  await sender.join(name);
  const receiver = await presenceMember(cluster, 'B', 'receiver');
  await receiver.join(name);
  const got = [];
  receiver.channel.bind('client-wave', (data, meta) => got.push({ data, meta }));
  const echoed = record(sender.channel, 'client-wave');
  assert.equal(sender.channel.trigger('client-wave', { hi: 1 }), true);
  await waitFor(() => got.length >= 1);
  await barrierAll(cluster, receiver.channel);
  await barrierAll(cluster, sender.channel);
  assert.deepEqual(got, [{ data: { hi: 1 }, meta: { user_id: 'sender' } }]);
  assert.deepEqual(echoed.events, []);
}));

test('cache channel across nodes: an event triggered on A is the cached event for a subscriber on C', { skip }, cleaned(async () => {
  const name = unique('cache-cluster');
  assert.equal((await cluster.node('A').sdk().trigger(name, 'score', { home: 1, away: 0 })).status, 200);
  assert.equal((await cluster.node('B').sdk().trigger(name, 'score', { home: 2, away: 0 })).status, 200);
  for (const node of cluster.nodes) {
    const info = await until(
      () => getJson(node.sdk(), `/channels/${name}`, { info: 'cache' }),
      (seen) => seen.cache?.data === JSON.stringify({ home: 2, away: 0 }),
      { label: `the cached event on ${node.name}` },
    );
    assert.ok(info.cache.ttl > 0 && info.cache.ttl <= 1800, JSON.stringify(info));
  }
  const client = cluster.client('C');
  await connected(client);
  const frames = rawFrames(client);
  const channel = client.subscribe(name);
  const misses = record(channel, 'pusher:cache_miss');
  const cached = waitForEvent(channel, 'score');
  await subscribe(client, name);
  assert.deepEqual(await cached, { home: 2, away: 0 });
  assert.deepEqual(frames.map((f) => f.event), ['pusher_internal:subscription_succeeded', 'score']);
  assert.deepEqual(misses.events, []);
}));

test('1b. subscription_count and the channel list of a public channel agree on every node', { skip }, cleaned(async () => {
  const prefix = unique('cluster-counted');
  const name = `${prefix}-room`;
  const clients = [];
  for (const n of [...NAMES, 'C']) {
    const client = cluster.client(n);
    await connected(client);
    await subscribe(client, name);
    clients.push(client);
  }
  const views = async () => {
    const seen = {};
    for (const node of cluster.nodes) {
      const sdk = node.sdk();
      seen[node.name] = {
        info: await getJson(sdk, `/channels/${name}`, { info: 'subscription_count' }),
        list: await getJson(sdk, '/channels', { filter_by_prefix: prefix, info: 'subscription_count' }),
      };
    }
    return seen;
  };
  const want = (count) => {
    const one = count
      ? { info: { occupied: true, subscription_count: count }, list: { channels: { [name]: { subscription_count: count } } } }
      : { info: { occupied: false, subscription_count: 0 }, list: { channels: {} } };
    return Object.fromEntries(NAMES.map((n) => [n, one]));
  };
  const agree = async (count) => {
    const seen = await until(views, (v) => JSON.stringify(v) === JSON.stringify(want(count)), {
      label: `subscription_count ${count} on every node`,
    }).catch(() => views());
    assert.deepEqual(seen, want(count), `one client on A, one on B, two on C, ${4 - count} gone`);
  };
  await agree(4);
  clients[3].disconnect();
  await agree(3);
  clients[0].disconnect();
  await agree(2);
}));

test('6. presence across nodes: members, one member_added/removed per user, counts on every node', { skip }, cleaned(async (t) => {
  await presence(cluster, t);
}));

test('nodes started together on a fresh database all come up (migrations do not race)', { skip }, cleaned(async () => {
  // An orchestrator starts every replica at once. Five rounds, each on a new database: the race
  // (if any) is between processes, so one round may pass by luck.
  for (let round = 1; round <= 5; round += 1) {
    const fresh = await createDatabase();
    let together;
    try {
      together = await startCluster({ databaseUrl: fresh.url, together: true });
      assert.equal(together.nodes.length, 3);
    } catch (error) {
      assert.fail(`round ${round}: three nodes started at once on a fresh database: ${error.message}`);
    } finally {
      await together?.stop();
      await fresh.drop();
    }
  }
}));

test('a SIGTERM right after the ready banner is a graceful shutdown: exit 0, and the node leaves the registry', { skip }, async () => {
  // An orchestrator may stop a node as soon as it said it was ready. Node X prints its banner and
  // gets SIGTERM at once; node Y then joins the same prefix and must not list X.
  const dir = mkdtempSync(join(tmpdir(), 'herald-cluster-early-'));
  try {
    for (let round = 1; round <= 3; round += 1) {
      const prefix = `${cluster.prefix}-early-${round}`;
      const options = { dir, redisUrl: cluster.redisUrl, prefix, databaseUrl: database.url };
      const x = await startNode({ name: `X${round}`, ...options });
      const exit = await x.kill('SIGTERM');
      const y = await startNode({ name: `Y${round}`, ...options });
      let view;
      try {
        view = await y.cluster();
      } finally {
        await y.stop();
      }
      assert.deepEqual(
        { exit, nodesListedByY: view.nodes.length },
        { exit: { code: 0, signal: null }, nodesListedByY: 1 },
        `round ${round}: X exits cleanly (not killed by the signal), and Y lists only itself, not the stopped X: ${JSON.stringify(view.nodes)}`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
