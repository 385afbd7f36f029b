"""Connection smoke test for the fan-out benchmark peers: does a peer hold ~1,000 clients?

Opens N WebSocket clients to ws://HOST:PORT/ws/market (at most --concurrency handshakes at a time),
keeps every one receiving for --duration seconds, then drops them all at once (TCP abort, no close
handshake) and reports: clients connected, messages per client (min/median/max), clients that saw a
seq gap, and delivery latency (receive time - ts) percentiles. Exit 0 if every client connected
and got at least one message. This is a smoke test, not the benchmark: a Python client on a
2-core machine is itself the bottleneck with large payloads, so gaps and latency here say more
about the client than the peer.

Run (with a peer listening; needs `ulimit -n` above N plus a few):
    ulimit -n 20000
    python3 bench/peers/many_clients.py --port 8001 --clients 1000 --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import time

import websockets

PREFIX = re.compile(rb'^\{"seq":(\d+),"ts":(\d+),')


class Stats:
    def __init__(self) -> None:
        self.messages = 0
        self.gaps = 0
        self.latencies_ms: list[float] = []


async def receive(ws, stats: Stats, stop: asyncio.Event) -> None:
    prev = None
    while not stop.is_set():
        try:
            msg = await ws.recv(decode=False)
        except (websockets.exceptions.ConnectionClosed, asyncio.CancelledError):
            return
        now_ms = time.time() * 1000
        m = PREFIX.match(msg)
        if not m:
            raise RuntimeError(f"unexpected message start: {msg[:40]!r}")
        seq, ts = int(m.group(1)), int(m.group(2))
        if prev is not None and seq != prev + 1:
            stats.gaps += 1
        prev = seq
        stats.messages += 1
        stats.latencies_ms.append(now_ms - ts)


async def main() -> int:
    p = argparse.ArgumentParser(description="hold many WebSocket clients on a fan-out peer")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8001)
    p.add_argument("--clients", "-n", type=int, default=1000)
    p.add_argument("--duration", type=float, default=5.0, help="seconds to receive after all connected")
    p.add_argument("--concurrency", type=int, default=100, help="handshakes in flight at once")
    args = p.parse_args()
    url = f"ws://{args.host}:{args.port}/ws/market"

    sem = asyncio.Semaphore(args.concurrency)
    stop = asyncio.Event()

    async def open_one():
        async with sem:
            return await websockets.connect(url, compression=None, max_size=None, ping_interval=None,
                                            open_timeout=30)

    t0 = time.monotonic()
    results = await asyncio.gather(*(open_one() for _ in range(args.clients)), return_exceptions=True)
    conns = [r for r in results if not isinstance(r, BaseException)]
    errors = [r for r in results if isinstance(r, BaseException)]
    connect_s = time.monotonic() - t0

    stats = [Stats() for _ in conns]
    tasks = [asyncio.create_task(receive(ws, st, stop)) for ws, st in zip(conns, stats)]
    await asyncio.sleep(args.duration)
    stop.set()
    for ws in conns:
        ws.transport.abort()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    failures = [d for d in done if isinstance(d, BaseException) and not isinstance(d, asyncio.CancelledError)]

    counts = sorted(s.messages for s in stats) or [0]
    lat = sorted(x for s in stats for x in s.latencies_ms)
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")
    ok = not errors and not failures and counts[0] >= 1
    print(f"{'OK' if ok else 'FAIL'} {url}: connected {len(conns)}/{args.clients} in {connect_s:.1f}s; "
          f"messages/client min {counts[0]} median {statistics.median(counts):.0f} max {counts[-1]} "
          f"over {args.duration:.0f}s; clients with seq gaps {sum(1 for s in stats if s.gaps)}; "
          f"latency ms p50 {pct(0.5):.0f} p99 {pct(0.99):.0f} max {pct(1.0):.0f}")
    if errors:
        print(f"  connect errors: {len(errors)}, first: {type(errors[0]).__name__}: {errors[0]}")
    if failures:
        print(f"  receive errors: {len(failures)}, first: {failures[0]!r}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
