#!/usr/bin/env node
// Node peer for the marketcast fan-out benchmark: the common Node.js broadcast pattern.
//
// Design reproduced: the `ws` package's WebSocketServer with its built-in client set
// (wss.clients), permessage-deflate off; the snapshot file is JSON.parse'd once at start and on
// every tick the stamped message is built once with JSON.stringify({seq, ts, ...snapshot}) and
// handed to c.send(text) for every open client. No per-client queue: ws buffers in the socket's
// writable stream, which grows without bound for a slow client (that is the pattern's behaviour).
//
// Contract (same as seed_fastapi.py and floor.c): path /ws/market; every --interval seconds, if
// at least one client is connected, one text message '{"seq":N,"ts":MS,...snapshot keys}'
// (seq from 1, +1 per broadcast; ts = Date.now() when the tick's message is built); nothing else
// is sent; no connection limit; prints "READY <port>" once listening; exits 0 on SIGTERM/SIGINT.
//
// Keepalive: off. `ws` sends no protocol pings unless the application does, and this one doesn't.
// Listen backlog: Node's default (511), since the constructor below is the pattern as written.
//
// Wire text vs. the fixture file: same keys and order, compact, but JavaScript's number
// spelling drops a zero fraction (388000800000.0 -> 388000800000), so the message is shorter
// than the file: 78 bytes with snapshot-small.json (12,258 vs 12,336 bytes with seq/ts) and
// 226 bytes with snapshot-large.json (479,315 vs 479,541). Datetimes are strings and pass
// through unchanged.
//
// Run:
//   cd bench/peers && npm ci        (installs ws from package-lock.json)
//   node bench/peers/node_ws.js --port 8001 \
//       --snapshot /work/shared/fixtures/snapshot-small.json --interval 1.0
'use strict';

const fs = require('fs');
const { WebSocketServer } = require('ws');

function parseArgs(argv) {
  const opts = { host: '127.0.0.1', port: 8001, snapshot: null, interval: 1.0 };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    const value = () => (inline !== undefined ? inline : argv[++i]);
    switch (flag) {
      case '--host': opts.host = value(); break;
      case '--port': opts.port = Number(value()); break;
      case '--snapshot': opts.snapshot = value(); break;
      case '--interval': opts.interval = Number(value()); break;
      case '-h': case '--help':
        console.log('usage: node node_ws.js --snapshot FILE [--port 8001] [--host 127.0.0.1] [--interval 1.0]');
        process.exit(0);
        break;
      default:
        console.error(`unknown argument: ${argv[i]}`);
        process.exit(2);
    }
  }
  if (!opts.snapshot) { console.error('--snapshot FILE is required'); process.exit(2); }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) {
    console.error(`bad --port: ${opts.port}`); process.exit(2);
  }
  if (!(opts.interval > 0)) { console.error(`bad --interval: ${opts.interval}`); process.exit(2); }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
let snapshot;
try {
  snapshot = JSON.parse(fs.readFileSync(opts.snapshot, 'utf8'));
} catch (err) {
  console.error(`cannot load snapshot ${opts.snapshot}: ${err.message}`);
  process.exit(1);
}

const wss = new WebSocketServer({
  port: opts.port, host: opts.host, path: '/ws/market', perMessageDeflate: false,
});

wss.on('listening', () => {
  process.stdout.write(`READY ${wss.address().port}\n`);
});
wss.on('error', (err) => {
  console.error(`server error: ${err.message}`);
  process.exit(1);
});
wss.on('connection', (ws) => {
  ws.on('message', () => {}); // clients send nothing we use: discard
  ws.on('error', () => {});   // a broken socket is closed by ws and leaves wss.clients
});

let seq = 0;
const timer = setInterval(() => {
  if (wss.clients.size === 0) return;
  seq += 1;
  const ts = Date.now();
  const text = JSON.stringify({ seq, ts, ...snapshot });
  for (const c of wss.clients) if (c.readyState === 1) c.send(text);
}, opts.interval * 1000);

function shutdown() {
  clearInterval(timer);
  for (const c of wss.clients) c.terminate();
  wss.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
