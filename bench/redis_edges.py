#!/usr/bin/env python3
"""redis_edges.py - scale-out through Redis, measured: one producer, two edges, one Redis.

For each case (snapshot size x clients per edge x plain/deflate) it starts a redis-server on a
free loopback port, a producer (ROLE=producer, FEED=static with the fixture snapshot, 1 tick a
second) and two edges (ROLE=edge), waits until both edges relay, then runs one load generator
(marketcast-loadgen) against each edge at the same time, each with --server-pid of its edge.
Per edge it records what the load generator measured (clients, delivered, missed, CPU per
delivered message, latency from the producer's `ts` to the client), and from the edge's
/metrics the broker hop (producer `ts` to the edge handing the tick to its fan-out). For the
producer and for Redis it records their CPU over the window, and for Redis the bytes it took in
and sent out (INFO stats). A case marked `standalone` is the baseline: the same two nodes and
load generators, but standalone nodes serving the fixture themselves (no producer, no Redis), so
the difference is what the broker costs a node. Rows go to bench/results/redis-<UTC timestamp>.json and a Markdown
section replaces what is between <!-- redis:begin --> and <!-- redis:end --> in BENCHMARKS.md.

Run from the repo root, after `cargo build --release --bin marketcast --bin marketcast-loadgen`:
    ulimit -n 20000
    python3 bench/redis_edges.py [--cases small:5000,small:5000:standalone,large:2000,...]
                                 [--duration 20] [--marketcast PATH] [--loadgen PATH]
Every run is bounded: the window (--duration), a 60 s start-up bound, and each load
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
import compare  # noqa: E402  (the fan-out benchmark's helpers: servers, quiet waits, machine)

REPO = compare.REPO
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


get = compare.http_text


def hop_histogram(port: int) -> tuple[list[tuple[float, int]], float, int]:
    """The edge's redis_hop_seconds: (buckets, sum, count)."""
    buckets, total, count = [], 0.0, 0
    for line in get(port, "/metrics").splitlines():
        if line.startswith("marketcast_redis_hop_seconds_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), int(float(line.rsplit(" ", 1)[1]))))
        elif line.startswith("marketcast_redis_hop_seconds_sum"):
            total = float(line.rsplit(" ", 1)[1])
        elif line.startswith("marketcast_redis_hop_seconds_count"):
            count = int(float(line.rsplit(" ", 1)[1]))
    return buckets, total, count


def hop_stats(before, after) -> dict:
    """Mean and bucket-bound p50/p99 of the hops observed between two scrapes (ms)."""
    (b0, s0, c0), (b1, s1, c1) = before, after
    n = c1 - c0
    if n <= 0:
        return {"ticks": 0}
    counts = [(le, c - dict(b0).get(le, 0)) for le, c in b1]

    def quantile(q: float) -> float:
        for le, c in counts:
            if c >= q * n:
                return le * 1000
        return float("inf")

    return {"ticks": n, "mean_ms": round((s1 - s0) / n * 1000, 2),
            "p50_le_ms": quantile(0.5), "p99_le_ms": quantile(0.99)}


def redis_info(port: int) -> dict[str, int]:
    out = subprocess.run(["redis-cli", "-p", str(port), "info", "stats"], capture_output=True,
                         text=True, timeout=10).stdout
    keep = ("total_net_input_bytes", "total_net_output_bytes", "total_commands_processed")
    return {k: int(v) for k, v in (l.strip().split(":", 1) for l in out.splitlines() if ":" in l) if k in keep}


def start_redis(port: int) -> subprocess.Popen:
    p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    for _ in range(200):
        if subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).returncode == 0:
            return p
        time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def node(args, role: str, redis_port: int, snapshot: Path) -> compare.Server:
    port = compare.free_port()
    env = dict(os.environ)
    env.update(APP_PORT=str(port), ROLE=role, REDIS_URL=f"redis://127.0.0.1:{redis_port}",
               REDIS_CHANNEL_PREFIX="bench", LOG_LEVEL="warning", HISTORY="false",
               WS_MAX_CONNECTIONS_PER_IP="0", WS_CONNECT_RATE="0", WS_CONNECT_RATE_TOTAL="0", WS_BROADCAST_INTERVAL="1",
               DATA_DIR=f"/tmp/marketcast-redis-bench-{port}")
    if role in ("producer", "standalone"):
        env.update(FEED="static", SNAPSHOT_FILE=str(snapshot))
    return compare.Server("marketcast", port, [args.marketcast, "serve"], env)


