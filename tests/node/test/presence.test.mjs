// Presence channels: member lists, joins and leaves per user, numeric ids, and the channel APIs.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  barrier,
  connected,
  rawFrames,
  record,
  subscribe,
  unique,
  untilSubscriptionCount,
  useServer,
  waitForEvent,
} from '../lib/harness.mjs';

let server;
let sdk;
useServer((started) => {
  server = started;
  sdk = started.sdk();
});

/** A connected client that will join presence channels as `user_id` with `user_info`. */
async function member(user_id, user_info) {
  const client = server.client('main', { presence: { user_id, user_info } });
  await connected(client);
  return client;
}

function membersOf(members) {
  const list = [];
  members.each((m) => list.push(m));
  return list.sort((a, b) => String(a.id).localeCompare(String(b.id)));
}

/** Every raw frame of `event` on `channel` (counted on the wire, before pusher-js dedups). */
function wireEvents(frames, event, channel) {
  return frames.filter((f) => f.event === event && f.channel === channel).map((f) => JSON.parse(f.data));
}

test('presence: the member list and user_info on subscribe, member_added and member_removed', async () => {
  const name = unique('presence-room');
  const alice = await member('alice', { name: 'Alice', role: 'admin' });
  const { channel: aliceChannel, data: aliceMembers } = await subscribe(alice, name);
  assert.equal(aliceMembers.count, 1);
  assert.deepEqual(aliceMembers.me, { id: 'alice', info: { name: 'Alice', role: 'admin' } });

  const added = waitForEvent(aliceChannel, 'pusher:member_added');
  const bob = await member('bob', { name: 'Bob' });
  const bobFrames = rawFrames(bob);
  const { data: bobMembers } = await subscribe(bob, name);
  assert.deepEqual(await added, { id: 'bob', info: { name: 'Bob' } });

  assert.equal(bobMembers.count, 2);
  assert.deepEqual(bobMembers.me, { id: 'bob', info: { name: 'Bob' } });
  assert.deepEqual(membersOf(bobMembers), [
    { id: 'alice', info: { name: 'Alice', role: 'admin' } },
    { id: 'bob', info: { name: 'Bob' } },
  ]);
  // On the wire: {"presence": {"ids", "hash", "count"}}.
  const [succeeded] = wireEvents(bobFrames, 'pusher_internal:subscription_succeeded', name);
  assert.deepEqual(succeeded.presence.ids.slice().sort(), ['alice', 'bob']);
  assert.deepEqual(succeeded.presence.hash, { alice: { name: 'Alice', role: 'admin' }, bob: { name: 'Bob' } });
  assert.equal(succeeded.presence.count, 2);

  const removed = waitForEvent(aliceChannel, 'pusher:member_removed');
  bob.disconnect();
  assert.deepEqual(await removed, { id: 'bob', info: { name: 'Bob' } });
  assert.equal(aliceChannel.members.count, 1);
});

test('presence: member_added and member_removed once per user, even with two sockets', async () => {
  const name = unique('presence-multi');
  const watcher = await member('watcher', {});
  const frames = rawFrames(watcher);
  const { channel } = await subscribe(watcher, name);
  const memberAdded = record(channel, 'pusher:member_added');
  const memberRemoved = record(channel, 'pusher:member_removed');

  const first = await member('carol', { device: 'phone' });
  await subscribe(first, name);
  const second = await member('carol', { device: 'laptop' });
  const { data: secondMembers } = await subscribe(second, name);
  assert.equal(secondMembers.count, 2, 'carol counts once');
  await barrier(sdk, channel);
  assert.equal(wireEvents(frames, 'pusher_internal:member_added', name).length, 1, 'one member_added for carol');
  assert.deepEqual(memberAdded.events.map((m) => m.id), ['carol']);

  // Carol's second socket leaves: she is still present, nothing is announced.
  second.disconnect();
  await untilSubscriptionCount(sdk, name, 2);
  await barrier(sdk, channel);
  assert.equal(wireEvents(frames, 'pusher_internal:member_removed', name).length, 0);
  const users = await (await sdk.get({ path: `/channels/${name}/users` })).json();
  assert.deepEqual(users.users.map((u) => u.id).sort(), ['carol', 'watcher']);

  // Her last socket leaves: exactly one member_removed.
  first.disconnect();
  await untilSubscriptionCount(sdk, name, 1);
  await barrier(sdk, channel);
  assert.deepEqual(wireEvents(frames, 'pusher_internal:member_removed', name), [{ user_id: 'carol' }]);
  assert.deepEqual(memberRemoved.events.map((m) => m.id), ['carol']);
});

