// Scenarios run against a three-node cluster (nodes A, B, C) both on one Redis
// (cluster.test.mjs) and on a Redis Cluster (cluster-redis-cluster.test.mjs): fan-out, socket
// exclusion and presence across nodes.

import assert from 'node:assert/strict';

import { barrier, connected, rawFrames, record, subscribe, unique, waitFor } from './harness.mjs';
import { getJson, until } from './cluster.mjs';

export const NAMES = ['A', 'B', 'C'];

/**
 * Ordering barrier through every node: a sentinel triggered on each node in turn and received on
 * `channel`. Whatever any node published for this socket before this call has then arrived.
 */
export async function barrierAll(cluster, channel) {
  for (const node of cluster.nodes.filter((n) => n.running)) await barrier(node.sdk(), channel);
}

/** Every raw frame of `event` on `channel`, parsed data (counted on the wire). */
export function wireEvents(frames, event, channel) {
  return frames.filter((f) => f.event === event && f.channel === channel).map((f) => JSON.parse(f.data));
}

/** The sorted member ids of a pusher-js presence channel. */
export function memberIds(channel) {
  const ids = [];
  channel.members.each((member) => ids.push(String(member.id)));
  return ids.sort();
}

/**
 * A connected client on node `nodeName` that joins presence channels as `user_id`, with its raw
 * frames recorded; `channel` is set once `join(name)` resolves.
 */
export async function presenceMember(cluster, nodeName, user_id) {
  const client = cluster.client(nodeName, { presence: { user_id, user_info: { name: `User ${user_id}` } } });
  await connected(client);
  const member = { client, frames: rawFrames(client), channel: null };
  member.join = async (name) => {
    member.channel = (await subscribe(client, name)).channel;
    return member.channel;
  };
  return member;
}

/** One connected client per node (by name), subscribed to `name`. */
async function onEveryNode(cluster, name, options = {}) {
  const result = {};
  for (const nodeName of NAMES) {
    const client = cluster.client(nodeName, options);
    await connected(client);
    const { channel } = await subscribe(client, name);
    result[nodeName] = { client, channel };
  }
  return result;
}

/** Test 1: a trigger on A reaches clients on A, B and C exactly once; a batch trigger too. */
export async function fanOut(cluster) {
  const sdkA = cluster.node('A').sdk();
  const first = unique('cluster-fanout');
  const second = unique('cluster-fanout-other');
  const one = await onEveryNode(cluster, first);
  const two = {};
  for (const nodeName of NAMES) two[nodeName] = { channel: (await subscribe(one[nodeName].client, second)).channel };

  const greetings = Object.fromEntries(NAMES.map((n) => [n, record(one[n].channel, 'greeting')]));
  const response = await sdkA.trigger(first, 'greeting', { text: 'hello from A' });
  assert.equal(response.status, 200);
  for (const n of NAMES) await greetings[n].until(1);

  // The batch: two channels, three events, in order on every node.
  const order = Object.fromEntries(NAMES.map((n) => [n, []]));
  for (const n of NAMES) {
    one[n].channel.bind_global((event, data) => event.startsWith('step') && order[n].push([first, event, data]));
    two[n].channel.bind_global((event, data) => event.startsWith('step') && order[n].push([second, event, data]));
  }
  const batch = await sdkA.triggerBatch([
    { channel: first, name: 'step-1', data: { n: 1 } },
    { channel: second, name: 'step-2', data: { n: 2 } },
    { channel: first, name: 'step-3', data: 'three' },
  ]);
  assert.equal(batch.status, 200);
  for (const n of NAMES) await waitFor(() => order[n].length >= 3);

  for (const n of NAMES) {
    await barrierAll(cluster, one[n].channel);
    await barrierAll(cluster, two[n].channel);
  }
  for (const n of NAMES) {
    assert.deepEqual(greetings[n].events, [{ text: 'hello from A' }], `the client on ${n} got the event exactly once`);
    // Order holds per channel. Across channels it holds on one Redis (one pub/sub channel per
    // app), not on a Redis Cluster, where each Pusher channel travels through its own shard.
    const of = (channel) => order[n].filter(([name]) => name === channel);
    assert.equal(order[n].length, 3, `the client on ${n} got the batch exactly once`);
    assert.deepEqual(
      of(first),
      [
        [first, 'step-1', { n: 1 }],
        [first, 'step-3', 'three'],
      ],
      `the client on ${n} got ${first}'s events exactly once, in order`,
    );
    assert.deepEqual(of(second), [[second, 'step-2', { n: 2 }]], `the client on ${n} got ${second}'s event once`);
  }
}

/** Test 2: `socket_id` of a client on B given to a trigger on A excludes only that socket. */
export async function exclusion(cluster) {
  const sdkA = cluster.node('A').sdk();
  const name = unique('cluster-exclusion');
  const clients = await onEveryNode(cluster, name);
  const excludedId = clients.B.client.connection.socket_id;
  const got = Object.fromEntries(NAMES.map((n) => [n, record(clients[n].channel, 'secret')]));

  const response = await sdkA.trigger(name, 'secret', { n: 1 }, { socket_id: excludedId });
  assert.equal(response.status, 200);
  await got.C.until(1);
  await got.A.until(1);
  for (const n of NAMES) await barrierAll(cluster, clients[n].channel);
  assert.deepEqual(got.B.events, [], 'the excluded socket on B got nothing');
  assert.deepEqual(got.C.events, [{ n: 1 }], 'the client on C got it once');
  assert.deepEqual(got.A.events, [{ n: 1 }], 'the client on A got it once');
}

