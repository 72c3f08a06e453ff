// Cluster mode on a Redis Cluster: three redis-server processes of our own (cluster mode, no
// replicas, joined with `redis-cli --cluster create`), three Herald nodes whose REDIS_URL lists
// the three seeds. Fan-out, socket exclusion and presence across nodes, as on one Redis.
//
// Needs redis-server, redis-cli and PostgreSQL (and the shared Redis, like every cluster test):
// skipped with the reason when missing, unless HERALD_REQUIRE_SERVICES=1.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { createDatabase, servicesSkip, startCluster, startRedisCluster } from '../lib/cluster.mjs';
import { exclusion, fanOut, presence } from '../lib/cluster-scenarios.mjs';

const skip = await servicesSkip({ redisBinaries: true });

let database;
let redis;
let cluster;
before(async () => {
  if (skip) return;
  database = await createDatabase();
  redis = await startRedisCluster(3);
  cluster = await startCluster({ databaseUrl: database.url, redisUrl: redis.url });
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
  await redis?.stop();
  await database?.drop();
});

test('the nodes joined through the three seeds and list each other', { skip }, cleaned(async () => {
  assert.equal(redis.url.split(',').length, 3);
  for (const node of cluster.nodes) {
    const view = await node.cluster();
    assert.equal(view.redis.up, true, JSON.stringify(view.redis));
    assert.equal(view.nodes.length, 3, JSON.stringify(view.nodes));
  }
}));

test('Redis Cluster 1. a trigger (and a batch) on A reaches clients on A, B and C exactly once', { skip }, cleaned(async () => {
  await fanOut(cluster);
}));

test('Redis Cluster 2. socket_id of a client on B given to a trigger on A: only that client gets nothing', { skip }, cleaned(async () => {
  await exclusion(cluster);
}));

test('Redis Cluster 6. presence across nodes: members, one member_added/removed per user, counts on every node', { skip }, cleaned(async (t) => {
  await presence(cluster, t);
}));
