// Cluster mode under failure: a node killed with SIGKILL, Redis cut away from every node (a TCP
// proxy in this process between the nodes and Redis), and a rolling restart behind a TCP load
// balancer while events flow. Each test runs its own three nodes (A, B, C) on one database.
//
// Needs Redis and PostgreSQL (see lib/cluster.mjs): skipped with the reason when they are not
// reachable, unless HERALD_REQUIRE_SERVICES=1.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { barrier, connected, errorCode, record, subscribe, unique, waitFor } from '../lib/harness.mjs';
import {
  HEARTBEAT_SECS,
  NODE_TTL_SECS,
  REDIS_URL,
  createDatabase,
  loadBalancer,
  servicesSkip,
  sleep,
  startCluster,
  tcpProxy,
  triggerOutcome,
  until,
} from '../lib/cluster.mjs';
import { NAMES, barrierAll, presenceMember, untilCountsAgree, wireEvents } from '../lib/cluster-scenarios.mjs';

const skip = await servicesSkip();

let database;
before(async () => {
  if (!skip) database = await createDatabase();
});
after(async () => {
  await database?.drop();
});

/** Every frame of an app event (not `pusher:`/`pusher_internal:`) seen twice by one socket. */
function duplicates(frames) {
  const seen = new Set();
  const twice = [];
  for (const frame of frames) {
    if (frame.event.startsWith('pusher')) continue;
    const key = `${frame.channel} ${frame.event} ${frame.data}`;
    if (seen.has(key)) twice.push(key);
    seen.add(key);
  }
  return twice;
}

/** The ids (`data.id`) of `event` frames on `channel`. */
function idsOf(frames, channel, event) {
  return wireEvents(frames, event, channel).map((data) => data.id);
}

test('7. kill -9 of node B: one member_removed on A and C within node_ttl + heartbeat + 2 s; A and C keep serving', { skip }, async (t) => {
  const cluster = await startCluster({ databaseUrl: database.url });
  t.after(() => cluster.stop());
  const [A, B, C] = NAMES.map((n) => cluster.node(n));
  const name = unique('presence-kill');
  const publicName = unique('after-kill');
  const wa = await presenceMember(cluster, 'A', 'wa');
  const wc = await presenceMember(cluster, 'C', 'wc');
  const vb = await presenceMember(cluster, 'B', 'vb');
  for (const m of [wa, wc, vb]) await m.join(name);
  const publicA = (await subscribe(wa.client, publicName)).channel;
  const publicC = (await subscribe(wc.client, publicName)).channel;

  await t.test('before: every node sees the three members', async () => {
    await untilCountsAgree(cluster, name, { subscription_count: 3, user_count: 3, users: ['vb', 'wa', 'wc'] });
    for (const m of [wa, wc]) assert.equal(m.channel.members.count, 3);
  });

  const bound = (NODE_TTL_SECS + HEARTBEAT_SECS + 2) * 1000;
  const killedAt = Date.now();
  await B.kill('SIGKILL');

  await t.test(`member_removed for vb exactly once on A and on C, within ${bound} ms`, async () => {
    for (const [n, m] of [['A', wa], ['C', wc]]) {
      const left = Math.max(bound - (Date.now() - killedAt), 1);
      await waitFor(() => wireEvents(m.frames, 'pusher_internal:member_removed', name).length >= 1, left).catch(() => {
        throw new Error(`no member_removed for vb on ${n} within ${bound} ms of the kill: ${JSON.stringify(wireEvents(m.frames, 'pusher_internal:member_removed', name))}`);
      });
    }
    // Let every reaper finish (A and C both list only themselves), and one more heartbeat, in
    // which a second reaper could still announce; then barriers through both nodes.
    await until(() => Promise.all([A.cluster(), C.cluster()]), (views) => views.every((v) => v.nodes.length === 2), {
      ms: bound,
      label: 'A and C to list two nodes',
    });
    await sleep(HEARTBEAT_SECS * 1000 + 500);
    for (const m of [wa, wc]) await barrierAll(cluster, m.channel);
    for (const [n, m] of [['A', wa], ['C', wc]]) {
      assert.deepEqual(wireEvents(m.frames, 'pusher_internal:member_removed', name), [{ user_id: 'vb' }], `member_removed on ${n}`);
      assert.equal(m.channel.members.count, 2);
    }
    await untilCountsAgree(cluster, name, { subscription_count: 2, user_count: 2, users: ['wa', 'wc'] });
  });

  await t.test('A and C keep serving: triggers on either reach both, /up ok, status lists two nodes', async () => {
    const onA = record(publicA, 'still');
    const onC = record(publicC, 'still');
    assert.equal((await A.sdk().trigger(publicName, 'still', { via: 'A' })).status, 200);
    assert.equal((await C.sdk().trigger(publicName, 'still', { via: 'C' })).status, 200);
    await onA.until(2);
    await onC.until(2);
    await barrierAll(cluster, publicA);
    await barrierAll(cluster, publicC);
    const sorted = (events) => events.map((e) => e.via).sort();
    assert.deepEqual(sorted(onA.events), ['A', 'C']);
    assert.deepEqual(sorted(onC.events), ['A', 'C']);
    for (const node of [A, C]) {
      assert.deepEqual(await node.admin('/up'), { status: 200, body: { status: 'ok' } });
      const view = await node.cluster();
      assert.equal(view.nodes.length, 2, JSON.stringify(view.nodes));
    }
    assert.equal(wa.client.connection.state, 'connected');
    assert.equal(wc.client.connection.state, 'connected');
  });
});

