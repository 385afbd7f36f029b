"""Contract checker for the fan-out benchmark peers (seed_fastapi.py, node_ws.js, floor.c).

Connects K clients to ws://HOST:PORT/ws/market, receives M messages on each, and asserts the
common peer contract: every message is a text frame starting with '{"seq":', parses as JSON with
keys seq, ts, quotes, indices, foreign, derivatives (seq and ts first), seq rises by exactly 1
per message on each client, and all clients got byte-identical text for the same seq.
With --snapshot FILE it also checks that each message, minus seq/ts, parses to exactly the file's
JSON value, and reports whether the text is byte-identical to the file with seq/ts spliced in
front; --exact makes a byte difference a failure (node_ws.js differs: JS drops ".0" on floats).

Clients do not offer permessage-deflate (like the benchmark's load generator) and do not
send pings of their own. Exit status 0 and one summary line on success, 1 and the reason on
failure.

Run (with a peer already listening):
    pip install -r bench/peers/requirements.txt
    python3 bench/peers/check_peer.py --port 8001 [--clients 3] [--messages 3] \
        [--snapshot /work/shared/fixtures/snapshot-small.json [--exact]]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time

import websockets

PREFIX = re.compile(rb'^\{"seq":(\d+),"ts":(\d+),')
REQUIRED_KEYS = ("seq", "ts", "quotes", "indices", "foreign", "derivatives")


class CheckFailed(Exception):
    pass


async def run_client(url: str, messages: int, timeout: float) -> list[str]:
    # close_timeout is short because floor.c, by design, never answers a close frame.
    async with websockets.connect(url, compression=None, max_size=None, ping_interval=None,
                                  open_timeout=timeout, close_timeout=0.5) as ws:
        received = []
        for _ in range(messages):
            msg = await asyncio.wait_for(ws.recv(), timeout)
            if not isinstance(msg, str):
                raise CheckFailed(f"got a binary frame ({len(msg)} bytes), expected text")
            received.append(msg)
        return received


class Snapshot:
    def __init__(self, path: str, exact: bool) -> None:
        with open(path, "rb") as f:
            self.body = f.read().strip()
        self.value = json.loads(self.body)
        self.exact = exact
        self.byte_identical = True  # stays True only if every message matched byte for byte


def check_client(index: int, texts: list[str], snapshot: Snapshot | None) -> dict[int, str]:
    by_seq: dict[int, str] = {}
    prev_seq = None
    for text in texts:
        raw = text.encode()
        if not text.startswith('{"seq":'):
            raise CheckFailed(f"client {index}: message does not start with '{{\"seq\":': {text[:40]!r}")
        m = PREFIX.match(raw)
        if not m:
            raise CheckFailed(f"client {index}: message does not start with '{{\"seq\":N,\"ts\":MS,': {text[:40]!r}")
        try:
            doc = json.loads(text)
        except ValueError as e:
            raise CheckFailed(f"client {index}: not valid JSON: {e}")
        if not isinstance(doc, dict):
            raise CheckFailed(f"client {index}: JSON is not an object")
        missing = [k for k in REQUIRED_KEYS if k not in doc]
        if missing:
            raise CheckFailed(f"client {index}: missing keys {missing}")
        if list(doc)[:2] != ["seq", "ts"]:
            raise CheckFailed(f"client {index}: seq/ts are not the first keys: {list(doc)[:3]}")
        seq, ts = doc["seq"], doc["ts"]
        if not (isinstance(seq, int) and seq >= 1):
            raise CheckFailed(f"client {index}: bad seq {seq!r}")
        now_ms = time.time() * 1000
        if not (isinstance(ts, int) and now_ms - 120_000 < ts <= now_ms + 1000):
            raise CheckFailed(f"client {index}: ts {ts!r} is not epoch ms near now ({now_ms:.0f})")
        if prev_seq is not None and seq != prev_seq + 1:
            raise CheckFailed(f"client {index}: seq went {prev_seq} -> {seq}, expected +1")
        if snapshot is not None:
            rest = {k: v for k, v in doc.items() if k not in ("seq", "ts")}
            if rest != snapshot.value:
                raise CheckFailed(f"client {index}: content minus seq/ts is not the snapshot file's JSON")
            if raw[m.end():] != snapshot.body[1:]:
                snapshot.byte_identical = False
                if snapshot.exact:
                    raise CheckFailed(f"client {index}: body after seq/ts differs from the snapshot "
                                      f"file bytes ({len(raw) - m.end()} vs {len(snapshot.body) - 1})")
        prev_seq = seq
        by_seq[seq] = text
    return by_seq


async def main() -> int:
    parser = argparse.ArgumentParser(description="check a fan-out peer against the common contract")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--path", default="/ws/market")
    parser.add_argument("--clients", "-k", type=int, default=3)
    parser.add_argument("--messages", "-m", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each message")
    parser.add_argument("--snapshot", help="also require the content to equal this file's JSON")
    parser.add_argument("--exact", action="store_true",
                        help="with --snapshot: require the body to equal the file byte for byte")
    args = parser.parse_args()

    url = f"ws://{args.host}:{args.port}{args.path}"
    snapshot = Snapshot(args.snapshot, args.exact) if args.snapshot else None

    try:
        results = await asyncio.gather(*(run_client(url, args.messages, args.timeout)
                                         for _ in range(args.clients)))
        per_client = [check_client(i, texts, snapshot) for i, texts in enumerate(results)]
        shared = 0
        for seq, text in per_client[0].items():
            for i, other in enumerate(per_client[1:], start=1):
                if seq in other:
                    shared += 1
                    if other[seq] != text:
                        raise CheckFailed(f"client {i} got different text from client 0 for seq {seq}")
        if args.clients > 1 and shared == 0:
            raise CheckFailed("no seq was received by more than one client; cannot compare texts")
    except CheckFailed as e:
        print(f"FAIL {url}: {e}")
        return 1
    except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException) as e:
        print(f"FAIL {url}: {type(e).__name__}: {e}")
        return 1

    sizes = sorted({len(t.encode()) for c in per_client for t in c.values()})
    seqs = sorted({s for c in per_client for s in c})
    print(f"OK {url}: {args.clients} clients x {args.messages} messages, seq {seqs[0]}..{seqs[-1]}, "
          f"message bytes {sizes[0]}..{sizes[-1]}, identical across clients"
          + ("" if snapshot is None else ", content == snapshot file"
             + (" (byte-identical)" if snapshot.byte_identical else " (JSON-equal, bytes differ)")))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
