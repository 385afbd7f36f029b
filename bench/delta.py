#!/usr/bin/env python3
"""delta.py - delta messages, measured on a moving late-session market.

Starts marketcast (release) with the simulator backfilled by --backfill seconds (SIM_BACKFILL:
the session's first hours played at start-up, so the intraday series are full and the market
message weighs hundreds of kilobytes) and still moving at SIM_RATE. When the message has grown
past --min-bytes, it runs the load generator once per mode and client count against the same
server: plain, deflate, delta (?delta=fossil) and delta with deflate. Per row: bytes on the wire
per client per tick, server CPU per delivered message, delivered/missed, latency; and from
/metrics the server's time to make each tick's delta. Rows go to
bench/results/delta-<UTC timestamp>.json and a Markdown section replaces what is between
<!-- delta:begin --> and <!-- delta:end --> in BENCHMARKS.md.

Run from the repo root, after `cargo build --release --bin marketcast --bin marketcast-loadgen`:
    ulimit -n 20000
    python3 bench/delta.py [--clients 1000,10000] [--duration 20] [--backfill 14400]
Every run is bounded: the window (--duration), start-up and growth bounds, and each load
generator's own deadline.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402

REPO = compare.REPO
MODES = [("plain", False, False), ("deflate", True, False), ("delta", False, True),
         ("delta + deflate", True, True)]


get = compare.http_text


def delta_timing(port: int) -> tuple[float, int]:
    """marketcast_delta_seconds of the market channel: (sum, count)."""
    total, count = 0.0, 0
    for line in get(port, "/metrics").splitlines():
        if line.startswith("marketcast_delta_seconds_sum") and 'channel="market"' in line:
            total = float(line.rsplit(" ", 1)[1])
        elif line.startswith("marketcast_delta_seconds_count") and 'channel="market"' in line:
            count = int(float(line.rsplit(" ", 1)[1]))
    return total, count


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", default="1000,10000")
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--backfill", type=float, default=3600)
    ap.add_argument("--min-bytes", type=int, default=450_000)
    ap.add_argument("--marketcast", default=str(compare.cargo_target_dir() / "release" / "marketcast"))
    ap.add_argument("--loadgen", default=str(compare.cargo_target_dir() / "release" / "marketcast-loadgen"))
    ap.add_argument("--quiet-wait", type=float, default=120)
    ap.add_argument("--markdown", default=str(REPO / "BENCHMARKS.md"))
    ap.add_argument("--no-markdown", action="store_true")
    args = ap.parse_args()

    port = compare.free_port()
    env = dict(os.environ)
    env.update(APP_PORT=str(port), FEED="simulator", SIM_BACKFILL=str(args.backfill), SIM_RATE="300",
               WS_BROADCAST_INTERVAL="1", LOG_LEVEL="warning", HISTORY="false", CHECKPOINT_INTERVAL="0",
               WS_MAX_CONNECTIONS_PER_IP="0", WS_CONNECT_RATE="0", WS_CONNECT_RATE_TOTAL="0",
               DATA_DIR=f"/tmp/marketcast-delta-bench-{port}")
    server = compare.Server("marketcast", port, [args.marketcast, "serve"], env)
    rows = []
    try:
        assert server.wait_ready(120), server.tail()
        deadline = time.monotonic() + 300
        size = 0
        while size < args.min_bytes:
            assert time.monotonic() < deadline, f"the message stayed at {size} bytes"
            time.sleep(1)
            # The market channel builds messages only for clients: a short-lived one asks.
            snap = get(port, "/api/market/snapshot")
            size = len(snap)
        # The backfill is played in slices: wait until the message stops growing fast.
        while True:
            time.sleep(2)
            again = len(get(port, "/api/market/snapshot"))
            if again < size * 1.02:
                size = again
                break
            size = again
            assert time.monotonic() < deadline, "the backfill never finished"
        compare.log(f"late-session message: {size:,} bytes")
        for clients in [int(c) for c in args.clients.split(",")]:
            for name, deflate, delta in MODES:
                compare.wait_quiet(args.quiet_wait)
                url = f"ws://127.0.0.1:{port}/ws/market" + ("?delta=fossil" if delta else "")
                cmd = [args.loadgen, "--url", url, "--clients", str(clients),
                       "--processes", str(max(1, -(-clients // 5000))), "--ramp", "2000",
                       "--warmup", "3", "--duration", str(args.duration),
                       "--server-pid", str(server.proc.pid)]
                if deflate:
                    cmd.append("--deflate")
                compare.log(f"{name}, {clients} clients")
                before = delta_timing(port)
                out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO,
                                     timeout=args.duration + 180)
                after = delta_timing(port)
                lines = out.stdout.strip().splitlines()
                result = json.loads(lines[-1]) if lines else {"error": out.stderr[-500:]}
                made = after[1] - before[1]
                size_now = len(get(port, "/api/market/snapshot"))
                rows.append({"mode": name, "clients": clients, "message_bytes": size_now, "loadgen": result,
                             "delta_ms_mean": round((after[0] - before[0]) / made * 1000, 3) if made else None,
                             "delta_ticks": made})
    finally:
        server.stop()

    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H%M%SZ")
    info = compare.machine_info()
    results = REPO / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"delta-{when}.json").write_text(json.dumps({"machine": info, "rows": rows}, indent=1))
    out = [
           f"Measured {when} on {info.get('nproc')} x {info.get('model_name')}, commit {info.get('commit')}: "
           f"`python3 bench/delta.py {' '.join(sys.argv[1:])}`. Simulator backfilled {args.backfill:.0f} s, "
           f"1 tick a second, still moving: the market message grew from {size:,} to "
           f"{rows[-1]['message_bytes']:,} bytes over the runs.",
           "",
           "| clients | mode | delivered | missed | bytes per client per tick | vs deflate | vs plain | server CPU us/msg | latency p50 / p99 ms | delta made, ms/tick |",
           "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for clients in sorted({r["clients"] for r in rows}):
        group = [r for r in rows if r["clients"] == clients]
        base = {r["mode"]: r["loadgen"].get("bytes_per_message") for r in group}
        for r in group:
            lg = r["loadgen"]
            b = lg.get("bytes_per_message")
            def ratio(other, b=b, base=base):
                if not b or not base.get(other):
                    return "-"
                if b >= base[other]:
                    return f"{b / base[other]:.1f}x"
                return f"1/{base[other] / b:,.0f}"

            lat = lg.get("latency_ms", {})
            out.append(f"| {clients:,} | {r['mode']} | {lg.get('delivered')} | {lg.get('missed')} | "
                       f"{b:,.0f} | {ratio('deflate')} | {ratio('plain')} | "
                       f"{lg.get('server', {}).get('cpu_total_us_per_msg')} | {lat.get('p50')} / {lat.get('p99')} | "
                       f"{r['delta_ms_mean'] if r['delta_ms_mean'] is not None else '-'} |")
    section = "\n".join(out)
    print(section)
    if not args.no_markdown:
        compare.write_markdown(section, Path(args.markdown), "<!-- delta:begin -->", "<!-- delta:end -->")
    return 0


if __name__ == "__main__":
    sys.exit(main())