test('7b. SIGTERM of node B: it leaves the registry at once; its presence member is removed once on A and C', { skip }, async (t) => {
  const cluster = await startCluster({ databaseUrl: database.url });
  t.after(() => cluster.stop());
  const [A, B, C] = NAMES.map((n) => cluster.node(n));
  const name = unique('presence-leave');
  const wa = await presenceMember(cluster, 'A', 'wa');
  const wc = await presenceMember(cluster, 'C', 'wc');
  const vb = await presenceMember(cluster, 'B', 'vb');
  for (const m of [wa, wc, vb]) await m.join(name);
  const before = await untilCountsAgree(cluster, name, { subscription_count: 3, user_count: 3, users: ['vb', 'wa', 'wc'] }).then(
    () => null,
    (error) => error,
  );

  const stoppedAt = Date.now();
  const { code, signal } = await B.terminate();
  vb.client.disconnect(); // pusher-js would retry B's port after 4200; nothing listens there now.
  assert.deepEqual({ code, signal }, { code: 0, signal: null });

  await t.test('A and C list two nodes well before node_ttl (the goodbye, not the reaper)', async () => {
    await until(() => Promise.all([A.cluster(), C.cluster()]), (views) => views.every((v) => v.nodes.length === 2), {
      ms: (NODE_TTL_SECS * 1000) / 2,
      label: 'A and C to list two nodes after B said goodbye',
    });
  });

  await t.test('every node agreed on the three members before; vb is removed exactly once on A and on C', async () => {
    for (const [n, m] of [['A', wa], ['C', wc]]) {
      await waitFor(() => wireEvents(m.frames, 'pusher_internal:member_removed', name).length >= 1, 3000).catch(() => {});
      await barrierAll(cluster, m.channel);
      assert.deepEqual(
        wireEvents(m.frames, 'pusher_internal:member_removed', name),
        [{ user_id: 'vb' }],
        `member_removed on ${n}, ${Date.now() - stoppedAt} ms after SIGTERM`,
      );
    }
    await untilCountsAgree(cluster, name, { subscription_count: 2, user_count: 2, users: ['wa', 'wc'] });
    if (before) throw before;
  });
});

