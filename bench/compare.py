#!/usr/bin/env python3
"""compare.py - the marketcast fan-out benchmark: marketcast against its peers, end to end.

For every server x snapshot size x client count it starts the server fresh on a free loopback
port (broadcast interval 1 s), waits until it is ready, runs the load generator
(marketcast-loadgen, bench/loadgen.rs) with --server-pid, stops the server (SIGTERM, SIGKILL
after 5 s) and records one row. A server that fails a step (build, start, run) gets a row that
says so; the script goes on. All rows go to bench/results/<UTC timestamp>.json, and a Markdown
section (one table per size, the machine, the exact command) replaces whatever is between
<!-- fanout:begin --> and <!-- fanout:end --> in BENCHMARKS.md (created when missing).

Servers: marketcast (target/release/marketcast, built here), seed (bench/peers/seed_fastapi.py,
FastAPI + uvicorn), node (bench/peers/node_ws.js, ws), floor (bench/peers/floor.c, one epoll
loop, one writev per client: the least a server can do).

Run from the repo root (Python 3.11, stdlib only):
    ulimit -n 20000        # the load generator and the servers need one descriptor per client
    python3 bench/compare.py --quick                      # smoke run: small, 1000 clients, 10 s
    python3 bench/compare.py [--sizes small,large] [--clients 1000,5000,10000,19000]
                             [--servers marketcast,seed,node,floor] [--duration 60] [--deflate-run]
Other options: --loadgen PATH (a load generator built elsewhere, needed until the crate has the
marketcast-loadgen bin), --marketcast PATH (a prebuilt server; skips its cargo build), --ramp
(2000/s), --warmup (3 s), --per-process (5000), --rss-cap-gb (12), --quiet-wait (300 s),
--noisy-retries (1), --markdown FILE, --results-dir DIR, --no-markdown.
Builds: cargo build --release --bin marketcast --bin marketcast-loadgen (only what is needed),
npm ci in bench/peers when node_modules is missing, pip install -r bench/peers/requirements.txt
when fastapi is missing, bench/peers/build.sh for the floor.

Why some choices:
- Load generator processes = ceil(clients / 5000) (--per-process), so each stays far below the
  20,000 open-file limit and the workers spread over both cores.
- The load generator shares the 2 cores with the server. Before each run the script waits (up
  to --quiet-wait s) until the machine has been idle for 3 s; each row records the CPU that other
  processes used during the window, and a run where that passed 10% of one core (a concurrent
  build, say) is run again (--noisy-retries) and, if still disturbed, marked [!] in the tables.
- marketcast logs "listening on http://..." at info level, which LOG_LEVEL=warning hides, so
  besides the ready line its GET /health answering 200 counts as ready.
- A server whose RSS passes --rss-cap-gb is killed (a server that buffers without bound at
  19,000 clients x 480 KB could otherwise take the machine down); its row says so.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PEERS = REPO / "bench" / "peers"
FIXTURES = REPO / "fixtures"
RESULTS = REPO / "bench" / "results"
BENCHMARKS_MD = REPO / "BENCHMARKS.md"
BEGIN, END = "<!-- fanout:begin -->", "<!-- fanout:end -->"
ALL_SERVERS = ["marketcast", "seed", "node", "floor"]
SIZE_LABEL = {"small": "small snapshot (12 KB)", "large": "large snapshot (480 KB)"}
READY_TIMEOUT_S = 60
# A run is "disturbed" when other processes used more than this share of one core during its
# window: the server and the load generator did not have the 2 cores to themselves.
NOISY_SHARE = 0.10
STOP_GRACE_S = 5


def log(msg: str) -> None:
    print(f"[compare {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], cwd: Path | None = None, timeout: float = 1800) -> tuple[bool, str]:
    """Runs a build step; returns (ok, tail of its output)."""
    log("$ " + shlex.join(cmd) + (f"   (in {cwd})" if cwd else ""))
    try:
        p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    tail = "\n".join(p.stdout.strip().splitlines()[-15:])
    if p.returncode != 0:
        log(f"failed (exit {p.returncode}):\n{tail}")
    return p.returncode == 0, tail


# ---------------------------------------------------------------------------------------------
# Preparation: builds and installs, once per server
# ---------------------------------------------------------------------------------------------

def cargo_target_dir() -> Path:
    try:
        out = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             timeout=120, check=True).stdout
        return Path(json.loads(out)["target_directory"])
    except (OSError, subprocess.SubprocessError, ValueError, KeyError):
        return REPO / "target"


def crate_has_loadgen_bin() -> bool:
    text = (REPO / "Cargo.toml").read_text()
    return re.search(r'name\s*=\s*"marketcast-loadgen"', text) is not None


def prepare(args: argparse.Namespace, servers: list[str]) -> tuple[str | None, dict[str, str | None]]:
    """Builds what the runs need. Returns (loadgen path or None, {server: failure or None})."""
    failures: dict[str, str | None] = {s: None for s in servers}
    loadgen: str | None = args.loadgen
    cargo_bins: list[str] = []
    if "marketcast" in servers and not args.marketcast:
        cargo_bins.append("marketcast")
    if loadgen is None:
        if crate_has_loadgen_bin():
            cargo_bins.append("marketcast-loadgen")
        else:
            log("the crate has no marketcast-loadgen bin yet: pass --loadgen PATH "
                "(bench/loadgen.rs built in a scratch crate)")
            return None, failures
    if cargo_bins:
        cmd = ["cargo", "build", "--release"] + [a for b in cargo_bins for a in ("--bin", b)]
        ok, tail = run(cmd, cwd=REPO)
        target = cargo_target_dir() / "release"
        if not ok:
            if "marketcast" in cargo_bins:
                last = tail.splitlines()[-1] if tail else ""
                failures["marketcast"] = f"cargo build failed: {last}"
            if "marketcast-loadgen" in cargo_bins:
                return None, failures
        if "marketcast-loadgen" in cargo_bins:
            loadgen = str(target / "marketcast-loadgen")
        if "marketcast" in cargo_bins and failures["marketcast"] is None:
            args.marketcast = str(target / "marketcast")
    if loadgen is None or not os.access(loadgen, os.X_OK):
        log(f"load generator not found or not executable: {loadgen}")
        return None, failures
    if "seed" in servers:
        probe = [sys.executable, "-c", "import fastapi, uvicorn, pydantic"]
        if subprocess.run(probe, stderr=subprocess.DEVNULL).returncode != 0:
            ok, tail = run([sys.executable, "-m", "pip", "install", "-r", str(PEERS / "requirements.txt")])
            if not ok or subprocess.run(probe, stderr=subprocess.DEVNULL).returncode != 0:
                failures["seed"] = "pip install -r bench/peers/requirements.txt failed"
    if "node" in servers:
        if not (PEERS / "node_modules" / "ws").is_dir():
            ok, tail = run(["npm", "ci"], cwd=PEERS)
            if not ok:
                failures["node"] = "npm ci failed"
    if "floor" in servers:
        ok, tail = run(["sh", str(PEERS / "build.sh")])
        if not ok:
            failures["floor"] = "bench/peers/build.sh failed"
    return loadgen, failures


# ---------------------------------------------------------------------------------------------
# One server process
# ---------------------------------------------------------------------------------------------

def http_text(port: int, path: str, timeout: float = 10) -> str:
    """GET http://127.0.0.1:PORT/PATH, as text."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return r.read().decode()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(name: str, port: int, snapshot: Path, args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    if name == "marketcast":
        # The load generator's thousands of clients share one address and connect at --ramp a
        # second: the per-address and connection-rate limits are off, as the peers have none.
        env.update(APP_PORT=str(port), FEED="static", SNAPSHOT_FILE=str(snapshot),
                   WS_BROADCAST_INTERVAL="1", LOG_LEVEL="warning",
                   WS_MAX_CONNECTIONS_PER_IP="0", WS_CONNECT_RATE="0", WS_CONNECT_RATE_TOTAL="0")
        return [args.marketcast, "serve"], env
    common = ["--port", str(port), "--snapshot", str(snapshot), "--interval", "1"]
    if name == "seed":
        return [sys.executable, str(PEERS / "seed_fastapi.py")] + common, env
    if name == "node":
        return ["node", str(PEERS / "node_ws.js")] + common, env
    if name == "floor":
        return [str(PEERS / "floor")] + common, env
    raise ValueError(name)


