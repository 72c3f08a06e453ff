// useNotificationWebSocket: the Vue 3 composable of the platform's front end, talking to Herald
// alone — Echo (pusher broadcaster) for the real-time broadcasts, Herald's /broadcasting/auth with
// the platform's bearer token for private channels, and Herald's REST API for the inbox and for
// catching up on what was missed while disconnected. When no transport connects (a proxy that
// blocks WebSockets), it falls back in two steps: pusher-js's own HTTP transports (xhr_streaming,
// xhr_polling) against Herald, then polling Herald's inbox until a transport connects again.

import { computed, getCurrentInstance, onUnmounted, reactive, ref } from 'vue';

import { INBOX_EVENTS, channelsFor, isAdmin } from './channels.js';
import { describe as describeEvent } from './describe.js';

/**
 * @typedef {'connecting'|'connected'|'disconnected'|'reconnecting'|'polling'|'unavailable'} Status
 *
 * @typedef {object} NotificationEntry One item of `notifications`.
 * @property {string} id The payload id (for inbox notifications, the inbox id).
 * @property {string} event The broadcast event (`notification.created`, `donation.large`, ...).
 * @property {string} type The notification's own type for `notification.created`
 *   (`donation_receipt`), else the event name.
 * @property {string} title
 * @property {string} message
 * @property {'low'|'normal'|'high'|'urgent'|string} priority
 * @property {string} created_at RFC 3339.
 * @property {boolean} read
 * @property {string|null} action_url
 * @property {string|null} channel The logical channel it came from (null: the inbox).
 * @property {'socket'|'inbox'|'catch-up'|'poll'} source How it reached this page: live on the
 *   socket, the inbox loaded at start, the catch-up after a reconnection, or a poll while no
 *   transport connects.
 * @property {boolean} inbox Whether it is stored in the user's inbox (can be marked read there).
 * @property {object} payload The broadcast payload (rebuilt in that shape for inbox rows).
 *
 * @typedef {object} HeraldError What `lastError` holds.
 * @property {'connection'|'subscription'|'token'|'api'|'handler'} type
 * @property {string} message
 * @property {number} [code] Pusher error code (`4001`, ...).
 * @property {number} [status] HTTP status.
 * @property {string} [channel]
 * @property {number} at `Date.now()` when it happened.
 *
 * @typedef {(payload: object, meta: {event: string, channel: string|null, source: string, entry: NotificationEntry}) => void} Handler
 *
 * @typedef {object} Options
 * @property {Function} Echo The laravel-echo class.
 * @property {Function} Pusher The pusher-js class.
 * @property {string} key The app key.
 * @property {string} [wsHost] default: the host of `herald`.
 * @property {number} [wsPort] default: the port of `herald` (Herald serves both on one port).
 * @property {number} [wssPort] default: `wsPort`.
 * @property {boolean} [forceTLS] default: whether `herald` is `https:`.
 * @property {boolean} [httpFallback=true] Let pusher-js fall back to its HTTP transports
 *   (`xhr_streaming`, then `xhr_polling`) when WebSockets do not connect. `false`: WebSocket only
 *   (`enabledTransports: ['ws', 'wss']`).
 * @property {string} [httpHost] Host of the HTTP transports; default: `wsHost`.
 * @property {number} [httpPort] Their port without TLS; default: `wsPort`.
 * @property {number} [httpsPort] Their port with TLS; default: `wssPort`.
 * @property {string} [httpPath='/pusher'] Their path prefix.
 * @property {string} [cluster='mt1'] pusher-js wants one; unused with `wsHost`.
 * @property {string} herald Herald's base URL (`https://herald.example.com`): `/broadcasting/auth`
 *   and `/api/v1/...` are under it.
 * @property {string|(() => string|Promise<string>)} token The platform's bearer token, or a
 *   function returning it (called again before each connection attempt and API call, so a
 *   refreshed token is picked up).
 * @property {{id: string|number, organization_id?: string|number|null, roles?: string[]}} user
 * @property {Record<string, Handler>} [handlers] Per broadcast event (`'donation.large'`), and
 *   `'*'` for every one; called once per notification id, live or caught up.
 * @property {{baseMs?: number, maxMs?: number}|false} [reconnect] The composable's own reconnection
 *   (when pusher-js gives up: `unavailable`, `failed`, or a 4000–4099 close): exponential backoff
 *   from `baseMs` (1000) up to `maxMs` (30000), each delay drawn in [delay/2, delay]. `false`:
 *   never (status then stays `unavailable` / `disconnected`, and nothing is polled).
 * @property {boolean} [polling=true] While no transport connects (pusher-js `unavailable` or
 *   `failed`), poll Herald's inbox (and the channel histories, with `history`) every
 *   `pollIntervalMs`, with status `polling`, until a transport connects again.
 * @property {number} [pollIntervalMs=15000] Time between two polls (plus up to 20 % jitter); at
 *   least 100, else a TypeError.
 * @property {'private'|'public'} [adminVisibility='private'] Match the server's
 *   `[channels] admin_visibility`.
 * @property {(string|number)[]} [campaigns] Campaign ids to follow (`campaign.{id}`).
 * @property {boolean} [history] Catch up the shared channels (organization, admin channels,
 *   system-maintenance) from Herald's channel history after reconnecting; default true for
 *   admins, false otherwise.
 * @property {number} [initialLimit=20] How many inbox notifications to load at start.
 * @property {number} [maxItems=200] Longest `notifications` list kept (oldest dropped).
 * @property {boolean} [autoConnect=true] Connect at once.
 * @property {object} [echoOptions] Extra options for Echo / pusher-js (e.g. `unavailableTimeout`).
 * @property {(event: string, payload: object) => {title: string, message: string}} [describe]
 * @property {typeof fetch} [fetch]
 */