def one_case(args, size: str, per_node: int, deflate: bool, standalone: bool) -> dict:
    snapshot = REPO / "fixtures" / f"snapshot-{size}.json"
    _, busy = compare.wait_quiet(args.quiet_wait)
    redis_port = compare.free_port()
    redis = None if standalone else start_redis(redis_port)
    producer = None
    nodes: list[compare.Server] = []
    row: dict = {"size": size, "clients_per_node": per_node, "deflate": deflate,
                 "standalone": standalone, "duration_s": args.duration,
                 "busy_before_run": round(busy, 3)}
    try:
        if not standalone:
            producer = node(args, "producer", redis_port, snapshot)
            assert producer.wait_ready(60), producer.tail()
        nodes = [node(args, "standalone" if standalone else "edge", redis_port, snapshot)
                 for _ in range(2)]
        for n in nodes:
            assert n.wait_ready(60), n.tail()
        deadline = time.monotonic() + 60
        while not standalone and not all('"redis":"connected"' in get(n.port, "/health") for n in nodes):
            assert time.monotonic() < deadline, "edges never connected to Redis"
            time.sleep(0.2)
        gens = []
        for n in nodes:
            cmd = [args.loadgen, "--url", f"ws://127.0.0.1:{n.port}/ws/market", "--clients", str(per_node),
                   "--processes", str(max(1, -(-per_node // 5000))), "--ramp", "2000",
                   "--warmup", "3", "--duration", str(args.duration), "--server-pid", str(n.proc.pid)]
            if deflate:
                cmd.append("--deflate")
            gens.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                         cwd=REPO, start_new_session=True))
        # The load generators' window starts after ramp and warm-up; the producer, Redis and
        # the hop are read over about the same stretch.
        time.sleep(per_node / 2000 + 3)
        if not standalone:
            hop0 = [hop_histogram(n.port) for n in nodes]
            info0, rcpu0, pcpu0 = redis_info(redis_port), cpu_s(redis.pid), cpu_s(producer.proc.pid)
        t0 = time.monotonic()
        time.sleep(args.duration)
        span = time.monotonic() - t0
        if not standalone:
            info1, rcpu1, pcpu1 = redis_info(redis_port), cpu_s(redis.pid), cpu_s(producer.proc.pid)
            hop1 = [hop_histogram(n.port) for n in nodes]
        row["nodes"] = []
        for i, g in enumerate(gens):
            out, err = g.communicate(timeout=args.duration + 120)
            result = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"error": err[-500:]}
            row["nodes"].append({"loadgen": result,
                                 "hop": {} if standalone else hop_stats(hop0[i], hop1[i])})
        if not standalone:
            row["producer_cpu_pct"] = round((pcpu1 - pcpu0) / span * 100, 1)
            row["redis"] = {
                "cpu_pct": round((rcpu1 - rcpu0) / span * 100, 2),
                "in_bytes_per_s": round((info1["total_net_input_bytes"] - info0["total_net_input_bytes"]) / span),
                "out_bytes_per_s": round((info1["total_net_output_bytes"] - info0["total_net_output_bytes"]) / span),
                "commands_per_s": round((info1["total_commands_processed"] - info0["total_commands_processed"]) / span, 1),
            }
        row["status"] = "ok"
    except Exception as e:  # a failed case gets a row that says so
        row["status"] = f"failed: {e}"
    finally:
        for n in nodes:
            n.stop()
        if producer is not None:
            producer.stop()
        if redis is not None:
            redis.terminate()
            redis.wait(10)
    return row