test('presence: numeric user ids become strings everywhere', async () => {
  const name = unique('presence-numeric');
  const ten = await member(10, { name: 'Ten' });
  const tenFrames = rawFrames(ten);
  await subscribe(ten, name);
  const [own] = wireEvents(tenFrames, 'pusher_internal:subscription_succeeded', name);
  assert.deepEqual(own.presence, { ids: ['10'], hash: { 10: { name: 'Ten' } }, count: 1 });
  assert.equal(typeof own.presence.ids[0], 'string');

  const eleven = await member(11, { name: 'Eleven' });
  const elevenFrames = rawFrames(eleven);
  await subscribe(eleven, name);
  const [joined] = wireEvents(elevenFrames, 'pusher_internal:subscription_succeeded', name);
  assert.deepEqual(joined.presence.ids.slice().sort(), ['10', '11']);

  const ch = ten.channel(name);
  await barrier(sdk, ch);
  const [added] = wireEvents(tenFrames, 'pusher_internal:member_added', name);
  assert.deepEqual(added, { user_id: '11', user_info: { name: 'Eleven' } });

  const users = await (await sdk.get({ path: `/channels/${name}/users` })).json();
  assert.deepEqual(users.users.slice().sort((a, b) => a.id.localeCompare(b.id)), [{ id: '10' }, { id: '11' }]);

  const removed = waitForEvent(ch, 'pusher:member_removed');
  eleven.disconnect();
  await removed;
  await barrier(sdk, ch);
  assert.deepEqual(wireEvents(tenFrames, 'pusher_internal:member_removed', name), [{ user_id: '11' }]);
});

test('channel APIs: /channels (presence- prefix, user_count), /channels/{name}, /channels/{name}/users', async () => {
  const prefix = unique('presence-api');
  const lobby = `${prefix}-lobby`;
  const quiet = `${prefix}-quiet`;
  const publicName = unique('public-api');

  const dave = await member('dave', { name: 'Dave' });
  const daveAgain = await member('dave', { name: 'Dave' });
  const erin = await member('erin', { name: 'Erin' });
  await subscribe(dave, lobby);
  await subscribe(daveAgain, lobby);
  await subscribe(erin, lobby);
  await subscribe(erin, quiet);
  await subscribe(erin, publicName);

  // Every presence channel, with its user count.
  const all = await (await sdk.get({ path: '/channels', params: { filter_by_prefix: 'presence-', info: 'user_count' } })).json();
  assert.deepEqual(all.channels[lobby], { user_count: 2 });
  assert.deepEqual(all.channels[quiet], { user_count: 1 });
  assert.ok(Object.keys(all.channels).every((c) => c.startsWith('presence-')), JSON.stringify(all));

  // Exactly ours, with a narrower prefix.
  const ours = await (await sdk.get({ path: '/channels', params: { filter_by_prefix: prefix, info: 'user_count,subscription_count' } })).json();
  assert.deepEqual(ours, {
    channels: {
      [lobby]: { user_count: 2, subscription_count: 3 },
      [quiet]: { user_count: 1, subscription_count: 1 },
    },
  });

  // Without info: names only.
  const names = await (await sdk.get({ path: '/channels', params: { filter_by_prefix: publicName } })).json();
  assert.deepEqual(names, { channels: { [publicName]: {} } });

  // user_count needs the presence- prefix.
  await assert.rejects(sdk.get({ path: '/channels', params: { info: 'user_count' } }), (e) => e.status === 400);

  // One channel.
  const one = await (await sdk.get({ path: `/channels/${lobby}`, params: { info: 'subscription_count,user_count' } })).json();
  assert.deepEqual(one, { occupied: true, subscription_count: 3, user_count: 2 });
  const publicInfo = await (await sdk.get({ path: `/channels/${publicName}`, params: { info: 'subscription_count' } })).json();
  assert.deepEqual(publicInfo, { occupied: true, subscription_count: 1 });
  const vacant = await (await sdk.get({ path: `/channels/${unique('presence-nobody')}`, params: { info: 'user_count' } })).json();
  assert.deepEqual(vacant, { occupied: false, user_count: 0 });

  // Users of a presence channel, once each.
  const users = await (await sdk.get({ path: `/channels/${lobby}/users` })).json();
  assert.deepEqual(users.users.slice().sort((a, b) => a.id.localeCompare(b.id)), [{ id: 'dave' }, { id: 'erin' }]);
  await assert.rejects(sdk.get({ path: `/channels/${publicName}/users` }), (e) => e.status === 400);
});

test('presence: user_info over 1 KB and user_id over 128 characters are refused', async () => {
  const name = unique('presence-limits');
  const bulky = await member('bulky', { blob: 'x'.repeat(1100) });
  await assert.rejects(subscribe(bulky, name), (error) => {
    assert.equal(error.data.status, 400);
    return true;
  });
  const longId = await member('u'.repeat(129), {});
  await assert.rejects(subscribe(longId, name), (error) => {
    assert.equal(error.data.status, 400);
    return true;
  });
  const fine = await member('u'.repeat(128), { blob: 'x'.repeat(900) });
  const { data } = await subscribe(fine, name);
  assert.equal(data.count, 1, 'the refused members were never added');
});
