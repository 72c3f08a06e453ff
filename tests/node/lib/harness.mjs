// Test harness: starts the real `herald` binary with a temporary config, and builds real
// pusher-js clients, laravel-echo instances and `pusher` server SDK instances against it.
//
// Every wait in the suite goes through `withTimeout`, `waitFor` or `waitForEvent`: nothing
// sleeps and then asserts.

import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { after, afterEach, before } from 'node:test';

import Pusher from 'pusher-js';
import Echo from 'laravel-echo';
import PusherServer from 'pusher';

const here = dirname(fileURLToPath(import.meta.url));
/** tests/node */
const suiteRoot = resolve(here, '..');

export const HERALD_BIN = process.env.HERALD_BIN
  ? resolve(suiteRoot, process.env.HERALD_BIN)
  : resolve(suiteRoot, '../../target/debug/herald');

/**
 * The pusher-js transports the clients use: `ws` unless `HERALD_NODE_TRANSPORTS` names others
 * (comma-separated, e.g. `xhr_streaming`); http-transports.test.mjs runs the suite's files again
 * with each of pusher-js's HTTP fallback transports.
 */
export const TRANSPORTS = (process.env.HERALD_NODE_TRANSPORTS ?? 'ws').split(',').map((name) => name.trim());

/** Default time any single wait may take. */
export const TIMEOUT_MS = 5000;

/** The end-to-end encryption master key of the SDKs: 32 bytes, base64. */
export const ENCRYPTION_MASTER_KEY_BASE64 = Buffer.from('herald-node-suite-master-key-32b').toString('base64');

/** The apps declared in the temporary config. */
export const APPS = {
  main: { id: 'main-app', key: 'main-key', secret: 'main-secret', client_events: true },
  disabled: { id: 'disabled-app', key: 'disabled-key', secret: 'disabled-secret', enabled: false },
  limited: { id: 'limited-app', key: 'limited-key', secret: 'limited-secret', max_connections: 1 },
  authRequired: {
    id: 'auth-app',
    key: 'auth-key',
    secret: 'auth-secret',
    user_authentication_required: true,
    user_authentication_timeout_secs: 2,
  },
  noClientEvents: { id: 'quiet-app', key: 'quiet-key', secret: 'quiet-secret', client_events: false },
};