class Server:
    """A server under test: started in its own process group, output kept for the row."""

    def __init__(self, name: str, port: int, cmd: list[str], env: dict[str, str]):
        self.name, self.port, self.cmd = name, port, cmd
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     errors="replace", start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            if len(self.lines) < 2000:
                self.lines.append(line)
            if f"READY {self.port}" in line or f"listening on http://127.0.0.1:{self.port}" in line:
                self.ready.set()

    def _health_ok(self) -> bool:
        # marketcast logs its "listening on" line at info level, which LOG_LEVEL=warning hides;
        # its /health answering is the same fact.
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready.wait(0.2):
                return True
            if self.proc.poll() is not None:
                return False
            if self.name == "marketcast" and self._health_ok():
                return True
        return False

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after STOP_GRACE_S; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                log(f"{self.name} did not stop within {STOP_GRACE_S} s of SIGTERM: SIGKILL")
                self.proc.kill()
                self.proc.wait(10)
        # Anything it forked (it runs in its own session) goes too.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.reader.join(2)
        return self.proc.returncode

    def tail(self, n: int = 8) -> list[str]:
        return self.lines[-n:]


def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class RssWatchdog(threading.Thread):
    """Kills the server when its RSS passes the cap; remembers the peak."""

    def __init__(self, server: Server, cap_kb: int):
        super().__init__(daemon=True)
        self.server, self.cap_kb = server, cap_kb
        self.peak_kb = 0
        self.tripped = False
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.5):
            r = rss_kb(self.server.proc.pid)
            if r is None:
                return
            self.peak_kb = max(self.peak_kb, r)
            if r > self.cap_kb:
                self.tripped = True
                log(f"{self.server.name}: RSS {r // 1024} MiB over the cap: SIGKILL")
                self.server.proc.kill()
                return