def markdown(rows: list[dict], meta: dict) -> str:
    frames = lambda r: "deflate" if r["deflate"] else "plain"  # noqa: E731
    out = [
           f"Measured {meta['when']} on {meta['machine']}: `{meta['command']}`. One producer (FEED=static, "
           "1 tick/s), two edges and one redis-server share the 2 cores with the load generators; "
           "the `standalone` rows are the baseline (two standalone nodes, no Redis, same load).",
           "",
           "| snapshot | frames | node | clients | delivered | missed | node CPU us/msg | client latency p50 / p99 ms | broker hop mean ms (p99 <=) | bytes/msg |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r.get("status") != "ok":
            out.append(f"| {r['size']} | {frames(r)} | - | {r['clients_per_node']} | {r.get('status')} | | | | | |")
            continue
        for i, n in enumerate(r["nodes"]):
            lg, hop = n["loadgen"], n["hop"]
            srv, lat = lg.get("server", {}), lg.get("latency_ms", {})
            name = f"standalone {i + 1}" if r["standalone"] else f"edge {i + 1}"
            hop_text = f"{hop.get('mean_ms')} ({hop.get('p99_le_ms')})" if hop else "-"
            out.append(
                f"| {r['size']} | {frames(r)} | {name} | {lg.get('connected')} | {lg.get('delivered')} | "
                f"{lg.get('missed')} | {srv.get('cpu_total_us_per_msg')} | {lat.get('p50')} / {lat.get('p99')} | "
                f"{hop_text} | {lg.get('bytes_per_message')} |")
    out += ["", "| snapshot | frames | clients (both edges) | producer CPU % of a core | Redis CPU % of a core | Redis in B/s | Redis out B/s | Redis commands/s |",
            "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r.get("status") == "ok" and not r["standalone"]:
            rd = r["redis"]
            out.append(f"| {r['size']} | {frames(r)} | {2 * r['clients_per_node']:,} | {r['producer_cpu_pct']} | "
                       f"{rd['cpu_pct']} | {rd['in_bytes_per_s']:,} | {rd['out_bytes_per_s']:,} | {rd['commands_per_s']} |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="small:5000,small:5000:standalone,large:2000,large:2000:standalone,"
                                       "large:5000:deflate,large:5000:deflate:standalone")
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--marketcast", default=str(compare.cargo_target_dir() / "release" / "marketcast"))
    ap.add_argument("--loadgen", default=str(compare.cargo_target_dir() / "release" / "marketcast-loadgen"))
    ap.add_argument("--quiet-wait", type=float, default=120)
    ap.add_argument("--markdown", default=str(REPO / "BENCHMARKS.md"))
    ap.add_argument("--no-markdown", action="store_true")
    args = ap.parse_args()
    rows = []
    for case in args.cases.split(","):
        parts = case.split(":")
        size, per_node = parts[0], int(parts[1])
        deflate, standalone = "deflate" in parts[2:], "standalone" in parts[2:]
        compare.log(f"case {size}, {per_node} clients per node, {'deflate' if deflate else 'plain'}"
                    f"{', standalone baseline' if standalone else ''}")
        row = one_case(args, size, per_node, deflate, standalone)
        compare.log(f"  {row.get('status')}")
        rows.append(row)
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H%M%SZ")
    info = compare.machine_info()
    meta = {"when": when, "machine": f"{info.get('nproc')} x {info.get('model_name')}, Linux {info.get('kernel')}, commit {info.get('commit')}",
            "command": "python3 bench/redis_edges.py " + " ".join(sys.argv[1:])}
    results = REPO / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"redis-{when}.json").write_text(json.dumps({"meta": meta, "machine": info, "rows": rows}, indent=1))
    section = markdown(rows, meta)
    print(section)
    if not args.no_markdown:
        compare.write_markdown(section, Path(args.markdown), "<!-- redis:begin -->", "<!-- redis:end -->")
    return 0 if all(r.get("status") == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