function tomlValue(value) {
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(tomlValue).join(', ')}]`;
  if (value && typeof value === 'object') {
    // An inline table: `{ "key" = value, ... }` (webhook receivers, their headers).
    return `{ ${Object.entries(value)
      .map(([key, item]) => `${JSON.stringify(key)} = ${tomlValue(item)}`)
      .join(', ')} }`;
  }
  return String(value);
}

/** HS256 secret of the bearer tokens the temporary config accepts (see `server.token`). */
export const JWT_SECRET = 'node-suite-jwt-secret';

/**
 * The suite's configuration file: `[server]` on 127.0.0.1 and a free port (plus `server`),
 * `[admin]` on a free port, `[database]` a SQLite file in `dir` (none without `dir`: a cluster
 * node takes `DATABASE_URL`), `[auth]` with the suite's secrets (plus `auth`), `[webhooks]`
 * (`webhooks`), and APPS with `apps` as `[[apps]]`.
 */
export function configToml(dir, { server: serverOverrides = {}, auth: authOverrides = {}, apps: extraApps = {}, webhooks = {} } = {}) {
  const serverSection = {
    host: '127.0.0.1',
    port: 0,
    // Stopping the server at the end of a file should not wait long.
    shutdown_grace_secs: 1,
    ...serverOverrides,
  };
  const lines = ['[server]'];
  for (const [key, value] of Object.entries(serverSection)) lines.push(`${key} = ${tomlValue(value)}`);
  lines.push('');
  lines.push('[admin]', 'port = 0', '');
  if (dir) lines.push('[database]', `url = ${tomlValue(`sqlite://${join(dir, 'herald.db')}`)}`, '');
  lines.push('[auth]', `jwt_secret = ${tomlValue(JWT_SECRET)}`);
  lines.push(`encryption_master_key_base64 = ${tomlValue(ENCRYPTION_MASTER_KEY_BASE64)}`);
  for (const [key, value] of Object.entries(authOverrides)) lines.push(`${key} = ${tomlValue(value)}`);
  lines.push('');
  lines.push('[webhooks]');
  for (const [key, value] of Object.entries(webhooks)) lines.push(`${key} = ${tomlValue(value)}`);
  lines.push('');
  for (const app of Object.values({ ...APPS, ...extraApps })) {
    lines.push('[[apps]]');
    for (const [key, value] of Object.entries(app)) lines.push(`${key} = ${tomlValue(value)}`);
    lines.push('');
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Waiting

/** Rejects with a labelled error when `promise` takes longer than `ms`. */
export function withTimeout(promise, ms = TIMEOUT_MS, label = 'operation') {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${label}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Waits until something happens, at most `ms`:
 * - `waitFor(() => value)`: polls the predicate until it returns a truthy value (returned);
 * - `waitFor(target, 'event')`: the next `event` of a pusher-js dispatcher or Node emitter.
 */
export function waitFor(source, eventOrMs, maybeMs) {
  if (typeof source === 'function') {
    const ms = typeof eventOrMs === 'number' ? eventOrMs : TIMEOUT_MS;
    const deadline = Date.now() + ms;
    return new Promise((resolvePromise, reject) => {
      const poll = () => {
        let value;
        try {
          value = source();
        } catch (error) {
          reject(error);
          return;
        }
        if (value) resolvePromise(value);
        else if (Date.now() > deadline) {
          reject(new Error(`timed out after ${ms} ms waiting for ${source.toString().slice(0, 160)}`));
        } else setTimeout(poll, 10);
      };
      poll();
    });
  }
  return waitForEvent(source, eventOrMs, { timeout: maybeMs });
}

/**
 * The next `event` emitted by `target` (pusher-js `bind`/`unbind`, or a Node emitter) for which
 * `filter(...args)` holds; resolves with the first argument.
 */
export function waitForEvent(target, event, { timeout = TIMEOUT_MS, filter = () => true, label } = {}) {
  let handler;
  const promise = new Promise((resolvePromise) => {
    handler = (...args) => {
      if (filter(...args)) resolvePromise(args[0]);
    };
    if (typeof target.bind === 'function' && typeof target.unbind === 'function') target.bind(event, handler);
    else target.on(event, handler);
  });
  const off = () => {
    if (typeof target.unbind === 'function') target.unbind(event, handler);
    else target.off(event, handler);
  };
  return withTimeout(promise, timeout, label ?? `event ${event}`).finally(off);
}

/** Records every `event` of `target`; `until(n)` waits for the n-th. */
export function record(target, event) {
  const events = [];
  const handler = (data) => events.push(data);
  if (typeof target.bind === 'function') target.bind(event, handler);
  else target.on(event, handler);
  return {
    events,
    until(count, ms = TIMEOUT_MS) {
      return waitFor(() => events.length >= count && events, ms);
    },
    stop() {
      if (typeof target.unbind === 'function') target.unbind(event, handler);
      else target.off(event, handler);
    },
  };
}

/** The Pusher error code carried by a pusher-js connection `error` event, wherever it sits. */
export function errorCode(error) {
  return error?.data?.code ?? error?.error?.data?.code ?? null;
}

// ---------------------------------------------------------------------------------------------
// pusher-js helpers

/**
 * pusher-js's Node build uses faye-websocket, whose `close()` arms a 30 s timer even when the
 * socket is already closed, and never clears it then. That happens whenever the *server* closes
 * an established connection with a 4000–4099 code (pusher-js then calls `close()` again), and it
 * would keep each test process alive for 30 s after its last test. The timer is unref'd here:
 * behaviour is unchanged, it just no longer holds the process open.
 */
export function unrefFayeCloseTimer(client) {
  const socket = client.connection.connection?.transport?.socket;
  if (!socket) return;
  let owner = socket;
  while (owner && !Object.prototype.hasOwnProperty.call(owner, 'close')) owner = Object.getPrototypeOf(owner);
  if (!owner || owner.close.heraldUnref) return;
  const original = owner.close;
  const patched = function close(...args) {
    const result = original.apply(this, args);
    this._closeTimer?.unref?.();
    return result;
  };
  patched.heraldUnref = true;
  owner.close = patched;
}

/** A `pusher` server SDK instance for the app `config`, talking to the HTTP API on `port`. */
export function sdkAt(port, config, overrides = {}) {
  return new PusherServer({
    appId: config.id,
    key: config.key,
    secret: config.secret,
    host: '127.0.0.1',
    port,
    useTLS: false,
    encryptionMasterKeyBase64: ENCRYPTION_MASTER_KEY_BASE64,
    timeout: TIMEOUT_MS,
    ...overrides,
  });
}

/**
 * A pusher-js client (already connecting) with `base` options, signing channel authorizations
 * (`presence`: `{user_id, user_info}`; `authorize` replaces the handler) and sign-ins (`user`)
 * with the `signer` SDK; added to `clients` for the caller's clean-up.
 */
export function pusherClient(key, base, signer, { presence, user, authorize, options = {} }, clients) {
  const client = new Pusher(key, {
    ...base,
    channelAuthorization: {
      customHandler:
        authorize ??
        (({ socketId, channelName }, callback) => {
          try {
            const data = channelName.startsWith('presence-') ? presence : undefined;
            callback(null, signer.authorizeChannel(socketId, channelName, data));
          } catch (error) {
            callback(error, null);
          }
        }),
    },
    userAuthentication: {
      customHandler: ({ socketId }, callback) => {
        try {
          callback(null, signer.authenticateUser(socketId, user));
        } catch (error) {
          callback(error, null);
        }
      },
    },
    ...options,
  });
  clients.add(client);
  client.connection.bind('connected', () => unrefFayeCloseTimer(client));
  return client;
}

/** Waits until a pusher-js client is connected; resolves with its socket id. */
export async function connected(client, ms = TIMEOUT_MS) {
  if (client.connection.state !== 'connected') {
    await waitForEvent(client.connection, 'state_change', {
      timeout: ms,
      filter: ({ current }) => current === 'connected',
      label: 'pusher-js state "connected"',
    });
  }
  return client.connection.socket_id;
}

/**
 * Connects, calls `client.signin()` and waits for `pusher:signin_success`; resolves with that
 * event (its `data.user_data` is the signed-in user's data as the server echoed it).
 */
export async function signIn(client, ms = TIMEOUT_MS) {
  await connected(client, ms);
  const success = waitForEvent(client.connection, 'message', {
    timeout: ms,
    filter: (event) => event.event === 'pusher:signin_success',
    label: 'pusher:signin_success',
  });
  client.signin();
  return success;
}

/**
 * Subscribes and waits for `pusher:subscription_succeeded` (resolves with its data, e.g. the
 * presence members) or rejects with the `pusher:subscription_error` data.
 */
export async function subscribe(client, name, ms = TIMEOUT_MS) {
  const channel = client.subscribe(name);
  if (channel.subscribed) return { channel, data: undefined };
  const outcome = new Promise((resolvePromise, reject) => {
    const ok = (data) => {
      cleanup();
      resolvePromise({ channel, data });
    };
    const failed = (data) => {
      cleanup();
      const error = new Error(`subscription to ${name} failed: ${JSON.stringify(data)}`);
      error.data = data;
      reject(error);
    };
    const cleanup = () => {
      channel.unbind('pusher:subscription_succeeded', ok);
      channel.unbind('pusher:subscription_error', failed);
    };
    channel.bind('pusher:subscription_succeeded', ok);
    channel.bind('pusher:subscription_error', failed);
  });
  return withTimeout(outcome, ms, `subscription to ${name}`);
}

/**
 * Every raw text frame the client receives, as parsed JSON (so `data` is still the string the
 * server put on the wire). Bound on the transport of the current connection.
 */
export function rawFrames(client) {
  const frames = [];
  const transport = client.connection.connection?.transport;
  if (!transport) throw new Error('rawFrames needs a connected client');
  transport.bind('message', (message) => frames.push(JSON.parse(message.data)));
  return frames;
}

// ---------------------------------------------------------------------------------------------
// The server

/**
 * Starts `herald serve` on a free port. Resolves with the handle the tests use to build clients.
 * `options.server` adds keys to the `[server]` section (e.g. a short `activity_timeout_secs`),
 * `options.auth` to `[auth]` (e.g. `cors_origins` for a browser page on another origin),
 * `options.apps` declares apps besides APPS (name → app, as in APPS; `server.apps` has them;
 * `webhooks: [{url, event_types}]` gives one its receivers), `options.webhooks` sets keys of the
 * `[webhooks]` section (e.g. a short `removal_delay_ms`).
 */
export async function startServer(options = {}) {
  if (!existsSync(HERALD_BIN)) {
    throw new Error(
      `herald binary not found at ${HERALD_BIN}: build it with \`cargo build\` at the repository root, or set HERALD_BIN`,
    );
  }
  const dir = mkdtempSync(join(tmpdir(), 'herald-node-'));
  const configPath = join(dir, 'herald.toml');
  writeFileSync(configPath, configToml(dir, options));

  // `launch` spawns the binary; `server.restart()` calls it again with the same ports and
  // directory, so `child` and `exited` always refer to the current process.
  let child;
  let exited;
  const killOnExit = () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  process.on('exit', killOnExit);
  const killAndExit = (signal) => () => {
    killOnExit();
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  const onSigint = killAndExit('SIGINT');
  const onSigterm = killAndExit('SIGTERM');
  process.once('SIGINT', onSigint);
  process.once('SIGTERM', onSigterm);

  let logs = '';
  const launch = async (wsPort, env = {}) => {
    let output = '';
    child = spawn(HERALD_BIN, ['serve', '--host', '127.0.0.1', '--port', String(wsPort), '--config', configPath], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, HERALD_LOG: process.env.HERALD_LOG ?? 'warn', ...env },
    });
    const current = child;
    current.stderr.setEncoding('utf8');
    current.stderr.on('data', (chunk) => {
      logs = (logs + chunk).slice(-20000);
      if (process.env.HERALD_DEBUG) process.stderr.write(chunk);
    });
    current.stdout.setEncoding('utf8');
    exited = new Promise((resolveExit) => current.once('exit', (code, signal) => resolveExit({ code, signal })));
    const currentExit = exited;
    return withTimeout(
      new Promise((resolvePort, reject) => {
        current.stdout.on('data', (chunk) => {
          output += chunk;
          const match = output.match(/WebSocket\s+ws:\/\/127\.0\.0\.1:(\d+)\/app\//);
          const admin = output.match(/Admin\s+http:\/\/127\.0\.0\.1:(\d+)\//);
          // The admin line comes before "Laravel Echo:"; without an admin listener there is none.
          if (match && (admin || /Laravel Echo:/.test(output))) {
            resolvePort({ port: Number(match[1]), adminPort: admin ? Number(admin[1]) : null });
          }
        });
        currentExit.then(({ code, signal }) =>
          reject(new Error(`herald exited before it was ready (code ${code}, signal ${signal}):\n${logs}${output}`)),
        );
        current.once('error', reject);
      }),
      10000,
      'the herald banner',
    ).catch((error) => {
      killOnExit();
      throw error;
    });
  };
  const { port, adminPort } = await launch(0);

  const clients = new Set();

  const server = {
    port,
    /** The admin listener's port (metrics, dashboard), null without one; kept by `restart()`. */
    adminPort,
    host: '127.0.0.1',
    apps: { ...APPS, ...options.apps },
    logs: () => logs,

    /** URL of a route on this server, e.g. `server.url('/broadcasting/auth')`. */
    url(path) {
      return `http://127.0.0.1:${port}${path}`;
    },

    /** A bearer token minted by `herald token` with the suite's secret. */
    token({ user, org, roles = [], name, ttl = '1h' }) {
      const args = ['token', '--config', configPath, '--user', String(user), '--ttl', ttl];
      if (org !== undefined) args.push('--org', String(org));
      if (roles.length) args.push('--roles', roles.join(','));
      if (name !== undefined) args.push('--name', name);
      return execFileSync(HERALD_BIN, args, { encoding: 'utf8' }).trim();
    },

    /** A `pusher` server SDK instance for `app` (name in APPS, or an app object). */
    sdk(app = 'main', overrides = {}) {
      return sdkAt(port, typeof app === 'string' ? server.apps[app] : app, overrides);
    },

    /** The pusher-js options shared by clients and Echo. */
    clientOptions(app = 'main') {
      const config = typeof app === 'string' ? server.apps[app] : app;
      return {
        cluster: 'mt1',
        wsHost: '127.0.0.1',
        wsPort: port,
        wssPort: port,
        // The HTTP fallback transports go to httpHost/httpPort (pusher-js's default host is
        // sockjs.pusher.com, so both are always set).
        httpHost: '127.0.0.1',
        httpPort: port,
        httpsPort: port,
        forceTLS: false,
        enabledTransports: TRANSPORTS,
        disableStats: true,
        key: config.key,
      };
    },

    /**
     * A pusher-js client (already connecting). Options:
     * - `key`: override the app key (e.g. an unknown key);
     * - `presence`: `{user_id, user_info}` signed into presence channel auth;
     * - `user`: user data (`{id, ...}`) for `pusher.signin()` through the SDK;
     * - `authorize`: replace the channel authorization handler.
     */
    client(app = 'main', { key, presence, user, authorize, ...options } = {}) {
      const config = typeof app === 'string' ? server.apps[app] : app;
      const signer = server.sdk(config);
      const base = server.clientOptions(config);
      return pusherClient(key ?? config.key, base, signer, { presence, user, authorize, options }, clients);
    },

    /** A laravel-echo instance on the pusher broadcaster, authorizing through the SDK. */
    echo(app = 'main', { presence, ...options } = {}) {
      const config = typeof app === 'string' ? APPS[app] : app;
      const signer = server.sdk(config);
      const echo = new Echo({
        broadcaster: 'pusher',
        ...server.clientOptions(config),
        Pusher,
        authorizer: (channel) => ({
          authorize: (socketId, callback) => {
            try {
              const data = channel.name.startsWith('presence-') ? presence : undefined;
              callback(null, signer.authorizeChannel(socketId, channel.name, data));
            } catch (error) {
              callback(error, null);
            }
          },
        }),
        ...options,
      });
      clients.add(echo.connector.pusher);
      echo.connector.pusher.connection.bind('connected', () => unrefFayeCloseTimer(echo.connector.pusher));
      return echo;
    },

    /** Disconnects every client and Echo instance made so far. */
    disconnectAll() {
      for (const client of clients) client.disconnect();
      clients.clear();
    },

    /** Sends SIGTERM without touching the clients; resolves with `{code, signal}` on exit. */
    terminate() {
      child.kill('SIGTERM');
      return withTimeout(exited, 5000, 'herald to exit after SIGTERM');
    },

    /**
     * Stops the running process — `SIGKILL` by default (a crash), or `{signal: 'SIGTERM'}` — and
     * starts the binary again on the same ports, config and database, leaving the clients alone
     * (they reconnect by themselves). Resolves once the new process is ready.
     */
    async restart({ signal = 'SIGKILL' } = {}) {
      await server.kill(signal);
      await server.start();
    },

    /** Stops the process without restarting it (`SIGKILL` by default): clients see it go away. */
    async kill(signal = 'SIGKILL') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await withTimeout(exited, 5000, `herald to exit after ${signal}`);
    },

    /** Starts the binary again after `kill()`, on the same ports, config and database. */
    async start() {
      const ports = await launch(port, adminPort === null ? {} : { HERALD_ADMIN__PORT: String(adminPort) });
      if (ports.port !== port || ports.adminPort !== adminPort) {
        throw new Error(`herald restarted on ${ports.port}/${ports.adminPort} instead of ${port}/${adminPort}`);
      }
    },

    /** Disconnects every client, then stops the server (SIGTERM, SIGKILL after 5 s). */
    async stop() {
      server.disconnectAll();
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        try {
          await withTimeout(exited, 5000, 'herald to exit');
        } catch {
          child.kill('SIGKILL');
          await exited;
        }
      }
      process.off('exit', killOnExit);
      process.off('SIGINT', onSigint);
      process.off('SIGTERM', onSigterm);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return server;
}

