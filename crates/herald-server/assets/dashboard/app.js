// Herald's live dashboard: reads `/admin/api/stream` (Server-Sent Events) and renders it.
// Plain DOM, no framework: every value from the server is set as text, never parsed as HTML.

const STREAM_URL = '/admin/api/stream';
const MAX_FEED_ROWS = 200;
/** A live stream sends `status` every second; this long without one means it is stuck. */
const STALE_AFTER_MS = 5000;
/** When EventSource gives up (it does on an HTTP error), the page tries again this often. */
const REOPEN_AFTER_MS = 2000;

const $ = (id) => document.getElementById(id);
const numbers = new Intl.NumberFormat();

/** `el('td', {className: 'num'}, 'text', otherNode)`: an element with properties and children. */
function el(tag, properties = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(properties)) {
    if (key === 'dataset') Object.assign(element.dataset, value);
    else element[key] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

function formatCount(value) {
  return typeof value === 'number' ? numbers.format(value) : '–';
}

function formatDuration(seconds) {
  if (typeof seconds !== 'number') return '–';
  const s = Math.floor(seconds);
  const days = Math.floor(s / 86400);
  const hours = Math.floor((s % 86400) / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  if (days) return `${days}d ${hours}h`;
  if (hours) return `${hours}h ${minutes}m`;
  if (minutes) return `${minutes}m ${s % 60}s`;
  return `${s}s`;
}

function formatTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso ?? '');
  const time = date.toLocaleTimeString([], { hour12: false });
  return `${time}.${String(date.getMilliseconds()).padStart(3, '0')}`;
}

/** An error for display: URLs without their (signed) query strings, at most 240 characters. */
function shorten(text) {
  const plain = String(text ?? '').replace(/(https?:\/\/[^\s?)]+)\?[^\s)]*/g, '$1?…');
  return plain.length > 240 ? `${plain.slice(0, 239)}…` : plain;
}

/** A cell or span showing `text` shortened, the whole of it on hover. */
function detailElement(tag, text, className = 'detail') {
  return el(tag, { className, title: String(text ?? '') }, shorten(text));
}

/** Replaces a table body's rows, or shows `emptyText` when there are none. */
function fillTable(tbody, rows, emptyText, columns) {
  tbody.replaceChildren(
    ...(rows.length ? rows : [el('tr', { className: 'empty' }, el('td', { colSpan: columns }, emptyText))]),
  );
}

// ---------------------------------------------------------------------------------------------
// Connection state

const connection = $('connection');
let source = null;
let lastStatusAt = 0;
let reopenTimer = null;

function setConnection(state, text) {
  if (connection.dataset.state === state && connection.textContent === text) return;
  connection.dataset.state = state;
  connection.textContent = text;
}

function open() {
  clearTimeout(reopenTimer);
  reopenTimer = null;
  if (source) source.close();
  source = new EventSource(STREAM_URL);
  source.addEventListener('status', (event) => {
    lastStatusAt = Date.now();
    const status = JSON.parse(event.data);
    setConnection(status.draining ? 'draining' : 'live', status.draining ? 'draining' : 'live');
    renderStatus(status);
  });
  source.addEventListener('broadcast', (event) => addFeedRow(JSON.parse(event.data)));
  source.addEventListener('lagged', (event) => addNotice(`${event.data} updates skipped: this page fell behind`));
  source.addEventListener('error', () => {
    setConnection('reconnecting', 'reconnecting…');
    // EventSource retries network errors by itself (every `retry` ms); after an HTTP error it
    // stops for good, so the page reopens it, or goes to the login form if the token is gone.
    if (source.readyState === EventSource.CLOSED) scheduleReopen();
  });
}

function scheduleReopen() {
  if (reopenTimer) return;
  reopenTimer = setTimeout(async () => {
    reopenTimer = null;
    try {
      const response = await fetch('/admin/api/status', { cache: 'no-store' });
      if (response.status === 401) {
        window.location.assign('/dashboard');
        return;
      }
    } catch {
      // The server is still down: try again later.
      scheduleReopen();
      return;
    }
    open();
  }, REOPEN_AFTER_MS);
}

// A half-open connection (a host that vanished without closing it) shows no error: no status for
// a while means reconnect.
setInterval(() => {
  const state = connection.dataset.state;
  if ((state === 'live' || state === 'draining') && Date.now() - lastStatusAt > STALE_AFTER_MS) {
    setConnection('reconnecting', 'reconnecting…');
    open();
  }
}, 1000);

// ---------------------------------------------------------------------------------------------
// Status

let previous = null;
let deadLetterCount = null;

function rate(now, before, key, seconds) {
  if (!before || seconds <= 0) return null;
  const delta = now[key] - before[key];
  return delta >= 0 ? delta / seconds : null;
}