/** The counts every node must agree on, asked of each node. */
async function countsOnEveryNode(cluster, name) {
  const views = {};
  for (const node of cluster.nodes.filter((n) => n.running)) {
    const sdk = node.sdk();
    views[node.name] = {
      info: await getJson(sdk, `/channels/${name}`, { info: 'subscription_count,user_count' }),
      list: (await getJson(sdk, '/channels', { filter_by_prefix: 'presence-', info: 'user_count' })).channels[name] ?? null,
      users: (await getJson(sdk, `/channels/${name}/users`)).users.map((u) => u.id).sort(),
    };
  }
  return views;
}

/** Waits until every running node reports `expected` (`{subscription_count, user_count, users}`). */
export async function untilCountsAgree(cluster, name, expected, ms = 5000) {
  const want = {
    info: expected.user_count
      ? { occupied: true, subscription_count: expected.subscription_count, user_count: expected.user_count }
      : { occupied: false, subscription_count: 0, user_count: 0 },
    list: expected.user_count ? { user_count: expected.user_count } : null,
    users: expected.users.slice().sort(),
  };
  const wanted = Object.fromEntries(cluster.nodes.filter((n) => n.running).map((node) => [node.name, want]));
  let views;
  try {
    views = await until(
      () => countsOnEveryNode(cluster, name),
      (seen) => JSON.stringify(seen) === JSON.stringify(wanted),
      { ms, label: `the counts of ${name} on every node`, interval: 100 },
    );
  } catch {
    views = await countsOnEveryNode(cluster, name);
  }
  assert.deepEqual(views, wanted, `channel info, channel list and users of ${name} asked of every node`);
}

/**
 * Test 6: user 1 on A, user 2 on B, user 1 again on C. Every client's member list is {1, 2};
 * one member_added per user; user 1 leaving A announces nothing, leaving C too announces one
 * member_removed; channel info, channel list and users agree on every node.
 */
export async function presence(cluster, t) {
  const name = unique('presence-cluster');
  const a1 = await presenceMember(cluster, 'A', '1');
  await a1.join(name);
  const b2 = await presenceMember(cluster, 'B', '2');
  await b2.join(name);
  const c1 = await presenceMember(cluster, 'C', '1');
  await c1.join(name);
  const everyone = { A: a1, B: b2, C: c1 };

  await t.test('every member list shows {1, 2}, with one member_added per user', async () => {
    await waitFor(() => memberIds(a1.channel).join() === '1,2', 5000).catch(() => {});
    for (const m of Object.values(everyone)) await barrierAll(cluster, m.channel);
    const seen = (m) => ({
      members: memberIds(m.channel),
      count: m.channel.members.count,
      member_added: wireEvents(m.frames, 'pusher_internal:member_added', name),
    });
    assert.deepEqual(
      { A: seen(a1), B: seen(b2), C: seen(c1) },
      {
        // A saw user 2 arrive once, and nothing when user 1 came again on C.
        A: { members: ['1', '2'], count: 2, member_added: [{ user_id: '2', user_info: { name: 'User 2' } }] },
        // B: user 1 was already there when B joined, and is not new when it comes again on C.
        B: { members: ['1', '2'], count: 2, member_added: [] },
        // C joined last.
        C: { members: ['1', '2'], count: 2, member_added: [] },
      },
      'member lists and member_added frames seen by the clients on A (user 1), B (user 2) and C (user 1)',
    );
    assert.deepEqual(c1.channel.members.me, { id: '1', info: { name: 'User 1' } });
  });

  await t.test('channel info, presence channel list and users agree on every node', async () => {
    await untilCountsAgree(cluster, name, { subscription_count: 3, user_count: 2, users: ['1', '2'] });
  });

  await t.test("user 1 leaving A announces nothing: user 1 is still on C", async () => {
    a1.client.disconnect();
    // The counts show the leave was handled; whether or not they agree, the frames are checked.
    const counts = await untilCountsAgree(cluster, name, { subscription_count: 2, user_count: 2, users: ['1', '2'] }).then(
      () => null,
      (error) => error,
    );
    for (const m of [b2, c1]) await barrierAll(cluster, m.channel);
    assert.deepEqual(
      {
        B: wireEvents(b2.frames, 'pusher_internal:member_removed', name),
        C: wireEvents(c1.frames, 'pusher_internal:member_removed', name),
      },
      { B: [], C: [] },
      'member_removed frames on B and C',
    );
    assert.deepEqual(memberIds(b2.channel), ['1', '2'], 'members seen by the client on B');
    if (counts) throw counts;
  });

  await t.test('user 1 leaving C too: exactly one member_removed on B', async () => {
    const removed = record(b2.channel, 'pusher:member_removed');
    c1.client.disconnect();
    await removed.until(1).catch(() => {});
    const counts = await untilCountsAgree(cluster, name, { subscription_count: 1, user_count: 1, users: ['2'] }).then(
      () => null,
      (error) => error,
    );
    await barrierAll(cluster, b2.channel);
    assert.deepEqual(wireEvents(b2.frames, 'pusher_internal:member_removed', name), [{ user_id: '1' }], 'member_removed frames on B');
    assert.deepEqual(memberIds(b2.channel), ['2']);
    if (counts) throw counts;
  });
}