export { Pusher, Echo, PusherServer };

// ---------------------------------------------------------------------------------------------
// Small test utilities

let counter = 0;
/** A channel (or user) name no other test uses: `prefix-<n>-<random>`. */
export function unique(prefix) {
  counter += 1;
  return `${prefix}-${counter}-${Math.random().toString(36).slice(2, 8)}`;
}

/**
 * Ordering barrier: triggers a `sentinel` event on `channel` through `sdk` and waits until the
 * pusher-js `channel` receives it. Frames for one socket are delivered in order, so anything
 * the server queued for that socket before the trigger has been received once this resolves —
 * which is how the suite proves that something did *not* happen, without sleeping.
 */
export async function barrier(sdk, channel, ms = TIMEOUT_MS) {
  const token = Math.random().toString(36).slice(2);
  const received = waitForEvent(channel, 'sentinel', {
    timeout: ms,
    filter: (data) => data?.token === token,
    label: `sentinel on ${channel.name}`,
  });
  await sdk.trigger(channel.name, 'sentinel', { token });
  await received;
}

/**
 * The other direction: sends `pusher:ping` and waits for the `pusher:pong`. The server handles a
 * socket's frames in order, so every frame the client sent before (unsubscribe, client events)
 * has been processed once this resolves.
 */
export async function clientBarrier(client, ms = TIMEOUT_MS) {
  const connection = client.connection.connection;
  if (!connection) throw new Error('clientBarrier needs a connected client');
  const pong = waitForEvent(connection, 'pong', { timeout: ms, label: 'pusher:pong' });
  client.connection.send_event('pusher:ping', {});
  await pong;
}

