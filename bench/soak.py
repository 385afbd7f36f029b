#!/usr/bin/env python3
"""soak.py - churn and soak: clients connect, read, vanish without a close, and come back.

Starts marketcast (the simulator feed, 2 ticks a second) on a free loopback port, measures its
open files and memory at rest, then keeps --clients clients busy for --duration seconds: each
connects, upgrades, reads snapshots for a random 0.2-3 s, and vanishes without a WebSocket close
(half of them with a FIN, half with a reset), then connects again. A tenth of the clients stop
reading altogether for a while before they vanish, so their outboxes fill. At the end every
client is gone; the script waits for the server to notice, and checks that

  * the server's open file count is back to its baseline (no descriptor leaks), and
  * its resident memory grew by less than --rss-bound-mb over the baseline.

It prints one JSON line with the figures and exits 1 when a bound is broken. Bounded in time
(--duration, default 600 s) and in count (--max-connections).

    python3 bench/soak.py                                   # 10 minutes, 2,000 clients
    python3 bench/soak.py --duration 20 --clients 300       # the CI-sized run (tests/soak.rs)
    python3 bench/soak.py --backfill 21600 --clients 200    # after a full simulated day (#20)

With --backfill the server first plays that many seconds of simulated session (SIM_BACKFILL,
history on) and the baseline is taken once the back-fill is over and history has written it
all, so the run measures what churn adds to a server that already holds a whole day.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_kinds(pid: int) -> list[str]:
    """What the descriptors are (socket:[..], anon_inode:[eventpoll], files), for a report."""
    kinds = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        kinds.append(target.split("[")[0] if target.startswith(("socket:", "anon_inode:")) else target)
    return sorted(kinds)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def health(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
        return json.load(r)


class Stats:
    def __init__(self) -> None:
        self.connections = 0
        self.refused = 0
        self.failed = 0
        self.frames = 0
        self.concurrent = 0
        self.peak_concurrent = 0


async def one_visit(port: int, stats: Stats, rng: random.Random) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    stats.concurrent += 1
    stats.peak_concurrent = max(stats.peak_concurrent, stats.concurrent)
    try:
        writer.write(
            (f"GET /ws/market HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        if not head.startswith(b"HTTP/1.1 101"):
            stats.refused += 1
            return
        stats.connections += 1
        stall = rng.random() < 0.1
        until = time.monotonic() + rng.uniform(0.2, 3.0)
        while time.monotonic() < until:
            if stall:
                await asyncio.sleep(until - time.monotonic())
                break
            try:
                chunk = await asyncio.wait_for(reader.read(65536), until - time.monotonic())
            except asyncio.TimeoutError:
                break
            if not chunk:
                break
            stats.frames += chunk.count(b'{"seq":')
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
        stats.failed += 1
    finally:
        stats.concurrent -= 1
        # Vanish without a WebSocket close: a reset or a plain FIN.
        if rng.random() < 0.5:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                except OSError:
                    pass
        writer.close()


async def client_loop(port: int, stats: Stats, stop_at: float, budget: list[int], seed: int) -> None:
    rng = random.Random(seed)
    while time.monotonic() < stop_at and budget[0] > 0:
        budget[0] -= 1
        try:
            await one_visit(port, stats, rng)
        except OSError:
            stats.failed += 1
            await asyncio.sleep(0.1)


async def churn(port: int, clients: int, duration: float, max_connections: int) -> Stats:
    stats = Stats()
    stop_at = time.monotonic() + duration
    budget = [max_connections]
    # Spread the first connections over a second.
    async def staggered(i: int) -> None:
        await asyncio.sleep(i / clients)
        await client_loop(port, stats, stop_at, budget, i)
    await asyncio.gather(*(staggered(i) for i in range(clients)))
    return stats


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server-bin", default=str(ROOT / "target/release/marketcast"))
    ap.add_argument("--duration", type=float, default=600.0)
    ap.add_argument("--clients", type=int, default=2000)
    ap.add_argument("--max-connections", type=int, default=2_000_000)
    ap.add_argument("--rss-bound-mb", type=float, default=64.0)
    ap.add_argument("--settle", type=float, default=30.0, help="seconds to wait for the server to see every client gone")
    ap.add_argument("--backfill", type=int, default=0, help="SIM_BACKFILL: seconds of session played before the baseline")
    ap.add_argument("--backfill-timeout", type=float, default=1800.0, help="seconds the back-fill and its history may take")
    ap.add_argument("--rest", type=float, default=2.0, help="seconds the server rests before each of the two memory readings")
    args = ap.parse_args()

    port = free_port()
    data = tempfile.mkdtemp(prefix="marketcast-soak-")
    env = dict(os.environ, APP_PORT=str(port), FEED="simulator", WS_BROADCAST_INTERVAL="0.5",
               WS_MAX_CONNECTIONS_PER_IP="0", WS_CONNECT_RATE="0", WS_CONNECT_RATE_TOTAL="0", WS_QUEUE_SIZE="8",
               WS_SLOW_CLIENT_TIMEOUT="2", DATA_DIR=data, LOG_LEVEL="warning",
               SIM_BACKFILL=str(args.backfill))
    server = subprocess.Popen([args.server_bin, "serve"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health(port)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    print("soak: the server did not start", file=sys.stderr)
                    return 1
                time.sleep(0.1)
        backfill = {}
        if args.backfill > 0:
            # The back-fill is over when the feed runs live and history has written it all.
            deadline = time.monotonic() + args.backfill_timeout
            began = time.monotonic()
            while True:
                h = health(port)
                hist = h.get("history", {})
                if h["feed"]["state"] == "running" and hist.get("queued", 0) < 1000:
                    break
                if time.monotonic() > deadline:
                    print("soak: the back-fill did not end", file=sys.stderr)
                    return 1
                time.sleep(1)
            with open(f"/proc/{server.pid}/status") as f:
                hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
            backfill = {"backfill_s": args.backfill, "backfill_wall_s": round(time.monotonic() - began, 1),
                        "backfill_events": h["feed"]["events"], "history": hist, "vmhwm_kib": hwm}
        time.sleep(args.rest)
        files_before, rss_before = open_files(server.pid), rss_kib(server.pid)
        kinds_before = fd_kinds(server.pid)
        started = time.monotonic()
        peak_rss = [rss_before]
        # RSS once a minute (and at the end), to tell a plateau from a leak.
        rss_by_minute: list[int] = []

        async def run() -> Stats:
            async def sample() -> None:
                ticks = 0
                while True:
                    rss = rss_kib(server.pid)
                    peak_rss[0] = max(peak_rss[0], rss)
                    if ticks % 60 == 0:
                        rss_by_minute.append(rss)
                    ticks += 1
                    await asyncio.sleep(1)
            sampler = asyncio.create_task(sample())
            stats = await churn(port, args.clients, args.duration, args.max_connections)
            sampler.cancel()
            return stats

        stats = asyncio.run(run())
        elapsed = time.monotonic() - started
        # Every client is gone; the server sees it at once (FIN or reset), or at its heartbeat.
        settle_deadline = time.monotonic() + args.settle
        while health(port)["clients"] > 0 and time.monotonic() < settle_deadline:
            time.sleep(0.2)
        h = health(port)
        # The server closes the health request's own connection a moment after answering.
        files_after = open_files(server.pid)
        close_deadline = time.monotonic() + 5
        while files_after > files_before and time.monotonic() < close_deadline:
            time.sleep(0.1)
            files_after = open_files(server.pid)
        # The same rest as before the baseline, so both readings are of a server at rest.
        time.sleep(max(0.0, args.rest - 2.0))
        rss_after = rss_kib(server.pid)
        result = {
            "duration_s": round(elapsed, 1),
            "clients": args.clients,
            "connections": stats.connections,
            "connections_per_s": round(stats.connections / elapsed, 1),
            "refused": stats.refused,
            "failed": stats.failed,
            "snapshots_read": stats.frames,
            "peak_concurrent": stats.peak_concurrent,
            "server_clients_after": h["clients"],
            "slow_client_closes": h["broadcast"]["slow_client_closes"],
            "open_files_before": files_before,
            "open_files_after": files_after,
            "rss_kib_before": rss_before,
            "rss_kib_peak": peak_rss[0],
            "rss_kib_after": rss_after,
            "rss_kib_by_minute": rss_by_minute,
            "rss_bound_kib": int(args.rss_bound_mb * 1024),
            **backfill,
        }
        problems = []
        if h["clients"] != 0:
            problems.append(f"{h['clients']} clients still registered")
        if files_after > files_before:
            kinds_after = fd_kinds(server.pid)
            extra = list(kinds_after)
            for k in kinds_before:
                if k in extra:
                    extra.remove(k)
            problems.append(f"open files {files_before} -> {files_after}: new {extra}")
        if rss_after - rss_before > args.rss_bound_mb * 1024:
            problems.append(f"memory grew {rss_after - rss_before} KiB")
        if stats.connections == 0:
            problems.append("no connection was made")
        result["problems"] = problems
        print(json.dumps(result))
        return 1 if problems else 0
    finally:
        server.terminate()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    sys.exit(main())