test('8. Redis outage: 503 and degraded while cut, sockets stay; after restore, fan-out and presence recover, nothing twice', { skip }, async (t) => {
  const redis = new URL(REDIS_URL);
  const proxy = await tcpProxy({ host: redis.hostname, port: Number(redis.port || 6379) });
  let cluster;
  // The nodes go first, while Redis is reachable, so that they can say goodbye.
  t.after(async () => {
    await proxy.restore();
    await cluster?.stop();
    proxy.close();
  });
  cluster = await startCluster({ databaseUrl: database.url, redisUrl: proxy.url });
  const [A, B, C] = NAMES.map((n) => cluster.node(n));
  const publicName = unique('outage');
  const presenceName = unique('presence-outage');

  const members = {};
  for (const n of NAMES) {
    const m = await presenceMember(cluster, n, `u${n}`);
    await m.join(presenceName);
    m.public = (await subscribe(m.client, publicName)).channel;
    m.states = record(m.client.connection, 'state_change');
    members[n] = m;
  }
  const everyone = Object.values(members);
  const allUsers = NAMES.map((n) => `u${n}`);

  await t.test('before the cut: a trigger on A reaches every node; presence agrees', async () => {
    assert.equal((await A.sdk().trigger(publicName, 'before', { id: 'before' })).status, 200);
    for (const m of everyone) await waitFor(() => idsOf(m.frames, publicName, 'before').length === 1);
    await untilCountsAgree(cluster, presenceName, { subscription_count: 3, user_count: 3, users: allUsers });
  });

  // Every trigger made around the outage, with its outcome.
  const attempts = [];
  const attempt = async (node, phase) => {
    const id = `${phase}-${attempts.length}`;
    const outcome = await triggerOutcome(node.sdk().trigger(publicName, 'during', { id }));
    attempts.push({ id, phase, node: node.name, ...outcome });
    return outcome;
  };

  proxy.cut();
  const cutAt = Date.now();
  await attempt(A, 'at-cut');

  await t.test('while Redis is away: /up degraded, status reports Redis down, triggers 503, sockets stay', async () => {
    for (const node of cluster.nodes) {
      const up = await until(() => node.admin('/up'), (r) => r.body?.status === 'degraded', {
        ms: 10000,
        label: `/up of ${node.name} to say degraded`,
      });
      assert.deepEqual(up, { status: 200, body: { status: 'degraded', reason: 'Redis unreachable' } });
      const view = await node.cluster();
      assert.equal(view.redis.up, false, JSON.stringify(view.redis));
      assert.equal(typeof view.redis.error, 'string');
    }
    for (const node of cluster.nodes) {
      const outcome = await attempt(node, 'outage');
      assert.equal(outcome.ok, false, `a trigger on ${node.name} while Redis is away must fail`);
      assert.equal(outcome.status, 503, `a trigger on ${node.name} while Redis is away: ${outcome.error}`);
    }
    // Stay cut past node_ttl + heartbeat, so Redis forgets the nodes, triggering all along.
    while (Date.now() - cutAt < (NODE_TTL_SECS + HEARTBEAT_SECS + 1) * 1000) {
      const outcome = await attempt(A, 'outage');
      assert.equal(outcome.status, 503, `a trigger on A ${Date.now() - cutAt} ms into the outage: ${JSON.stringify(outcome)}`);
      await sleep(500);
    }
    for (const [n, m] of Object.entries(members)) {
      assert.equal(m.client.connection.state, 'connected', `the client on ${n} stays connected`);
      assert.deepEqual(m.states.events, [], `the client on ${n} never changed state`);
    }
  });

  await proxy.restore();
  const restoredAt = Date.now();

  await t.test('after Redis returns: triggers succeed within a few seconds and reach every node once', async () => {
    for (;;) {
      const outcome = await attempt(A, 'recovery');
      if (outcome.ok) break;
      assert.ok(Date.now() - restoredAt < 10000, `no trigger on A succeeded within 10 s of Redis returning: ${JSON.stringify(outcome)}`);
      await sleep(200);
    }
    await cluster.untilNodesSeeEachOther(10000);
    for (const node of cluster.nodes) {
      await until(() => node.admin('/up'), (r) => r.body?.status === 'ok', { ms: 10000, label: `/up of ${node.name} to say ok` });
    }
    for (const node of cluster.nodes) {
      const outcome = await attempt(node, 'after');
      assert.equal(outcome.ok, true, `a trigger on ${node.name} after the outage: ${JSON.stringify(outcome)}`);
    }
    const after = attempts.filter((a) => a.phase === 'after').map((a) => a.id);
    for (const [n, m] of Object.entries(members)) {
      await waitFor(() => after.every((id) => idsOf(m.frames, publicName, 'during').includes(id)), 5000).catch(() => {
        throw new Error(`the client on ${n} got ${JSON.stringify(idsOf(m.frames, publicName, 'during'))}, expected every one of ${JSON.stringify(after)}`);
      });
    }
    for (const m of everyone) await barrierAll(cluster, m.public);
    for (const [n, m] of Object.entries(members)) {
      const got = idsOf(m.frames, publicName, 'during');
      for (const a of attempts) {
        const times = got.filter((id) => id === a.id).length;
        if (!a.ok) assert.equal(times, 0, `${a.id} was refused (${a.status}) on ${a.node} but delivered on ${n}`);
        else assert.ok(times <= 1, `${a.id} delivered ${times} times on ${n}`);
        if (a.phase === 'after') assert.equal(times, 1, `${a.id} (through ${a.node}) on ${n}`);
        // A node's own sockets get what it accepted.
        if (a.ok && a.node === n) assert.equal(times, 1, `${a.id}, accepted by ${a.node}, on its own client`);
      }
      assert.equal(m.client.connection.state, 'connected', `the client on ${n} is connected`);
      assert.deepEqual(m.states.events, [], `the client on ${n} never changed state`);
    }
    t.diagnostic(
      `attempts: ${attempts.map((a) => `${a.id}@${a.node}:${a.ok ? 'ok' : a.status}`).join(' ')}; ` +
        `cut ${restoredAt - cutAt} ms`,
    );
  });

  await t.test('presence is correct again on every node (channel, channel list, users)', async () => {
    await untilCountsAgree(cluster, presenceName, { subscription_count: 3, user_count: 3, users: allUsers }, 10000);
  });

  await t.test('no event was delivered twice to the same socket', async () => {
    for (const [n, m] of Object.entries(members)) assert.deepEqual(duplicates(m.frames), [], `duplicates on ${n}`);
  });
});