function renderStatus(status) {
  $('version').textContent = `v${status.version}`;
  $('uptime').textContent = formatDuration(status.uptime_secs);
  $('driver').textContent = status.driver;
  const database = status.database ?? {};
  $('database').textContent = `${database.backend ?? '?'} · ${database.up ? 'up' : 'DOWN'}`;
  $('database').classList.toggle('bad', !database.up);
  $('listen').textContent = status.listen?.websocket ?? '–';

  const seconds = previous ? (Date.now() - previous.at) / 1000 : 0;
  const before = new Map((previous?.status.apps ?? []).map((app) => [app.id, app]));
  const appRows = (status.apps ?? []).map((app) => {
    const channels = Object.entries(app.channels ?? {})
      .filter(([, count]) => count > 0)
      .map(([kind, count]) => `${kind} ${formatCount(count)}`)
      .join(' · ');
    const perSecond = (key) => {
      const value = rate(app, before.get(app.id), key, seconds);
      return value === null ? null : el('span', { className: 'rate' }, `${value.toFixed(1)}/s`);
    };
    return el(
      'tr',
      { dataset: { app: app.id } },
      el('th', { scope: 'row' }, app.id, app.enabled ? null : el('span', { className: 'tag' }, 'disabled')),
      el('td', { className: 'num' }, formatCount(app.connections)),
      el(
        'td',
        { className: 'transports' },
        ['ws', 'xhr_streaming', 'xhr_polling']
          .map((name) => `${name} ${formatCount(app.transports?.[name] ?? 0)}`)
          .join(' · '),
      ),
      el('td', { className: 'num' }, formatCount(app.subscriptions)),
      el('td', {}, channels || el('span', { className: 'muted' }, 'none')),
      el('td', { className: 'num' }, formatCount(app.messages_in), perSecond('messages_in')),
      el('td', { className: 'num' }, formatCount(app.messages_out), perSecond('messages_out')),
      el('td', { className: 'num' }, formatCount(app.slow_consumer_disconnects)),
    );
  });
  fillTable($('apps').tBodies[0], appRows, 'No apps configured.', 8);
  previous = { status, at: Date.now() };

  const delivery = status.delivery ?? {};
  const byLane = (counts) =>
    `${formatCount((counts?.['critical-broadcasts'] ?? 0) + (counts?.broadcasts ?? 0))}` +
    ` (critical ${formatCount(counts?.['critical-broadcasts'] ?? 0)})`;
  const counters = [
    ['Accepted events', formatCount(delivery.accepted_events)],
    ['Ignored events', formatCount(delivery.ignored_events)],
    ['Delivered', byLane(delivery.delivered)],
    ['Retried', byLane(delivery.retried)],
    ['Dead-lettered', byLane(delivery.dead_lettered)],
    ['Suppressed', formatCount(delivery.suppressed)],
  ];
  $('delivery').replaceChildren(
    ...counters.map(([term, value]) => el('div', {}, el('dt', {}, term), el('dd', {}, value))),
  );

  const laneRows = Object.entries(status.queue ?? {}).map(([lane, stats]) =>
    el(
      'tr',
      { dataset: { lane } },
      el('th', { scope: 'row' }, lane),
      el('td', { className: 'num' }, formatCount(stats.pending)),
      el('td', { className: 'num' }, stats.oldest_age_secs == null ? '–' : formatDuration(stats.oldest_age_secs)),
    ),
  );
  fillTable($('queue').tBodies[0], laneRows, 'Queue unavailable.', 3);

  const errorItems = (status.recent_errors ?? []).map((entry) => {
    const detail = entry.detail ?? {};
    return el(
      'li',
      {},
      el('time', { dateTime: entry.at }, formatTime(entry.at)),
      el('span', { className: `badge ${entry.status}` }, entry.status.replace('_', ' ')),
      el('span', { className: 'type' }, entry.type),
      detailElement('span', detail.error ?? ''),
    );
  });
  $('errors').replaceChildren(...(errorItems.length ? errorItems : [el('li', { className: 'muted' }, 'None.')]));

  if (typeof status.dead_letters === 'number' && status.dead_letters !== deadLetterCount) {
    deadLetterCount = status.dead_letters;
    $('dead-count').textContent = formatCount(deadLetterCount);
    refreshDeadLetters();
  }
}

// ---------------------------------------------------------------------------------------------
// Dead letters

async function api(path, options = {}) {
  const response = await fetch(path, { cache: 'no-store', ...options });
  if (response.status === 401) {
    window.location.assign('/dashboard');
    throw new Error('signed out');
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error ?? `HTTP ${response.status}`);
  return body;
}

