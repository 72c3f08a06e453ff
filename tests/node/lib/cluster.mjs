// Cluster-mode helpers: several `herald serve` processes ("nodes") sharing one Redis (or a Redis
// Cluster) and one PostgreSQL database, real pusher-js clients and `pusher` SDK instances per
// node, a TCP proxy in this process (to cut Redis away from the nodes) and a TCP load balancer
// (so pusher-js reconnects to whichever node is up during a rolling restart).
//
// Services: Redis at HERALD_TEST_REDIS_URL (default redis://127.0.0.1:6379) and PostgreSQL at
// HERALD_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test, as scripts/test),
// reached with `psql`. When one is missing the cluster tests skip with the reason, unless
// HERALD_REQUIRE_SERVICES=1 (CI), where they fail.
//
// Every process started here is SIGKILLed when the test process exits, whatever happened.

import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

import {
  APPS,
  configToml,
  HERALD_BIN,
  TIMEOUT_MS,
  pusherClient,
  sdkAt,
  signIn,
  waitFor,
  withTimeout,
} from './harness.mjs';

const execFileAsync = promisify(execFile);

export const REQUIRED = process.env.HERALD_REQUIRE_SERVICES === '1';
export const REDIS_URL = process.env.HERALD_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
export const POSTGRES_URL = process.env.HERALD_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** The timings every node runs with: a killed node is reaped within TTL + HEARTBEAT seconds. */
export const HEARTBEAT_SECS = 1;
export const NODE_TTL_SECS = 3;

export const sleep = (ms) => new Promise((resolveSleep) => setTimeout(resolveSleep, ms));

function randomId(length = 10) {
  let id = '';
  while (id.length < length) id += Math.random().toString(36).slice(2);
  return id.slice(0, length);
}

// ---------------------------------------------------------------------------------------------
// Processes: every child started here dies with the test process.

const children = new Set();
function track(child) {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}
function killChildren() {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}
process.on('exit', killChildren);
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    killChildren();
    process.exit(signal === 'SIGINT' ? 130 : 143);
  });
}

// ---------------------------------------------------------------------------------------------
// Services

/** Resolves with null when a Redis at host:port answers PING, with the problem otherwise. */
export function redisProblem(host, port, ms = 1000) {
  return new Promise((resolveProblem) => {
    const socket = net.connect(port, host);
    let reply = '';
    const done = (problem) => {
      clearTimeout(timer);
      socket.destroy();
      resolveProblem(problem);
    };
    const timer = setTimeout(() => done(`no answer to PING within ${ms} ms`), ms);
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk;
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG') ? null : `PING answered ${JSON.stringify(reply.trim())}`);
    });
    socket.on('error', (error) => done(error.message));
  });
}

/** Runs one SQL statement with psql against `url`; resolves with its output. */
export async function psql(url, sql, timeout = 15000) {
  const { stdout } = await execFileAsync('psql', [url, '-v', 'ON_ERROR_STOP=1', '-qAtc', sql], {
    timeout,
    env: { ...process.env, PGCONNECT_TIMEOUT: '3' },
  });
  return stdout.trim();
}

async function binaryProblem(binary) {
  try {
    await execFileAsync(binary, ['--version'], { timeout: 5000 });
    return null;
  } catch (error) {
    return `${binary}: ${error.code === 'ENOENT' ? 'not installed' : error.message}`;
  }
}

/**
 * Checks the services the cluster tests need. Resolves with `false` (run) or the reason to skip
 * (the `skip` option of node:test, printed in the report); throws when HERALD_REQUIRE_SERVICES=1
 * and something is missing, so the test file fails with the reason.
 * `redisBinaries`: the Redis Cluster test starts its own redis-server processes.
 */