const DEFAULT_RECONNECT = { baseMs: 1000, maxMs: 30000 };
const PAGE = 100;
const MAX_PAGES = 20;
const MAX_SEEN = 5000;
const DEFAULT_POLL_INTERVAL_MS = 15000;
const MIN_POLL_INTERVAL_MS = 100;
/** Each poll waits between 1 and 1 + POLL_JITTER times the interval. */
const POLL_JITTER = 0.2;
/** pusher-js's HTTP fallbacks for browsers with CORS XHR (not XDomainRequest, not SockJS). */
const HTTP_TRANSPORTS = ['xhr_streaming', 'xhr_polling'];

/**
 * The platform's notification socket as a Vue 3 composable. Works inside a component's `setup`
 * (disconnects on unmount) and outside one (call `disconnect()` yourself).
 *
 * @param {Options} options
 */
export function useNotificationWebSocket(options) {
  const { Echo, Pusher, key, user } = options ?? {};
  if (typeof Echo !== 'function') throw new TypeError('useNotificationWebSocket: options.Echo (laravel-echo) is required');
  if (typeof Pusher !== 'function') throw new TypeError('useNotificationWebSocket: options.Pusher (pusher-js) is required');
  if (!key) throw new TypeError('useNotificationWebSocket: options.key (the app key) is required');
  if (!options.herald) throw new TypeError('useNotificationWebSocket: options.herald (Herald\'s base URL) is required');
  if (options.token === undefined) throw new TypeError('useNotificationWebSocket: options.token is required');
  const pollIntervalMs = options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
  if (typeof pollIntervalMs !== 'number' || !Number.isFinite(pollIntervalMs) || pollIntervalMs < MIN_POLL_INTERVAL_MS) {
    throw new TypeError(`useNotificationWebSocket: options.pollIntervalMs must be a number of milliseconds, at least ${MIN_POLL_INTERVAL_MS}`);
  }

  const base = String(options.herald).replace(/\/+$/, '');
  const heraldUrl = new URL(base);
  const secure = heraldUrl.protocol === 'https:';
  const defaultPort = Number(heraldUrl.port) || (secure ? 443 : 80);
  const reconnect =
    options.reconnect === false
      ? null
      : {
          baseMs: options.reconnect?.baseMs ?? DEFAULT_RECONNECT.baseMs,
          maxMs: options.reconnect?.maxMs ?? DEFAULT_RECONNECT.maxMs,
        };
  const handlers = options.handlers ?? {};
  const describe = options.describe ?? describeEvent;
  const fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
  const initialLimit = Math.max(0, Math.min(PAGE, options.initialLimit ?? 20));
  const maxItems = options.maxItems ?? 200;
  const plans = channelsFor(user, { adminVisibility: options.adminVisibility, campaigns: options.campaigns });
  const historyOn = options.history ?? isAdmin(user);
  const historyChannels = historyOn ? plans.filter((plan) => plan.kind !== 'user').map((plan) => plan.name) : [];
  const pollingOn = (options.polling ?? true) && reconnect !== null;

  // ---- state the component sees
  /** @type {import('vue').Ref<Status>} */
  const status = ref('disconnected');
  /** @type {NotificationEntry[]} newest first */
  const notifications = reactive([]);
  const unreadCount = computed(() => notifications.reduce((count, entry) => count + (entry.read ? 0 : 1), 0));
  /** @type {import('vue').Ref<HeraldError|null>} */
  const lastError = ref(null);
  /** Per logical channel: 'pending' | 'subscribed' | 'failed'. */
  const subscriptions = reactive(Object.fromEntries(plans.map((plan) => [plan.name, 'pending'])));
  /** The composable's own reconnection: attempts since the last connection, and when the next is due. */
  const reconnectAttempts = ref(0);
  const nextRetryAt = ref(/** @type {number|null} */ (null));
  /** True while fetching what was missed (the inbox, channel histories). */
  const catchingUp = ref(false);

  // ---- internals
  let echo = null;
  const authHeaders = {};
  let running = false;
  let everConnected = false;
  let releasing = false; // true while the composable itself disconnects pusher-js
  let retryTimer = null;
  let aborter = new AbortController();
  let chain = Promise.resolve();
  let pending = 0;
  /** Newest inbox notification id the inbox API returned (its order is the server's). */
  let inboxCursor = null;
  let inboxLoaded = false;
  /** Per history channel: the last seq seen and whether that is the channel's tail yet. */
  const history = new Map();
  const seen = new Set();
  /** The polling step: on while no transport connects; `pollOk` once a poll reached the inbox. */
  let polling = false;
  let pollOk = false;
  let pollTimer = null;

  /** Records an error in `lastError` (an aborted request is not one). */
  const fail = (error) => {
    if (error?.name === 'AbortError') return;
    const recorded = { type: error?.type ?? 'api', message: String(error?.message ?? error), at: Date.now() };
    for (const field of ['status', 'code', 'channel']) {
      if (error?.[field] !== undefined) recorded[field] = error[field];
    }
    lastError.value = recorded;
  };

  async function currentToken() {
    const token = typeof options.token === 'function' ? await options.token() : options.token;
    if (!token) throw Object.assign(new Error('no bearer token'), { type: 'token' });
    authHeaders.Authorization = `Bearer ${token}`;
    return token;
  }

  async function api(path, method = 'GET') {
    const token = await currentToken();
    const response = await fetchImpl(`${base}${path}`, {
      method,
      headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' },
      signal: aborter.signal,
    });
    if (!response.ok) {
      const text = await response.text().catch(() => '');
      let detail = text;
      try {
        detail = JSON.parse(text).error ?? text;
      } catch {
        // not JSON
      }
      throw Object.assign(new Error(`${method} ${path}: HTTP ${response.status}${detail ? ` ${detail}` : ''}`), {
        type: 'api',
        status: response.status,
      });
    }
    return response.json();
  }

  // ---- the list

  function isOwnInbox(event, payload) {
    if (!INBOX_EVENTS.includes(event)) return false;
    const owner = event === 'notification.created' ? payload?.notification?.user_id : payload?.user_id;
    return owner === undefined || String(owner) === String(user.id);
  }

  function entryOf(event, payload, { channel, source, read = false }) {
    const { title, message } = describe(event, payload);
    return {
      id: String(payload?.id ?? `${event}-${Date.now()}-${Math.random().toString(36).slice(2)}`),
      event,
      type: event === 'notification.created' ? (payload?.notification?.type ?? event) : event,
      title,
      message,
      priority: payload?.priority ?? 'normal',
      created_at: payload?.created_at ?? new Date().toISOString(),
      read,
      action_url: payload?.notification?.action_url ?? payload?.action_url ?? null,
      channel,
      source,
      inbox: isOwnInbox(event, payload),
      payload,
    };
  }

  const timeOf = (entry) => {
    const time = Date.parse(entry.created_at);
    return Number.isNaN(time) ? 0 : time;
  };

  function insert(entry) {
    const time = timeOf(entry);
    let index = notifications.findIndex((other) => timeOf(other) <= time);
    if (index === -1) index = notifications.length;
    notifications.splice(index, 0, entry);
    if (notifications.length > maxItems) notifications.splice(maxItems);
    seen.add(entry.id);
    if (seen.size > MAX_SEEN) seen.delete(seen.values().next().value);
  }

  /** Adds a broadcast unless its id was seen; calls the handlers for a new one. */
  function receive(event, payload, meta, { notify = true, read = false } = {}) {
    const id = payload?.id === undefined || payload?.id === null ? null : String(payload.id);
    if (id !== null && seen.has(id)) {
      if (read) {
        const known = notifications.find((entry) => entry.id === id);
        if (known) known.read = true;
      }
      return;
    }
    const entry = entryOf(event, payload, { ...meta, read });
    insert(entry);
    if (!notify) return;
    for (const handler of [handlers[event], handlers['*']]) {
      if (typeof handler !== 'function') continue;
      try {
        handler(payload, { event, channel: meta.channel, source: meta.source, entry });
      } catch (error) {
        fail({ type: 'handler', message: `handler for ${event} threw: ${error?.message ?? error}` });
        console.error(error);
      }
    }
  }

  /** An inbox row, as the broadcast payload it came with. */
  function payloadOfInboxRow(row) {
    if (row.type === 'payment.failed') {
      return { ...(row.data ?? {}), id: row.id, type: 'payment.failed', priority: row.priority, created_at: row.created_at };
    }
    return {
      id: row.id,
      type: 'notification.created',
      priority: row.priority,
      created_at: row.created_at,
      notification: {
        id: row.id,
        user_id: String(user.id),
        type: row.type,
        title: row.title,
        message: row.message,
        priority: row.priority,
        data: row.data ?? {},
        action_url: row.action_url ?? null,
      },
    };
  }

  function receiveInboxRow(row, source) {
    const event = row.type === 'payment.failed' ? 'payment.failed' : 'notification.created';
    receive(event, payloadOfInboxRow(row), { channel: null, source }, { notify: source !== 'inbox', read: row.read_at != null });
  }

  // ---- catching up

  /**
   * The inbox: the newest notifications at start, then everything after the newest one seen
   * (`source`: `catch-up` after a reconnection, `poll` while polling).
   */
  async function catchUpInbox(source = 'catch-up') {
    if (!inboxLoaded) {
      const body = await api(`/api/v1/notifications?limit=${Math.max(1, initialLimit)}`);
      const rows = body.data ?? [];
      if (rows.length) inboxCursor = rows[0].id;
      if (initialLimit > 0) for (const row of [...rows].reverse()) receiveInboxRow(row, 'inbox');
      inboxLoaded = true;
      return;
    }
    for (let page = 0; page < MAX_PAGES; page += 1) {
      // With no cursor the inbox was empty at start: `after=` (empty) is everything since.
      const after = encodeURIComponent(inboxCursor ?? '');
      const body = await api(`/api/v1/notifications?after=${after}&limit=${PAGE}`);
      const rows = body.data ?? [];
      for (const row of rows) receiveInboxRow(row, source);
      if (rows.length) inboxCursor = rows[rows.length - 1].id;
      if (rows.length < PAGE) break;
    }
  }

  /**
   * A shared channel's history: the first call only learns the channel's last seq (what came
   * before this page opened is not news); later calls add what came after it.
   */
  async function catchUpChannel(name, source = 'catch-up') {
    const state = history.get(name) ?? { after: 0, tail: false };
    history.set(name, state);
    for (let page = 0; page < MAX_PAGES; page += 1) {
      const body = await api(`/api/v1/channels/${encodeURIComponent(name)}/events?after=${state.after}&limit=${PAGE}`);
      const events = body.events ?? [];
      if (state.tail) for (const item of events) receive(item.event, item.data, { channel: name, source });
      if (typeof body.next_after === 'number') state.after = body.next_after;
      if (events.length < PAGE) {
        state.tail = true;
        break;
      }
    }
  }

  /**
   * Runs catch-ups and polls one after the other (so two never read the inbox with the same
   * cursor); a failure is reported, the next one still runs. Polls do not count in `catchingUp`.
   */
  function queue(task, { tracked = true } = {}) {
    if (tracked) {
      pending += 1;
      catchingUp.value = true;
    }
    chain = chain
      .then(task)
      .catch(fail)
      .finally(() => {
        if (!tracked) return;
        pending -= 1;
        catchingUp.value = pending > 0;
      });
    return chain;
  }

  // ---- polling, while no transport connects

  /** What `status` says while not connected: `polling` once a poll reached the inbox. */
  const waiting = (fallback) => (polling && pollOk ? 'polling' : fallback);

  /** One poll: the inbox, then (with `history`) the shared channels. */
  async function pollOnce() {
    if (!polling || !running) return;
    try {
      await catchUpInbox('poll');
    } catch (error) {
      if (!polling || !running || error?.name === 'AbortError') return;
      pollOk = false;
      if (status.value === 'polling') status.value = 'reconnecting';
      if (error?.status !== undefined || error?.type === 'token') fail(error);
      // Herald unreachable over HTTP too: part of the connection problem already shown.
      else if (lastError.value?.type !== 'connection') {
        fail({ type: 'connection', message: `polling the inbox failed: ${error?.message ?? error}` });
      }
      return;
    }
    if (!polling || !running) return;
    pollOk = true;
    status.value = 'polling';
    for (const name of historyChannels) {
      if (!polling || !running) return;
      await catchUpChannel(name, 'poll').catch(fail);
    }
  }

  function schedulePoll() {
    clearTimeout(pollTimer);
    pollTimer = null;
    if (!polling || !running) return;
    const delay = Math.round(pollIntervalMs * (1 + Math.random() * POLL_JITTER));
    pollTimer = setTimeout(() => {
      pollTimer = null;
      queue(pollOnce, { tracked: false }).then(schedulePoll);
    }, delay);
  }

  /** Starts polling (the first poll at once) unless it is on or turned off. */
  function startPolling() {
    if (!pollingOn || polling || !running) return;
    polling = true;
    pollOk = false;
    queue(pollOnce, { tracked: false }).then(schedulePoll);
  }

  function stopPolling() {
    polling = false;
    pollOk = false;
    clearTimeout(pollTimer);
    pollTimer = null;
  }

  // ---- the socket

  function bindChannels() {
    for (const plan of plans) {
      const channel = plan.visibility === 'private' ? echo.private(plan.name) : echo.channel(plan.name);
      for (const event of plan.events) {
        channel.listen(`.${event}`, (payload) => receive(event, payload, { channel: plan.name, source: 'socket' }));
      }
      // Subscribed (again, after every reconnection): now nothing new is missed on the socket,
      // so fetch what may have been missed before.
      channel.subscribed(() => {
        subscriptions[plan.name] = 'subscribed';
        if (plan.kind === 'user') queue(catchUpInbox);
        else if (historyChannels.includes(plan.name)) queue(() => catchUpChannel(plan.name));
      });
      channel.error((error) => {
        subscriptions[plan.name] = 'failed';
        fail({
          type: 'subscription',
          channel: plan.name,
          status: error?.status,
          message: `subscription to ${plan.name} refused${error?.status ? ` (HTTP ${error.status})` : ''}${
            error?.error ? `: ${error.error}` : ''
          }`,
        });
      });
    }
  }

  function onStateChange({ current }) {
    if (!running || releasing) return;
    if (current === 'connected') {
      // Real time again: the personal channel's resubscription catches up once from the inbox.
      stopPolling();
      clearTimeout(retryTimer); // pusher-js may connect by itself while a retry waits
      retryTimer = null;
      everConnected = true;
      reconnectAttempts.value = 0;
      nextRetryAt.value = null;
      status.value = 'connected';
      // The connection problem is over; other kinds of errors stay until replaced.
      if (lastError.value?.type === 'connection') lastError.value = null;
      return;
    }
    for (const name of Object.keys(subscriptions)) if (subscriptions[name] === 'subscribed') subscriptions[name] = 'pending';
    if (current === 'connecting') {
      status.value = waiting(everConnected ? 'reconnecting' : 'connecting');
      currentToken().catch(fail); // a refreshed token for pusher-js's own resubscriptions
    } else if (current === 'unavailable' || current === 'failed' || current === 'disconnected') {
      // pusher-js gave up — no transport connected, its HTTP fallbacks included (`unavailable`),
      // or none is supported here (`failed`) — or it stopped after a 4000-4099 close: take over.
      takeOver(current);
    }
  }

  function onConnectionError(event) {
    const data = event?.data ?? event?.error?.data;
    if (data?.code !== undefined || data?.message) {
      fail({ type: 'connection', code: data.code, message: data.message || `connection closed (code ${data.code})` });
    } else if (event?.type) {
      fail({ type: 'connection', message: event.type === 'WebSocketError' ? 'WebSocket error' : String(event.type) });
    }
  }

  function release() {
    for (const name of Object.keys(subscriptions)) subscriptions[name] = 'pending';
    if (!echo) return;
    releasing = true;
    try {
      echo.connector.pusher.disconnect();
    } finally {
      releasing = false;
    }
  }

  function takeOver(state) {
    if (!reconnect) {
      release();
      status.value = state === 'disconnected' ? 'disconnected' : 'unavailable';
      return;
    }
    // `unavailable` is only a report: pusher-js goes on trying its transports (the HTTP ones
    // start late, xhr_polling last) until the next attempt restarts it from the WebSocket.
    if (state !== 'unavailable') release();
    scheduleReconnect();
    // No transport connected: keep the list current from the inbox until one does.
    if (state === 'unavailable' || state === 'failed') startPolling();
  }

  function scheduleReconnect() {
    clearTimeout(retryTimer);
    reconnectAttempts.value += 1;
    const ceiling = Math.min(reconnect.maxMs, reconnect.baseMs * 2 ** (reconnectAttempts.value - 1));
    const delay = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
    status.value = waiting('reconnecting');
    nextRetryAt.value = Date.now() + delay;
    retryTimer = setTimeout(() => {
      retryTimer = null;
      nextRetryAt.value = null;
      open();
    }, delay);
  }

  async function open() {
    try {
      await currentToken();
    } catch (error) {
      fail(error);
      if (running && reconnect) scheduleReconnect();
      else if (running) status.value = 'unavailable';
      return;
    }
    if (!running) return;
    if (echo) {
      const pusher = echo.connector.pusher;
      // Still trying since `unavailable` (or connected meanwhile): start over, unless connected.
      if (pusher.connection.state === 'connected') return;
      release();
      pusher.connect();
      return;
    }
    const wsHost = options.wsHost ?? heraldUrl.hostname;
    const wsPort = options.wsPort ?? defaultPort;
    const wssPort = options.wssPort ?? options.wsPort ?? defaultPort;
    echo = new Echo({
      broadcaster: 'pusher',
      Pusher,
      key,
      cluster: options.cluster ?? 'mt1',
      wsHost,
      wsPort,
      wssPort,
      forceTLS: options.forceTLS ?? secure,
      // pusher-js's HTTP transports go to Herald too (its own default host is Pusher's).
      httpHost: options.httpHost ?? wsHost,
      httpPort: options.httpPort ?? wsPort,
      httpsPort: options.httpsPort ?? wssPort,
      httpPath: options.httpPath ?? '/pusher',
      enabledTransports: (options.httpFallback ?? true) ? ['ws', 'wss', ...HTTP_TRANSPORTS] : ['ws', 'wss'],
      disableStats: true,
      authEndpoint: `${base}/broadcasting/auth`,
      auth: { headers: authHeaders },
      ...(options.echoOptions ?? {}),
    });
    const connection = echo.connector.pusher.connection;
    connection.bind('state_change', onStateChange);
    connection.bind('error', onConnectionError);
    bindChannels();
    // pusher-js connects in its constructor: no transport supported here is reported before
    // anyone listens.
    if (connection.state === 'failed') onStateChange({ previous: 'initialized', current: 'failed' });
  }

  /** Connects (again); a no-op while connected or connecting. */
  function connect() {
    if (running) return;
    running = true;
    everConnected = false;
    reconnectAttempts.value = 0;
    status.value = 'connecting';
    open();
  }

  /** Disconnects and stops reconnecting; `connect()` resumes (and catches up). */
  function disconnect() {
    running = false;
    stopPolling();
    clearTimeout(retryTimer);
    retryTimer = null;
    nextRetryAt.value = null;
    aborter.abort();
    aborter = new AbortController();
    release();
    status.value = 'disconnected';
  }

  /** Marks a notification read (in the inbox when it is stored there). Resolves with true. */
  async function markRead(id) {
    const entry = notifications.find((item) => item.id === String(id));
    if (entry && !entry.inbox) {
      entry.read = true;
      return true;
    }
    try {
      await api(`/api/v1/notifications/${encodeURIComponent(id)}/read`, 'POST');
    } catch (error) {
      fail(error);
      throw error;
    }
    const current = notifications.find((item) => item.id === String(id));
    if (current) current.read = true;
    return true;
  }

  /** Marks everything read, in the inbox and in the list. Resolves with the inbox's count. */
  async function markAllRead() {
    let body;
    try {
      body = await api('/api/v1/notifications/read-all', 'POST');
    } catch (error) {
      fail(error);
      throw error;
    }
    for (const entry of notifications) entry.read = true;
    return body.updated;
  }

  if (getCurrentInstance()) {
    onUnmounted(() => {
      disconnect();
      if (echo) echo.connector.pusher.connection.unbind('state_change', onStateChange);
    });
  }
  if (options.autoConnect ?? true) connect();

  return {
    status,
    notifications,
    unreadCount,
    lastError,
    subscriptions,
    reconnectAttempts,
    nextRetryAt,
    catchingUp,
    channels: plans.map((plan) => ({ ...plan })),
    connect,
    disconnect,
    markRead,
    markAllRead,
    /** The Echo instance (null before the first connection), for listening to more. */
    echo: () => echo,
  };
}