test('9. rolling restart behind a load balancer: every client back, every event owed received, none twice', { skip }, async (t) => {
  const cluster = await startCluster({ databaseUrl: database.url });
  t.after(() => cluster.stop());
  const balancer = await loadBalancer(() => cluster.nodes.filter((n) => n.running).map((n) => n.port));
  t.after(() => balancer.close());
  const name = unique('rolling');
  const sdks = Object.fromEntries(cluster.nodes.map((n) => [n.name, n.sdk()]));

  // Six clients through the balancer: two on each node. Each records when it was subscribed
  // (from subscription_succeeded until it leaves "connected") and every tick it got.
  const watchers = [];
  for (let i = 0; i < 6; i += 1) {
    const client = cluster.client(balancer.port);
    await connected(client);
    const watcher = { client, intervals: [], ticks: new Map(), closes: [] };
    const channel = client.subscribe(name);
    channel.bind('pusher:subscription_succeeded', () => watcher.intervals.push({ start: Date.now(), end: null }));
    channel.bind('tick', ({ seq }) => watcher.ticks.set(seq, (watcher.ticks.get(seq) ?? 0) + 1));
    client.connection.bind('state_change', ({ previous }) => {
      const open = watcher.intervals.at(-1);
      if (previous === 'connected' && open && open.end === null) open.end = Date.now();
    });
    client.connection.bind('error', (error) => watcher.closes.push(errorCode(error)));
    await waitFor(() => channel.subscribed);
    watcher.channel = channel;
    watchers.push(watcher);
  }
  const spread = await Promise.all(
    cluster.nodes.map(async (n) => (await n.admin('/admin/api/status')).body.apps.find((a) => a.id === 'main-app').connections),
  );
  assert.deepEqual(spread, [2, 2, 2], 'the balancer spread the six clients over the three nodes');

  // A trigger every 100 ms through whichever node is up, in turn.
  const triggers = [];
  let flowing = true;
  let seq = 0;
  const loop = (async () => {
    let turn = 0;
    while (flowing) {
      const live = cluster.nodes.filter((n) => n.running);
      if (live.length > 0) {
        const node = live[turn % live.length];
        turn += 1;
        seq += 1;
        const sentAt = Date.now();
        const outcome = await triggerOutcome(sdks[node.name].trigger(name, 'tick', { seq }));
        triggers.push({ seq, node: node.name, sentAt, ackAt: Date.now(), ...outcome });
      }
      await sleep(100);
    }
  })();

  try {
    await sleep(1000);
    for (const node of cluster.nodes) {
      const { code, signal } = await node.terminate();
      assert.deepEqual({ code, signal }, { code: 0, signal: null }, `node ${node.name} exits cleanly on SIGTERM`);
      await node.start();
      await waitFor(() => watchers.every((w) => w.client.connection.state === 'connected' && w.channel.subscribed), 10000);
      await cluster.untilNodesSeeEachOther(10000);
      await sleep(1000);
    }
  } finally {
    flowing = false;
    await loop;
  }

  for (const watcher of watchers) {
    assert.equal(watcher.client.connection.state, 'connected');
    await barrierAll(cluster, watcher.channel);
  }
  const ok = triggers.filter((x) => x.ok);
  const failed = triggers.filter((x) => !x.ok);
  t.diagnostic(`${triggers.length} triggers, ${failed.length} refused (${failed.map((x) => `${x.seq}@${x.node}:${x.status}`).join(' ')})`);
  assert.ok(ok.length >= 30, `events flowed: ${ok.length} accepted`);
  assert.ok(watchers.every((w) => w.closes.includes(4200)), `every client was moved by a 4200: ${JSON.stringify(watchers.map((w) => w.closes))}`);

  // Owed: accepted while this client was subscribed, from before the trigger until 500 ms after
  // its answer.
  const problems = [];
  const owedCounts = [];
  watchers.forEach((watcher, index) => {
    for (const [tick, times] of watcher.ticks) if (times > 1) problems.push(`client ${index} got tick ${tick} ${times} times`);
    let owedCount = 0;
    for (const x of ok) {
      const owed = watcher.intervals.some((i) => i.start <= x.sentAt && (i.end === null || i.end >= x.ackAt + 500));
      if (!owed) continue;
      owedCount += 1;
      if (!watcher.ticks.has(x.seq)) problems.push(`client ${index} missed tick ${x.seq} (through ${x.node})`);
    }
    owedCounts.push(owedCount);
  });
  t.diagnostic(`ticks owed per client: ${owedCounts.join(', ')} of ${ok.length}; received: ${watchers.map((w) => w.ticks.size).join(', ')}`);
  assert.deepEqual(problems, []);
  assert.ok(owedCounts.every((n) => n >= ok.length / 2), `each client was owed most ticks: ${owedCounts}`);

  // And a last event through every node reaches every client once.
  const finals = watchers.map((w) => record(w.channel, 'final'));
  for (const node of cluster.nodes) assert.equal((await node.sdk().trigger(name, 'final', { via: node.name })).status, 200);
  for (const f of finals) await f.until(3);
  for (const watcher of watchers) await barrier(cluster.node('A').sdk(), watcher.channel);
  for (const f of finals) assert.deepEqual(f.events.map((e) => e.via).sort(), ['A', 'B', 'C']);
});