# ---------------------------------------------------------------------------------------------
# Machine
# ---------------------------------------------------------------------------------------------

def machine_busy_fraction(interval: float = 1.0) -> float:
    def sample() -> tuple[int, int]:
        f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
        idle = f[3] + f[4]
        return sum(f) - idle, sum(f)
    b0, t0 = sample()
    time.sleep(interval)
    b1, t1 = sample()
    return (b1 - b0) / max(1, t1 - t0)


def wait_quiet(max_wait: float, threshold: float = 0.15, quiet_s: int = 3) -> tuple[float, float]:
    """Waits until the machine has been idle (busy < threshold of all cores) for quiet_s
    consecutive seconds, at most max_wait seconds. Returns (seconds waited, last busy share)."""
    t0 = time.monotonic()
    quiet, busy, announced = 0, 0.0, False
    while quiet < quiet_s:
        busy = machine_busy_fraction()
        quiet = quiet + 1 if busy <= threshold else 0
        if busy > threshold and not announced:
            log(f"machine busy ({busy:.0%} of all cores) before the run: waiting up to {max_wait:.0f} s")
            announced = True
        if time.monotonic() - t0 >= max_wait:
            break
    return time.monotonic() - t0, busy


def machine_info() -> dict[str, object]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass

    def version(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  timeout=20).stdout.strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            return "unavailable"

    commit = version(["git", "-C", str(REPO), "describe", "--always", "--dirty"])
    return {
        "nproc": os.cpu_count(),
        "model_name": model,
        "kernel": platform.release(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "nofile_limit": version(["sh", "-c", "ulimit -n"]),
        "rustc": version(["rustc", "--version"]),
        "node": version(["node", "--version"]),
        "python": platform.python_version(),
        "commit": commit,
    }


# ---------------------------------------------------------------------------------------------
# One run
# ---------------------------------------------------------------------------------------------

def one_run(args: argparse.Namespace, loadgen: str, name: str, size: str, clients: int,
            deflate: bool, duration: float) -> dict[str, object]:
    row: dict[str, object] = {"server": name, "size": size, "clients": clients, "deflate": deflate,
                              "duration_s": duration, "status": "ok",
                              "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    waited, busy = wait_quiet(args.quiet_wait)
    row["quiet_wait_s"] = round(waited, 1)
    row["busy_before_run"] = round(busy, 3)
    port = free_port()
    snapshot = FIXTURES / f"snapshot-{size}.json"
    cmd, env = server_command(name, port, snapshot, args)
    row["server_cmd"] = shlex.join(cmd)
    try:
        server = Server(name, port, cmd, env)
    except OSError as e:
        row["status"] = f"failed: cannot start ({e})"
        return row
    watchdog: RssWatchdog | None = None
    try:
        if not server.wait_ready():
            code = server.proc.poll()
            row["status"] = (f"failed: not ready within {READY_TIMEOUT_S} s" if code is None
                             else f"failed: exited with code {code} before it was ready")
            row["server_output"] = server.tail()
            return row
        processes = max(1, math.ceil(clients / args.per_process))
        lg = [loadgen, "--url", f"ws://127.0.0.1:{port}/ws/market", "--clients", str(clients),
              "--processes", str(processes), "--ramp", str(args.ramp), "--warmup", str(args.warmup),
              "--duration", str(duration), "--server-pid", str(server.proc.pid)]
        if deflate:
            lg.append("--deflate")
        row["loadgen_cmd"] = shlex.join(lg)
        log(f"run: {name} {size} {clients} clients{' deflate' if deflate else ''} "
            f"({processes} loadgen processes, port {port})")
        watchdog = RssWatchdog(server, int(args.rss_cap_gb * 1024 * 1024))
        watchdog.start()
        limit = clients / args.ramp * 1.5 + 20 + args.warmup + duration + 60
        try:
            p = subprocess.run(lg, stdout=subprocess.PIPE, stderr=None, text=True, timeout=limit)
        except subprocess.TimeoutExpired:
            row["status"] = f"failed: load generator still running after {limit:.0f} s"
            return row
        result = None
        for line in reversed(p.stdout.strip().splitlines()):
            try:
                result = json.loads(line)
                break
            except ValueError:
                continue
        if result is None:
            row["status"] = f"failed: load generator exit {p.returncode} without a result"
        else:
            row["result"] = result
            if result.get("aborted"):
                row["status"] = f"failed: {result['aborted']}"
        if server.proc.poll() is not None:
            row["status"] = f"failed: server exited ({server.proc.returncode}) during the run"
        if watchdog.tripped:
            row["status"] = f"failed: server RSS over {args.rss_cap_gb} GiB, killed"
        row["server_rss_peak_kb"] = watchdog.peak_kb
        return row
    finally:
        if watchdog is not None:
            watchdog.done.set()
        code = server.stop()
        row["server_exit"] = code
        if row["status"] != "ok":
            row["server_output"] = server.tail()
            log(f"{name} {size} {clients}: {row['status']}")


# ---------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------

def fmt(v: object, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def is_disturbed(row: dict) -> bool:
    r = row.get("result") or {}
    other, window = r.get("other_cpu_s"), r.get("duration_s") or 0
    return other is not None and window > 0 and other > NOISY_SHARE * window


def cpu_per_msg(row: dict) -> float | None:
    r = row.get("result") or {}
    return (r.get("server") or {}).get("cpu_total_us_per_msg") if row.get("status") == "ok" else None


def table(rows: list[dict], all_rows: list[dict]) -> list[str]:
    head = ("| server | clients | delivered / expected | missed | latency p50 / p99 / max ms "
            "| spread p99 ms | server CPU us/msg (user+sys) | vs floor | RSS/client KB | bytes/msg | other CPU s |")
    out = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        r = row.get("result") or {}
        srv = r.get("server") or {}
        label = row["server"] + (" (deflate)" if row["deflate"] else "") + (" [!]" if is_disturbed(row) else "")
        if row["status"] != "ok" and not r:
            out.append(f"| {label} | {fmt(row['clients'])} | {row['status']} |  |  |  |  |  |  |  |  |")
            continue
        lat = r.get("latency_ms") or {}
        floor = next((x for x in all_rows if x["server"] == "floor" and x["size"] == row["size"]
                      and x["clients"] == row["clients"] and not x["deflate"]), None)
        mine, base = cpu_per_msg(row), (cpu_per_msg(floor) if floor else None)
        ratio = f"{mine / base:.2f}x" if mine is not None and base else "-"
        cpu = "-"
        if mine is not None:
            cpu = f"{mine:.1f} ({srv.get('cpu_user_us_per_msg', 0):.1f}+{srv.get('cpu_sys_us_per_msg', 0):.1f})"
        delivered = f"{fmt(r.get('delivered'))} / {fmt(r.get('expected'))}"
        if r.get("connected") != row["clients"]:
            delivered += f" ({fmt(r.get('connected'))} connected)"
        if row["status"] != "ok":
            delivered += f" - {row['status']}"
        out.append(
            f"| {label} | {fmt(row['clients'])} | {delivered} | {fmt(r.get('missed'))} "
            f"| {fmt(lat.get('p50'))} / {fmt(lat.get('p99'))} / {fmt(lat.get('max'))} "
            f"| {fmt((r.get('spread_ms') or {}).get('p99'))} | {cpu} | {ratio} "
            f"| {fmt(srv.get('rss_per_conn_kb'))} | {fmt(r.get('bytes_per_message'), 0)} "
            f"| {fmt(r.get('other_cpu_s'), 2)} |")
    return out


def markdown(rows: list[dict], meta: dict) -> str:
    m = meta["machine"]
    lines = [
        "## WebSocket fan-out: marketcast vs peers",
        "",
        f"Generated {meta['finished_at']} by `{meta['command']}`; raw rows in `{meta['results_file']}`.",
        "",
        f"Machine: {m['nproc']} x {m['model_name']}, {m['memory_gib']} GiB, Linux {m['kernel']}; "
        f"{m['rustc']}, node {m['node']}, Python {m['python']}; commit {m['commit']}.",
        "",
        f"Method: each server is started fresh on loopback with the fixture and a 1 s interval; "
        f"the load generator (same machine, same 2 cores) connects the clients at {meta['ramp']:g}/s "
        f"from ceil(N/{meta['per_process']}) processes, waits {meta['warmup']:g} s, then measures a "
        f"{meta['duration']:g} s window (messages stamped inside it). Latency = receive time - ts "
        "(ts has 1 ms resolution); spread = last minus first receive of the same seq over all "
        "clients; server CPU = utime+stime over the window / delivered messages; vs floor = that "
        "CPU over the floor's at the same size and N; RSS/client = (RSS after ramp - RSS before) / "
        "connected; bytes/msg = frame header + payload; other CPU = CPU used by other processes "
        f"in the window; [!] marks a run where that passed {NOISY_SHARE:.0%} of one core "
        "(the cores were shared: treat its figures with care).",
        "",
    ]
    for size in meta["sizes"]:
        sel = [r for r in rows if r["size"] == size and not r["deflate"]]
        if not sel:
            continue
        lines += [f"### {SIZE_LABEL.get(size, size)}", ""] + table(sel, rows) + [""]
    dfl = [r for r in rows if r["deflate"]]
    if dfl:
        pairs = []
        for r in dfl:
            plain = next((x for x in rows if x["server"] == r["server"] and x["size"] == r["size"]
                          and x["clients"] == r["clients"] and not x["deflate"]), None)
            if plain is not None:
                pairs.append(plain)
            pairs.append(r)
        lines += ["### marketcast permessage-deflate (large snapshot): plain vs deflate", ""]
        lines += table(pairs, rows) + [""]
    return "\n".join(lines)


def write_markdown(section: str, path: Path, begin: str = BEGIN, end: str = END) -> None:
    """Replaces only what lies between the markers (appends them when missing)."""
    BEGIN_, END_ = begin, end
    block = f"{BEGIN_}\n{section}\n{END_}"
    if path.exists():
        text = path.read_text()
        b, e = text.find(BEGIN_), text.find(END_)
        if b != -1 and e > b:
            text = text[:b] + block + text[e + len(END_):]
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
    else:
        text = "# Benchmarks\n\n" + block + "\n"
    path.write_text(text)


# ---------------------------------------------------------------------------------------------

def csv_list(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="small,large")
    ap.add_argument("--clients", default="1000,5000,10000,19000")
    ap.add_argument("--servers", default=",".join(ALL_SERVERS))
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--deflate-run", action="store_true",
                    help="add marketcast runs whose clients negotiate permessage-deflate (large snapshot)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: --sizes small --clients 1000 --duration 10, all four servers")
    ap.add_argument("--loadgen", help="path of a built load generator (default: build the crate's marketcast-loadgen)")
    ap.add_argument("--marketcast", help="path of a prebuilt marketcast (default: cargo build --release)")
    ap.add_argument("--ramp", type=float, default=2000, help="connections per second (default 2000)")
    ap.add_argument("--warmup", type=float, default=3)
    ap.add_argument("--per-process", type=int, default=5000, help="clients per load generator process")
    ap.add_argument("--rss-cap-gb", type=float, default=12, help="kill a server whose RSS passes this")
    ap.add_argument("--quiet-wait", type=float, default=300,
                    help="wait at most this long for an idle machine before each run (default 300 s)")
    ap.add_argument("--noisy-retries", type=int, default=1,
                    help="re-run a run disturbed by other processes (see NOISY_SHARE) this many times")
    ap.add_argument("--markdown", default=str(BENCHMARKS_MD), help="file that gets the section (default BENCHMARKS.md)")
    ap.add_argument("--results-dir", default=str(RESULTS), help="where the JSON rows go (default bench/results)")
    ap.add_argument("--no-markdown", action="store_true", help="do not write the Markdown file")
    args = ap.parse_args()
    command = shlex.join(["python3", "bench/compare.py"] + sys.argv[1:])
    if args.quick:
        args.sizes, args.clients, args.duration, args.servers = "small", "1000", 10, ",".join(ALL_SERVERS)
    sizes = csv_list(args.sizes)
    servers = csv_list(args.servers)
    try:
        client_counts = [int(x) for x in csv_list(args.clients)]
    except ValueError:
        ap.error("--clients takes comma-separated integers")
    bad = [s for s in servers if s not in ALL_SERVERS] + [s for s in sizes if s not in SIZE_LABEL]
    if bad or not sizes or not servers or not client_counts or args.duration <= 0:
        ap.error(f"unknown or empty --servers/--sizes/--clients/--duration: {bad}")
    if args.loadgen:
        args.loadgen = str(Path(args.loadgen).resolve())
    if args.marketcast:
        args.marketcast = str(Path(args.marketcast).resolve())
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it
    except (ImportError, ValueError, OSError):
        pass

    loadgen, failures = prepare(args, servers + (["marketcast"] if args.deflate_run and "marketcast" not in servers else []))
    if loadgen is None:
        return 2
    meta = {"command": command, "machine": machine_info(), "sizes": sizes, "ramp": args.ramp,
            "warmup": args.warmup, "duration": args.duration, "per_process": args.per_process,
            "loadgen": loadgen, "marketcast": args.marketcast}
    plan: list[tuple[str, str, int, bool]] = [(s, z, n, False) for z in sizes for n in client_counts for s in servers]
    if args.deflate_run:
        plan += [("marketcast", "large", n, d) for n in client_counts for d in (False, True)
                 if d or not ("large" in sizes and "marketcast" in servers)]
    rows: list[dict] = []
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    results_dir = Path(args.results_dir).resolve()
    results_dir.mkdir(parents=True, exist_ok=True)
    out_file = results_dir / f"{stamp}.json"
    meta["results_file"] = str(out_file.relative_to(REPO)) if out_file.is_relative_to(REPO) else str(out_file)
    log(f"{len(plan)} runs; results -> {meta['results_file']}")
    try:
        for i, (name, size, n, deflate) in enumerate(plan, 1):
            log(f"[{i}/{len(plan)}] {name} / {size} / {n} clients{' / deflate' if deflate else ''}")
            if failures.get(name):
                rows.append({"server": name, "size": size, "clients": n, "deflate": deflate,
                             "status": f"failed: {failures[name]}"})
                continue
            for attempt in range(1 + max(0, args.noisy_retries)):
                try:
                    row = one_run(args, loadgen, name, size, n, deflate, args.duration)
                except Exception as e:  # a broken run is a row, never the end of the comparison
                    row = {"server": name, "size": size, "clients": n, "deflate": deflate,
                           "status": f"failed: {type(e).__name__}: {e}"}
                row["attempt"] = attempt + 1
                if not is_disturbed(row) or attempt == args.noisy_retries:
                    break
                log(f"run disturbed (other processes used {row['result']['other_cpu_s']} s of CPU "
                    "in the window): running it again")
            rows.append(row)
            meta["finished_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
            out_file.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    except KeyboardInterrupt:
        log("interrupted: keeping the rows so far")
    meta["finished_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    out_file.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    section = markdown(rows, meta)
    print(section)
    if not args.no_markdown:
        md = Path(args.markdown).resolve()
        write_markdown(section, md)
        log(f"wrote {md} and {meta['results_file']}")
    return 0 if all(r.get("status") == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
