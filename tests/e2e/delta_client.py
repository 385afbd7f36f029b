"""A second implementation of marketcast's delta messages: Python `websockets` and a Fossil
delta applier written here, against the server.

Connects a client that asks for deltas (`?delta=fossil`, with permessage-deflate, the library's
default) and a plain client that does not, rebuilds every delta message into the full message,
and checks that for every `seq` both have the same text, byte for byte. With --stall-seconds the
delta client stops reading for a while after a few messages, so the server drops ticks for it
and must fall back to full messages. Prints one JSON line; exits non-zero on any failure.

    python3 tests/e2e/delta_client.py --url ws://127.0.0.1:8000/ws/market [--messages 40]
                                      [--stall-seconds 2]
"""

import argparse
import asyncio
import json
import re
import socket
import sys

from websockets.asyncio.client import connect

DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~"
VALUE = {c: i for i, c in enumerate(DIGITS.encode())}
MAX_OUTPUT = 64 << 20  # a market message is under 1 MB


def apply(base: bytes, delta: bytes) -> bytes:
    """Applies a Fossil delta; raises ValueError on a bad one."""
    at = 0

    def number():
        nonlocal at
        start, n = at, 0
        while at < len(delta) and delta[at] in VALUE:
            n = n * 64 + VALUE[delta[at]]
            at += 1
        if at == start:
            raise ValueError(f"number expected at {at}")
        return n

    size = number()
    if size > MAX_OUTPUT:
        raise ValueError("result too large")
    if delta[at:at + 1] != b"\n":
        raise ValueError("no size line")
    at += 1
    out = bytearray()
    while True:
        n = number()
        op = delta[at:at + 1]
        at += 1
        if op == b"@":
            offset = number()
            if delta[at:at + 1] != b",":
                raise ValueError("',' expected")
            at += 1
            if offset + n > len(base) or len(out) + n > size:
                raise ValueError("copy out of range")
            out += base[offset:offset + n]
        elif op == b":":
            if at + n > len(delta) or len(out) + n > size:
                raise ValueError("literal out of range")
            out += delta[at:at + n]
            at += n
        elif op == b";":
            if len(out) != size:
                raise ValueError(f"size {len(out)}, said {size}")
            if n != checksum(bytes(out)):
                raise ValueError("bad checksum")
            return bytes(out)
        else:
            raise ValueError(f"unexpected {op!r}")


def checksum(b: bytes) -> int:
    padded = b + b"\0" * (-len(b) % 4)
    return sum(int.from_bytes(padded[i:i + 4], "big") for i in range(0, len(padded), 4)) % 2**32


SEQ = re.compile(rb'^\{"seq":(\d+),')


async def plain_client(url, until_seq, out):
    async with connect(url, compression=None, max_size=None, open_timeout=10) as ws:
        while True:
            text = await asyncio.wait_for(ws.recv(), timeout=20)
            m = SEQ.match(text.encode())
            if m:
                out[int(m.group(1))] = text.encode()
                if int(m.group(1)) >= until_seq[0] > 0:
                    return


def small_window_socket(url):
    """A connected socket with a small receive buffer: when the client pauses, the kernel holds
    only a few ticks, and the server's outbox has to deal with the pause."""
    host, port = url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((host, int(port)))
    return s


async def delta_client(url, count, stall_after, stall_seconds, out, stats, until_seq):
    sep = "&" if "?" in url else "?"
    sock = small_window_socket(url) if stall_seconds else None
    # A small queue in the library too, and no compression, for the same reason.
    async with connect(url + sep + "delta=fossil", max_size=None, open_timeout=10, sock=sock,
                       max_queue=2, compression=None if stall_seconds else "deflate") as ws:
        last_seq, last = None, None
        while stats["messages"] < count:
            msg = await asyncio.wait_for(ws.recv(), timeout=20)
            if isinstance(msg, str):
                data = msg.encode()
                m = SEQ.match(data)
                if not m:
                    continue  # a status message: not a tick, not a base
                seq = int(m.group(1))
                stats["full"] += 1
            else:
                header, _, delta = msg.partition(b"\n")
                h = json.loads(header)
                if h.get("delta") != "fossil":
                    raise SystemExit(f"unknown delta format {h!r}")
                if h["base"] != last_seq:
                    raise SystemExit(f"a delta against {h['base']} after {last_seq}")
                data = apply(last, delta)
                seq = h["seq"]
                if not data.startswith(b'{"seq":%d,' % seq):
                    raise SystemExit(f"rebuilt message {seq} does not start with its seq")
                stats["deltas"] += 1
                stats["delta_bytes"] += len(msg)
                if stats["messages"] > stall_after and stall_seconds:
                    stats["deltas_after_stall"] += 1
            if last_seq is not None and seq > last_seq + 1:
                stats["skipped"] += seq - last_seq - 1
                # What follows a lost tick must be full: the client does not have its base.
                if not isinstance(msg, str):
                    raise SystemExit(f"a delta ({seq}) right after lost ticks")
            last_seq, last = seq, data
            out[seq] = data
            stats["messages"] += 1
            if stall_seconds and stats["messages"] == stall_after:
                await asyncio.sleep(stall_seconds)
        stats["extensions"] = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        until_seq[0] = last_seq


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--messages", type=int, default=40)
    parser.add_argument("--stall-after", type=int, default=5)
    parser.add_argument("--stall-seconds", type=float, default=0)
    args = parser.parse_args()
    plain, rebuilt = {}, {}
    stats = {"messages": 0, "full": 0, "deltas": 0, "delta_bytes": 0, "skipped": 0,
             "deltas_after_stall": 0}
    until_seq = [0]
    plain_task = asyncio.create_task(plain_client(args.url, until_seq, plain))
    await delta_client(args.url, args.messages, args.stall_after, args.stall_seconds,
                       rebuilt, stats, until_seq)
    await asyncio.wait_for(plain_task, timeout=30)
    common = sorted(set(plain) & set(rebuilt))
    if len(common) < args.messages // 2:
        raise SystemExit(f"too few seqs in common: {len(common)} of {len(rebuilt)}")
    for seq in common:
        if plain[seq] != rebuilt[seq]:
            raise SystemExit(f"seq {seq}: the rebuilt message differs from the full one")
    if not args.stall_seconds and "permessage-deflate" not in stats["extensions"]:
        raise SystemExit(f"deflate was not negotiated: {stats['extensions']!r}")
    print(json.dumps({"compared": len(common), **stats}))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except (OSError, asyncio.TimeoutError, ValueError) as e:
        sys.exit(f"delta client failed: {e!r}")