export async function servicesSkip({ redisBinaries = false } = {}) {
  const problems = [];
  if (!existsSync(HERALD_BIN)) problems.push(`herald binary not found at ${HERALD_BIN} (cargo build, or set HERALD_BIN)`);
  const redis = new URL(REDIS_URL);
  const redisIssue = await redisProblem(redis.hostname, Number(redis.port || 6379));
  if (redisIssue) problems.push(`Redis at ${REDIS_URL}: ${redisIssue}`);
  const psqlIssue = await binaryProblem('psql');
  if (psqlIssue) problems.push(psqlIssue);
  else {
    try {
      await psql(POSTGRES_URL, 'SELECT 1');
    } catch (error) {
      problems.push(`PostgreSQL at ${POSTGRES_URL}: ${(error.stderr || error.message).trim()}`);
    }
  }
  if (redisBinaries) {
    for (const binary of ['redis-server', 'redis-cli']) {
      const issue = await binaryProblem(binary);
      if (issue) problems.push(issue);
    }
  }
  if (problems.length === 0) return false;
  const reason = `cluster tests need ${problems.join('; ')}`;
  // The herald binary is the suite's own business: the other files fail without it too.
  if (REQUIRED || !existsSync(HERALD_BIN)) throw new Error(`${reason} (HERALD_REQUIRE_SERVICES=1 makes this a failure)`);
  console.log(`# skipping: ${reason} (set HERALD_REQUIRE_SERVICES=1 to fail instead)`);
  return `${reason} (HERALD_REQUIRE_SERVICES=1 makes this a failure)`;
}

// CREATE and DROP DATABASE wait for a checkpoint, which can take long on a busy machine (another
// suite writing a lot to the same PostgreSQL): they get a minute and a half.
const DATABASE_DDL_TIMEOUT_MS = 90000;

/**
 * A fresh PostgreSQL database for one test file: `{url, name, drop()}`. A database left behind
 * by a failed drop (only a warning: it is not what the tests test) is named herald_cluster_*.
 */
