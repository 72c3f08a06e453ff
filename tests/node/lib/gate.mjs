// A gate in front of a server's port, for tests of clients behind a network that blocks them: a
// TCP listener that, while open, forwards every connection to the target untouched, and while
// closed reads the first bytes of each connection (to record what was tried) and drops it, as a
// proxy or firewall refusing WebSockets and streaming would. Closing also drops the connections
// it forwards at that moment.

import { createServer, connect } from 'node:net';

/**
 * Starts a gate on 127.0.0.1 in front of `127.0.0.1:targetPort`, closed unless `open`. Resolves
 * with `{port, open(), close(), stop(), attempts}`: `attempts` lists the first line of every
 * connection (`GET /app/key?... HTTP/1.1`, `POST /pusher/app/... HTTP/1.1`, or `tls` for a TLS
 * handshake) with whether it was let through.
 */
export function startGate(targetPort, { open: startOpen = false } = {}) {
  let isOpen = startOpen;
  const attempts = [];
  const live = new Set();
  const server = createServer((client) => {
    live.add(client);
    client.on('close', () => live.delete(client));
    client.on('error', () => {});
    client.once('data', (chunk) => {
      const text = chunk.toString('latin1');
      const line = /^[A-Z]+ /.test(text) ? text.split('\r\n')[0] : 'tls';
      attempts.push({ line, passed: isOpen });
      if (!isOpen) {
        client.destroy();
        return;
      }
      const upstream = connect(targetPort, '127.0.0.1');
      live.add(upstream);
      upstream.on('close', () => {
        live.delete(upstream);
        client.destroy();
      });
      upstream.on('error', () => client.destroy());
      client.on('close', () => upstream.destroy());
      upstream.write(chunk);
      client.pipe(upstream);
      upstream.pipe(client);
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      resolve({
        port: server.address().port,
        attempts,
        /** Lets connections through from now on. */
        open() {
          isOpen = true;
        },
        /** Drops new connections and the ones going through now. */
        close() {
          isOpen = false;
          for (const socket of live) socket.destroy();
        },
        stop() {
          isOpen = false;
          for (const socket of live) socket.destroy();
          return new Promise((done) => server.close(() => done()));
        },
      });
    });
  });
}
