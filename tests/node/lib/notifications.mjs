// Helpers shared by the notification-layer tests: Echo and pusher-js clients that authorize at
// Herald's /broadcasting/auth with a bearer token, subscription and event waits (all with
// timeouts), and the payload check every catalog broadcast must pass.

import assert from 'node:assert/strict';

import Pusher from 'pusher-js';
import Echo from 'laravel-echo';

import { TIMEOUT_MS, waitFor, withTimeout } from './harness.mjs';

/** A notification id Herald generates. */
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
/** RFC 3339 in UTC, as Herald writes times: always exactly three millisecond digits. */
export const RFC3339_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/**
 * An Echo configured as the platform's front end is: Herald authorizes private channels with
 * the bearer token (no token: public channels only). Pushed to `sockets` for disconnecting.
 */
export function echoFor(server, token, sockets) {
  const options = { broadcaster: 'pusher', Pusher, ...server.clientOptions('main') };
  if (token !== undefined) {
    options.authEndpoint = server.url('/broadcasting/auth');
    options.auth = { headers: { Authorization: `Bearer ${token}` } };
  }
  const echo = new Echo(options);
  sockets.push(echo);
  return echo;
}

/** A raw pusher-js client (no Echo) authorizing private channels at Herald with the token. */
export function pusherFor(server, token, sockets) {
  const client = new Pusher(server.apps.main.key, {
    ...server.clientOptions('main'),
    channelAuthorization: {
      endpoint: server.url('/broadcasting/auth'),
      transport: 'ajax',
      headers: { Authorization: `Bearer ${token}` },
    },
  });
  sockets.push(client);
  return client;
}

/** Resolves once the Echo channel is subscribed; rejects (with `.status`) when refused. */
export function echoSubscribed(channel, label) {
  return withTimeout(
    new Promise((resolve, reject) => {
      channel.subscribed(() => resolve(channel));
      channel.error((error) => {
        const refused = new Error(`${label}: subscription refused (${JSON.stringify(error)})`);
        refused.status = error?.status;
        reject(refused);
      });
    }),
    TIMEOUT_MS,
    `subscription to ${label}`,
  );
}

/** Records every `event` an Echo channel (`.listen`) or pusher-js channel (`.bind`) receives. */
export function recorder(channel, event) {
  const events = [];
  if (typeof channel.listen === 'function') channel.listen(event, (data) => events.push(data));
  else channel.bind(event, (data) => events.push(data));
  return {
    events,
    /** Waits (at most TIMEOUT_MS) for the first received event for which `match` holds. */
    next(match = () => true, label = event) {
      return waitFor(() => events.find(match), TIMEOUT_MS).catch((error) => {
        throw new Error(`${label}: ${error.message}; received ${JSON.stringify(events)}`);
      });
    },
  };
}

/**
 * Checks the common payload fields (id, type, priority, created_at) and that the rest is
 * exactly `fields`; a `notification` object carries the payload's id too.
 */
export function assertPayload(payload, { type, priority, fields }, label) {
  assert.match(payload.id, UUID, `${label}: id`);
  assert.match(payload.created_at, RFC3339_UTC, `${label}: created_at`);
  const age = Date.now() - Date.parse(payload.created_at);
  assert.ok(age > -5000 && age < 60000, `${label}: created_at ${payload.created_at} is recent`);
  const expected = { id: payload.id, type, priority, created_at: payload.created_at, ...fields };
  if (expected.notification) expected.notification = { ...expected.notification, id: payload.id };
  assert.deepEqual(payload, expected, label);
}