export async function createDatabase() {
  const name = `herald_cluster_${randomId(10)}`;
  await psql(POSTGRES_URL, `CREATE DATABASE ${name}`, DATABASE_DDL_TIMEOUT_MS);
  const url = new URL(POSTGRES_URL);
  url.pathname = `/${name}`;
  return {
    name,
    url: url.toString(),
    async drop() {
      try {
        await psql(POSTGRES_URL, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`, DATABASE_DDL_TIMEOUT_MS);
      } catch (error) {
        console.warn(`# warning: could not drop the test database ${name}: ${(error.stderr || error.message).trim()}`);
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// pusher-js clients and SDK instances

/** A `pusher` server SDK instance talking to the HTTP API on `port`. */
export function sdkFor(port, app = 'main', overrides = {}) {
  return sdkAt(port, APPS[app], overrides);
}

/**
 * A pusher-js client (already connecting) to `port` (a node, or the load balancer), signing
 * channel authorizations (`presence`: `{user_id, user_info}`) and sign-ins (`user`) with the SDK.
 * `clients` collects it for `disconnectAll`.
 */
export function clientFor(port, clients, { app = 'main', presence, user, ...options } = {}) {
  const config = APPS[app];
  const signer = sdkFor(port, app);
  const base = {
    cluster: 'mt1',
    wsHost: '127.0.0.1',
    wsPort: port,
    wssPort: port,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
  };
  return pusherClient(config.key, base, signer, { presence, user, options }, clients);
}

/** A connected client signed in as `user` (`{id, ...}`) with its `#server-to-user-` channel. */
export async function signedIn(client) {
  await signIn(client);
  await waitFor(() => client.user.serverToUserChannel?.subscribed, TIMEOUT_MS);
  return client;
}

/** The SDK rejects a non-2xx answer with a RequestError carrying `status`. */
export async function triggerOutcome(promise) {
  try {
    const response = await promise;
    return { ok: true, status: response.status };
  } catch (error) {
    return { ok: false, status: error.status ?? null, error: error.message };
  }
}

// ---------------------------------------------------------------------------------------------
// Nodes

/**
 * Starts one node: `herald serve --port 0` with admin port 0, the cluster settings in its
 * environment, reading its ports from the banner. `node.kill()`/`node.terminate()` stop it,
 * `node.start()` starts it again on the same ports (a new node id).
 */
export async function startNode({ name, dir, redisUrl, prefix, databaseUrl, env = {} }) {
  const configPath = join(dir, `${name}.toml`);
  writeFileSync(configPath, configToml());
  const baseEnv = {
    ...process.env,
    HERALD_LOG: process.env.HERALD_LOG ?? 'warn',
    REDIS_URL: redisUrl,
    HERALD_CLUSTER__PREFIX: prefix,
    HERALD_CLUSTER__HEARTBEAT_SECS: String(HEARTBEAT_SECS),
    HERALD_CLUSTER__NODE_TTL_SECS: String(NODE_TTL_SECS),
    DATABASE_URL: databaseUrl,
    ...env,
  };
  let child;
  let exited;
  let logs = '';

  const launch = async (wsPort, adminPort) => {
    let output = '';
    const launchEnv = { ...baseEnv };
    if (adminPort) launchEnv.HERALD_ADMIN__PORT = String(adminPort);
    child = track(
      spawn(HERALD_BIN, ['serve', '--host', '127.0.0.1', '--port', String(wsPort), '--config', configPath], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: launchEnv,
      }),
    );
    const current = child;
    current.stderr.setEncoding('utf8');
    current.stderr.on('data', (chunk) => {
      logs = (logs + chunk).slice(-20000);
      if (process.env.HERALD_DEBUG) process.stderr.write(`[${name}] ${chunk}`);
    });
    current.stdout.setEncoding('utf8');
    exited = new Promise((resolveExit) => current.once('exit', (code, signal) => resolveExit({ code, signal })));
    const currentExit = exited;
    return withTimeout(
      new Promise((resolvePorts, reject) => {
        current.stdout.on('data', (chunk) => {
          output += chunk;
          const ws = output.match(/WebSocket\s+ws:\/\/127\.0\.0\.1:(\d+)\/app\//);
          const admin = output.match(/Admin\s+http:\/\/127\.0\.0\.1:(\d+)\//);
          if (ws && admin) resolvePorts({ port: Number(ws[1]), adminPort: Number(admin[1]) });
        });
        currentExit.then(({ code, signal }) =>
          reject(new Error(`node ${name} exited before it was ready (code ${code}, signal ${signal}):\n${logs}${output}`)),
        );
        current.once('error', reject);
      }),
      15000,
      `the banner of node ${name}`,
    ).catch((error) => {
      if (current.exitCode === null && current.signalCode === null) current.kill('SIGKILL');
      throw error;
    });
  };

  const { port, adminPort } = await launch(0, 0);
  const node = {
    name,
    port,
    adminPort,
    /** False between `kill`/`terminate` and `start` (the load balancer skips it). */
    running: true,
    logs: () => logs,
    pid: () => child.pid,
    sdk: (app = 'main', overrides = {}) => sdkFor(port, app, overrides),

    /** GET on the admin listener; resolves with `{status, body}`. */
    async admin(path) {
      const response = await fetch(`http://127.0.0.1:${adminPort}${path}`, { signal: AbortSignal.timeout(TIMEOUT_MS) });
      const text = await response.text();
      let body;
      try {
        body = JSON.parse(text);
      } catch {
        body = text;
      }
      return { status: response.status, body };
    },
    /** The `cluster` object of `/admin/api/status`. */
    async cluster() {
      const { status, body } = await node.admin('/admin/api/status');
      if (status !== 200) throw new Error(`status of node ${name}: HTTP ${status} ${JSON.stringify(body)}`);
      return body.cluster;
    },

    /** Signals the process (SIGKILL by default) and waits for it to exit. */
    async kill(signal = 'SIGKILL') {
      node.running = false;
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return withTimeout(exited, 10000, `node ${name} to exit after ${signal}`);
    },
    /** SIGTERM: sockets closed with 4200, then a clean exit. */
    terminate: () => node.kill('SIGTERM'),
    /** Starts the binary again on the same ports. */
    async start() {
      const ports = await launch(port, adminPort);
      if (ports.port !== port || ports.adminPort !== adminPort) {
        throw new Error(`node ${name} restarted on ${ports.port}/${ports.adminPort} instead of ${port}/${adminPort}`);
      }
      node.running = true;
    },
    /** SIGTERM, SIGKILL after 5 s. */
    async stop() {
      node.running = false;
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      try {
        await withTimeout(exited, 5000, `node ${name} to exit`);
      } catch {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
  return node;
}

/**
 * Starts `names.length` nodes on one Redis prefix and database (the first alone, then the others
 * in parallel; `together`: all at once, as an orchestrator would), and waits until each of them
 * lists all of them in its status.
 * Returns `{prefix, nodes, node(name), client(name, options), disconnectAll(), stop()}`.
 */
export async function startCluster({
  databaseUrl,
  redisUrl = REDIS_URL,
  names = ['A', 'B', 'C'],
  env = {},
  together = false,
} = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'herald-cluster-'));
  const prefix = `herald-node-test-${randomId(8)}`;
  const clients = new Set();
  const launch = (name) => startNode({ name, dir, redisUrl, prefix, databaseUrl, env });
  // Nodes started at the same time on a fresh database race in the migrations (see the test
  // "nodes started together on a fresh database" in cluster.test.mjs): unless `together`, the
  // first node starts alone, then the others at once.
  let started;
  if (together) started = await Promise.allSettled(names.map(launch));
  else {
    const [first] = await Promise.allSettled([launch(names[0])]);
    started = first.status === 'fulfilled' ? [first, ...(await Promise.allSettled(names.slice(1).map(launch)))] : [first];
  }
  const nodes = started.filter((result) => result.status === 'fulfilled').map((result) => result.value);
  const failed = started.find((result) => result.status === 'rejected');
  if (failed) {
    await Promise.all(nodes.map((node) => node.stop()));
    rmSync(dir, { recursive: true, force: true });
    await forgetPrefix(redisUrl, prefix);
    throw failed.reason;
  }
  const byName = Object.fromEntries(nodes.map((node) => [node.name, node]));
  const cluster = {
    prefix,
    redisUrl,
    nodes,
    node: (name) => byName[name],
    clients,
    /** A pusher-js client connecting to node `name` (or a port). */
    client(name, options = {}) {
      const port = typeof name === 'number' ? name : byName[name].port;
      return clientFor(port, clients, options);
    },
    disconnectAll() {
      for (const client of clients) client.disconnect();
      clients.clear();
    },
    /** Waits until every running node's status lists exactly the running nodes. */
    async untilNodesSeeEachOther(ms = 10000) {
      const running = nodes.filter((node) => node.running);
      let last;
      const deadline = Date.now() + ms;
      for (;;) {
        const views = await Promise.all(running.map((node) => node.cluster().catch((error) => ({ error: error.message }))));
        last = views;
        if (views.every((view) => view?.nodes?.length === running.length && view.redis?.up)) return views;
        if (Date.now() > deadline) {
          throw new Error(`timed out after ${ms} ms waiting for the nodes to list each other: ${JSON.stringify(last)}`);
        }
        await sleep(100);
      }
    },
    async stop() {
      cluster.disconnectAll();
      await Promise.all(nodes.map((node) => node.stop()));
      rmSync(dir, { recursive: true, force: true });
      await forgetPrefix(redisUrl, prefix);
    },
  };
  try {
    await cluster.untilNodesSeeEachOther();
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return cluster;
}

/**
 * Best effort: deletes the keys of a test prefix from a single Redis (`redis-cli --scan`), so a
 * developer's Redis does not collect them (the `apps` set has no TTL by design). Skipped for a
 * Redis Cluster (its servers are thrown away) and without redis-cli.
 */
async function forgetPrefix(redisUrl, prefix) {
  if (redisUrl.includes(',')) return;
  try {
    const { stdout } = await execFileAsync('redis-cli', ['-u', redisUrl, '--scan', '--pattern', `*${prefix}*`], { timeout: 5000 });
    const keys = stdout.split('\n').filter(Boolean);
    for (let i = 0; i < keys.length; i += 100) {
      await execFileAsync('redis-cli', ['-u', redisUrl, 'DEL', ...keys.slice(i, i + 100)], { timeout: 5000 });
    }
  } catch {
    // redis-cli missing, or Redis cut away by a test: the keys stay, harmlessly prefixed.
  }
}

// ---------------------------------------------------------------------------------------------
// Polling

/** Polls `read()` (async) until `check(value)` holds; resolves with the value. */
export async function until(read, check, { ms = TIMEOUT_MS, label = 'a condition', interval = 50 } = {}) {
  const deadline = Date.now() + ms;
  let last;
  let lastError;
  for (;;) {
    try {
      last = await read();
      lastError = undefined;
      if (check(last)) return last;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      const seen = lastError ? `error ${lastError.message}` : JSON.stringify(last);
      throw new Error(`timed out after ${ms} ms waiting for ${label} (last: ${seen})`);
    }
    await sleep(interval);
  }
}

/** GET through the SDK, parsed. */
export async function getJson(sdk, path, params = {}) {
  const response = await sdk.get({ path, params });
  return response.json();
}

// ---------------------------------------------------------------------------------------------
// A TCP proxy and a TCP load balancer, in this process

/**
 * A TCP proxy on 127.0.0.1 to `target` (`{host, port}`). `cut()` stops accepting and destroys
 * every open connection (the far side sees a reset); `restore()` listens again on the same port.
 */
export async function tcpProxy(target) {
  const sockets = new Set();
  let server = null;
  let port = 0;
  const handle = (downstream) => {
    const upstream = net.connect(target.port, target.host);
    sockets.add(downstream);
    sockets.add(upstream);
    const close = () => {
      downstream.destroy();
      upstream.destroy();
      sockets.delete(downstream);
      sockets.delete(upstream);
    };
    downstream.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
    downstream.pipe(upstream);
    upstream.pipe(downstream);
  };
  const listen = () =>
    new Promise((resolveListen, reject) => {
      server = net.createServer(handle);
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        port = server.address().port;
        resolveListen();
      });
    });
  await listen();
  return {
    get port() {
      return port;
    },
    get url() {
      return `redis://127.0.0.1:${port}`;
    },
    connections: () => sockets.size / 2,
    cut() {
      server?.close();
      server = null;
      for (const socket of sockets) socket.destroy();
      sockets.clear();
    },
    async restore() {
      if (!server) await listen();
    },
    close() {
      this.cut();
    },
  };
}

/**
 * A TCP load balancer on 127.0.0.1: each new connection goes to the next of `backends()` (ports)
 * in turn; a connection whose backend refuses is closed, and the client tries again.
 */
export async function loadBalancer(backends) {
  const sockets = new Set();
  let next = 0;
  const server = net.createServer((downstream) => {
    const ports = backends();
    sockets.add(downstream);
    if (ports.length === 0) {
      downstream.destroy();
      return;
    }
    const port = ports[next % ports.length];
    next += 1;
    const upstream = net.connect(port, '127.0.0.1');
    sockets.add(upstream);
    const close = () => {
      downstream.destroy();
      upstream.destroy();
      sockets.delete(downstream);
      sockets.delete(upstream);
    };
    downstream.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
    downstream.pipe(upstream);
    upstream.pipe(downstream);
  });
  await new Promise((resolveListen, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolveListen);
  });
  return {
    port: server.address().port,
    close() {
      server.close();
      for (const socket of sockets) socket.destroy();
      sockets.clear();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// A Redis Cluster of our own

/** A free TCP port whose cluster bus port (port + 10000) is free too. */
async function freeRedisPort() {
  for (;;) {
    const port = await new Promise((resolvePort, reject) => {
      const probe = net.createServer();
      probe.once('error', reject);
      probe.listen(0, '127.0.0.1', () => {
        const { port: found } = probe.address();
        probe.close(() => resolvePort(found));
      });
    });
    if (port + 10000 > 65535) continue;
    const busFree = await new Promise((resolveFree) => {
      const probe = net.createServer();
      probe.once('error', () => resolveFree(false));
      probe.listen(port + 10000, '127.0.0.1', () => probe.close(() => resolveFree(true)));
    });
    if (busFree) return port;
  }
}

/**
 * Starts `count` redis-server processes with cluster mode on, joins them with
 * `redis-cli --cluster create` (no replicas) and waits for `cluster_state:ok` on each.
 * Resolves with `{ports, url (comma-separated seeds), stop()}`.
 */
export async function startRedisCluster(count = 3) {
  const dir = mkdtempSync(join(tmpdir(), 'herald-redis-cluster-'));
  const ports = [];
  const processes = [];
  const stop = async () => {
    await Promise.all(
      processes.map(
        (child) =>
          new Promise((resolveExit) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolveExit();
            child.once('exit', resolveExit);
            child.kill('SIGKILL');
          }),
      ),
    );
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < count; i += 1) {
      const port = await freeRedisPort();
      ports.push(port);
      const child = track(
        spawn(
          'redis-server',
          [
            '--port', String(port),
            '--bind', '127.0.0.1',
            '--cluster-enabled', 'yes',
            '--cluster-config-file', join(dir, `nodes-${port}.conf`),
            '--save', '',
            '--appendonly', 'no',
            '--dir', dir,
          ],
          { stdio: ['ignore', 'ignore', 'pipe'] },
        ),
      );
      processes.push(child);
    }
    for (const port of ports) {
      await until(() => redisProblem('127.0.0.1', port, 500), (problem) => problem === null, {
        ms: 10000,
        label: `redis-server on ${port}`,
      });
    }
    await execFileAsync(
      'redis-cli',
      ['--cluster', 'create', ...ports.map((port) => `127.0.0.1:${port}`), '--cluster-replicas', '0', '--cluster-yes'],
      { timeout: 30000 },
    );
    for (const port of ports) {
      await until(
        async () => (await execFileAsync('redis-cli', ['-p', String(port), 'cluster', 'info'], { timeout: 5000 })).stdout,
        (info) => /cluster_state:ok/.test(info),
        { ms: 15000, label: `cluster_state:ok on ${port}`, interval: 100 },
      );
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return { ports, url: ports.map((port) => `redis://127.0.0.1:${port}`).join(','), stop };
}