/** Polls the HTTP API until `/channels/{name}` reports `subscription_count === count`. */
export async function untilSubscriptionCount(sdk, name, count, ms = TIMEOUT_MS) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    const response = await sdk.get({ path: `/channels/${name}`, params: { info: 'subscription_count' } });
    last = await response.json();
    if ((last.subscription_count ?? 0) === count) return last;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for subscription_count of ${name} to become ${count} (last: ${JSON.stringify(last)})`);
    }
    await new Promise((resolveTick) => setTimeout(resolveTick, 20));
  }
}

/**
 * How a connection attempt ends: resolves with `'connected'`, or with the Pusher error code seen
 * before pusher-js gave up (state `disconnected` or `failed`).
 */
export function connectionOutcome(client, ms = TIMEOUT_MS) {
  let cleanup;
  const promise = new Promise((resolvePromise) => {
    let code = null;
    const onError = (event) => {
      const seen = errorCode(event);
      if (seen !== null) code = seen;
    };
    const onState = ({ current }) => {
      if (current === 'connected') resolvePromise('connected');
      else if (current === 'disconnected' || current === 'failed') resolvePromise(code);
    };
    cleanup = () => {
      client.connection.unbind('error', onError);
      client.connection.unbind('state_change', onState);
    };
    client.connection.bind('error', onError);
    client.connection.bind('state_change', onState);
    if (client.connection.state === 'connected') resolvePromise('connected');
  });
  return withTimeout(promise, ms, 'the connection attempt to settle').finally(cleanup);
}

// ---------------------------------------------------------------------------------------------
// A raw WebSocket, for checking exact frames and close codes pusher-js hides

/**
 * Opens a raw WebSocket (faye-websocket's client, the one pusher-js's Node build ships) to
 * `path` on the server, e.g. `/app/main-key?protocol=7`. Every text frame is recorded, parsed.
 */
export function rawSocket(server, path) {
  const WebSocket = Pusher.Runtime.getWebSocketAPI();
  const socket = new WebSocket(`ws://127.0.0.1:${server.port}${path}`);
  const frames = [];
  const closed = new Promise((resolveClose) => {
    socket.onclose = (event) => resolveClose({ code: event.code, reason: event.reason });
  });
  socket.onmessage = (event) => frames.push(JSON.parse(event.data));
  return {
    socket,
    frames,
    /** Resolves with `{code, reason}` of the close frame. */
    closed: (ms = TIMEOUT_MS) => withTimeout(closed, ms, `close of ${path}`),
    /** Waits for the first recorded frame with `event`. */
    frame: (event, ms = TIMEOUT_MS) => waitFor(() => frames.find((f) => f.event === event), ms),
    send: (frame) => socket.send(JSON.stringify(frame)),
    close: () => {
      socket.close();
      socket._closeTimer?.unref?.();
    },
  };
}

/**
 * Starts one server for the test file (before), disconnects every client after each test, stops
 * the server at the end; `onStart(server)` receives it.
 */
export function useServer(onStart, options = {}) {
  let server;
  before(async () => {
    server = await startServer(options);
    onStart(server);
  });
  afterEach(() => server?.disconnectAll());
  after(async () => {
    await server?.stop();
  });
}