async function refreshDeadLetters() {
  let body;
  try {
    body = await api('/admin/api/dead-letters?limit=50');
  } catch (error) {
    $('dead-result').textContent = `Could not list dead letters: ${error.message}`;
    return;
  }
  $('dead-count').textContent = formatCount(body.total);
  const rows = body.dead_letters.map((letter) => {
    const retry = el('button', { type: 'button', className: 'small-button' }, 'Retry');
    retry.addEventListener('click', () => retryDeadLetter(letter.broadcast_id, retry));
    return el(
      'tr',
      { dataset: { broadcastId: letter.broadcast_id } },
      el('td', {}, el('time', { dateTime: letter.failed_at }, formatTime(letter.failed_at))),
      el('td', {}, letter.event),
      el('td', { className: 'channels' }, letter.channels.join(', ')),
      el('td', { className: 'num' }, formatCount(letter.attempts)),
      detailElement('td', letter.last_error),
      el('td', {}, retry),
    );
  });
  fillTable($('dead-letters').tBodies[0], rows, 'No dead letters.', 6);
}

let deadLetterTimer = null;

/** A new dead letter may leave the count unchanged (one retried, one failed): list again. */
function scheduleDeadLetterRefresh() {
  clearTimeout(deadLetterTimer);
  deadLetterTimer = setTimeout(refreshDeadLetters, 300);
}

async function retryDeadLetter(broadcastId, button) {
  button.disabled = true;
  button.textContent = 'Retrying…';
  try {
    await api(`/admin/api/dead-letters/${encodeURIComponent(broadcastId)}/retry`, { method: 'POST' });
    $('dead-result').textContent = `Broadcast ${broadcastId} is back in the queue.`;
  } catch (error) {
    $('dead-result').textContent = `Retry failed: ${error.message}`;
    button.disabled = false;
    button.textContent = 'Retry';
  }
  refreshDeadLetters();
}

// ---------------------------------------------------------------------------------------------
// Live feed

const feedBody = $('feed').tBodies[0];
/** Keys of the rows shown (a reconnect sends the latest outcomes again). */
const shown = new Set();

function feedKey(item) {
  return `${item.seq}|${item.broadcast_id ?? item.event_id}|${item.status}`;
}

function addNotice(text) {
  const row = el('tr', { className: 'notice' }, el('td', { colSpan: 7 }, text));
  feedBody.prepend(row);
}

function addFeedRow(item) {
  const key = feedKey(item);
  if (shown.has(key)) return;
  shown.add(key);
  feedBody.querySelector('tr.empty')?.remove();
  const detail = item.error ?? item.reason ?? (item.attempt > 1 ? `attempt ${item.attempt}` : '');
  const row = el(
    'tr',
    {
      dataset: { key, seq: item.seq, atMs: item.at_ms, status: item.status, eventId: item.event_id },
      title: `event ${item.event_id}${item.broadcast_id ? `, broadcast ${item.broadcast_id}` : ''}`,
    },
    el('td', {}, el('time', { dateTime: item.at }, formatTime(item.at))),
    el('td', {}, el('span', { className: `badge ${item.status}` }, item.status.replace('_', ' '))),
    el(
      'td',
      {},
      el('span', { className: 'type' }, item.type),
      item.event && item.event !== item.type ? el('span', { className: 'event' }, item.event) : null,
    ),
    el('td', { className: 'channels' }, (item.channels ?? []).join(', ')),
    el('td', {}, item.lane ?? ''),
    el('td', { className: 'num' }, typeof item.latency_ms === 'number' ? `${formatCount(item.latency_ms)} ms` : ''),
    detailElement('td', detail),
  );
  if (item.status === 'dead_lettered') scheduleDeadLetterRefresh();
  // Newest first: most rows arrive newest, a reconnect's catch-up may be older.
  let before = feedBody.firstElementChild;
  while (before && !newer(item, before)) before = before.nextElementSibling;
  feedBody.insertBefore(row, before);
  while (feedBody.rows.length > MAX_FEED_ROWS) {
    const last = feedBody.lastElementChild;
    shown.delete(last.dataset.key);
    last.remove();
  }
}

/** Whether `item` goes above the row `other` (notices stay where they are). */
function newer(item, other) {
  if (!other.dataset.seq) return false;
  const at = Number(other.dataset.atMs);
  return item.at_ms > at || (item.at_ms === at && item.seq > Number(other.dataset.seq));
}

// ---------------------------------------------------------------------------------------------
// Test broadcast

$('test-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const button = $('test-send');
  const result = $('test-result');
  button.disabled = true;
  result.textContent = 'Sending…';
  try {
    const body = await api('/admin/api/test-broadcast', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ type: $('test-type').value }),
    });
    const outcome = body.event;
    const queued = outcome.broadcasts_queued === 1 ? '1 broadcast queued' : `${outcome.broadcasts_queued} broadcasts queued`;
    result.textContent = `${outcome.type} ${outcome.status}: ${queued} (event ${outcome.id}).`;
  } catch (error) {
    result.textContent = `Not sent: ${error.message}`;
  } finally {
    button.disabled = false;
  }
});

// The page arrives with the status as the server saw it (a JSON data block, never run): the first
// paint shows it at once, and the stream takes over from there.
const initial = document.getElementById('snapshot');
if (initial) {
  try {
    renderStatus(JSON.parse(initial.textContent));
  } catch {
    // A page without a usable snapshot waits for the stream's first status.
  }
}
open();
