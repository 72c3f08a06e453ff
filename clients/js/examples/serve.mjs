// A tiny static file server for the demo page (and the browser test): serves URL prefixes from
// directories, with the MIME types ES modules need. Nothing is bundled or copied.
//
//   node clients/js/examples/serve.mjs [port]
//
// serves the repository root, with /node_modules/ taken from tests/node/node_modules (where
// vue, laravel-echo and pusher-js are installed), at http://127.0.0.1:<port>/clients/js/examples/.

import { createReadStream, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

/**
 * Starts serving `mounts` (`{'/node_modules/': '/abs/dir', '/': '/abs/root'}`; the longest
 * matching prefix wins) on 127.0.0.1. Resolves with `{port, url(path), close()}`.
 */
export function startStaticServer(mounts, { host = '127.0.0.1', port = 0 } = {}) {
  const prefixes = Object.keys(mounts).sort((a, b) => b.length - a.length);
  const server = createServer((request, response) => {
    const path = decodeURIComponent(new URL(request.url, 'http://x').pathname);
    const prefix = prefixes.find((candidate) => path.startsWith(candidate));
    const root = prefix === undefined ? null : resolve(mounts[prefix]);
    const file = root === null ? null : normalize(join(root, path.slice(prefix.length)));
    let stat = null;
    try {
      if (file && (file === root || file.startsWith(root + sep))) stat = statSync(file);
    } catch {
      stat = null;
    }
    if (!stat?.isFile() || (request.method !== 'GET' && request.method !== 'HEAD')) {
      response.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${path}`);
      return;
    }
    response.writeHead(200, {
      'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
      'content-length': stat.size,
      'cache-control': 'no-store',
    });
    if (request.method === 'HEAD') response.end();
    else createReadStream(file).pipe(response);
  });
  return new Promise((resolveStart, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const actual = server.address().port;
      resolveStart({
        port: actual,
        url: (path) => `http://${host}:${actual}${path}`,
        close: () =>
          new Promise((resolveClose) => {
            server.closeAllConnections?.();
            server.close(() => resolveClose());
          }),
      });
    });
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
  const served = await startStaticServer(
    { '/node_modules/': join(repo, 'tests/node/node_modules'), '/': repo },
    { port: Number(process.argv[2] ?? 8080) },
  );
  console.log(`demo: ${served.url('/clients/js/examples/index.html')}?herald=http://127.0.0.1:6001&key=app-key&token=<token>&user=42`);
}
