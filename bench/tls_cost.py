"""What TLS costs the server: CPU per delivered message, `ws://` against `wss://`.

Starts a release marketcast twice on the same fixture snapshot, once plain and once with a
certificate made for the run (openssl), connects the same number of Python `websockets` clients
to each, and reads the server's user+system CPU (from /proc) and messages sent (from /health)
over a measured window. Prints one table row per run and a JSON line with the figures.

    python3 bench/tls_cost.py [--clients 500] [--size small] [--interval 0.2] [--duration 20]

Clients share one event loop per process (several processes), so the load generator is not
what limits the figure at these rates; the server's CPU is the measure, not the clients'.
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def health(base, context):
    with urllib.request.urlopen(f"{base}/health", context=context, timeout=10) as r:
        return json.load(r)


def make_certificate(folder):
    ca_key, ca, key, csr, cert = (folder / n for n in ("ca.key", "ca.pem", "key.pem", "req.csr", "cert.pem"))
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=marketcast bench CA")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", key, "-out", csr, "-subj", "/CN=localhost")
    ext = folder / "ext.cnf"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
        "-out", cert, "-days", "2", "-extfile", ext)
    return ca, cert, key


def client_process(url, cafile, count, seconds, ready, out):
    """Runs `count` clients in one process for `seconds`; reports messages received."""
    from websockets.asyncio.client import connect

    async def one(context):
        got = 0
        async with connect(url, ssl=context, compression=None, max_size=None, open_timeout=30) as ws:
            ready.put(1)
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                try:
                    await asyncio.wait_for(ws.recv(), timeout=max(0.1, end - time.monotonic()))
                    got += 1
                except asyncio.TimeoutError:
                    break
        return got

    async def main():
        context = ssl.create_default_context(cafile=cafile) if cafile else None
        results = await asyncio.gather(*(one(context) for _ in range(count)), return_exceptions=True)
        out.put(sum(r for r in results if isinstance(r, int)))

    asyncio.run(main())


def run(binary, env, tls, args, certs):
    env = dict(os.environ, **env, APP_PORT="0", LOG_LEVEL="warning", NO_COLOR="1",
               FEED="static", SNAPSHOT_FILE=str(ROOT / f"fixtures/snapshot-{args.size}.json"),
               WS_BROADCAST_INTERVAL=str(args.interval), WS_COMPRESSION="false",
               WS_MAX_CONNECTIONS_PER_IP="0", WS_CONNECT_RATE="0", WS_CONNECT_RATE_TOTAL="0",
               LOG_FORMAT="text", DATA_DIR=tempfile.mkdtemp())
    env["LOG_LEVEL"] = "info"
    if tls:
        ca, cert, key = certs
        env.update(TLS_CERT=str(cert), TLS_KEY=str(key))
    server = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        port = None
        for line in server.stdout:
            if "listening on" in line:
                port = line.split("listening on ")[1].split("://")[1].split(":")[1].split(":")[0]
                break
        if port is None:
            raise SystemExit("the server did not start")
        scheme = "https" if tls else "http"
        wscheme = "wss" if tls else "ws"
        context = ssl.create_default_context(cafile=str(certs[0])) if tls else None
        base = f"{scheme}://localhost:{port}"
        url = f"{wscheme}://localhost:{port}/ws/market"
        procs, ready, out = [], multiprocessing.Queue(), multiprocessing.Queue()
        per = max(1, args.clients // args.processes)
        hold = args.duration + 15
        for _ in range(args.processes):
            p = multiprocessing.Process(target=client_process,
                                        args=(url, str(certs[0]) if tls else None, per, hold, ready, out))
            p.start()
            procs.append(p)
        for _ in range(per * args.processes):
            ready.get(timeout=60)
        time.sleep(3)  # warm-up
        cpu0, sent0, t0 = cpu_seconds(server.pid), health(base, context)["broadcast"]["messages_sent"], time.monotonic()
        time.sleep(args.duration)
        cpu1, h, t1 = cpu_seconds(server.pid), health(base, context), time.monotonic()
        sent = h["broadcast"]["messages_sent"] - sent0
        dropped = h["broadcast"]["messages_dropped"]
        for p in procs:
            p.join(timeout=hold + 30)
        return {"tls": tls, "clients": per * args.processes, "window_s": round(t1 - t0, 1),
                "messages": sent, "dropped": dropped,
                "cpu_us_per_msg": round((cpu1 - cpu0) * 1e6 / max(sent, 1), 2)}
    finally:
        server.terminate()
        server.wait(timeout=10)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=500)
    ap.add_argument("--processes", type=int, default=4)
    ap.add_argument("--size", default="small", choices=["small", "large"])
    ap.add_argument("--interval", type=float, default=0.2)
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--marketcast", default=str(ROOT / "target/release/marketcast"))
    args = ap.parse_args()
    if not Path(args.marketcast).exists():
        subprocess.run(["cargo", "build", "--release", "--bin", "marketcast"], cwd=ROOT, check=True)
    with tempfile.TemporaryDirectory() as d:
        certs = make_certificate(Path(d))
        rows = [run(args.marketcast, {}, False, args, certs), run(args.marketcast, {}, True, args, certs)]
    print("| transport | clients | messages | dropped | server CPU us/msg |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {'wss' if r['tls'] else 'ws'} | {r['clients']} | {r['messages']} | {r['dropped']} | {r['cpu_us_per_msg']} |")
    print(json.dumps({"size": args.size, "interval": args.interval, "rows": rows}))


if __name__ == "__main__":
    sys.exit(main())
