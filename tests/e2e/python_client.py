"""End-to-end client: Python `websockets` against marketcast's /ws/market.

Connects one client that offers permessage-deflate (the library's default) and one that does
not, reads a few messages on each, and checks that the compressed client negotiated the
extension, that its messages decode to valid snapshots with consecutive `seq`, and that for the
same `seq` both clients got the same text. Prints one JSON line with what it saw; exits non-zero
with a message on any failure.

    python3 tests/e2e/python_client.py --url ws://127.0.0.1:8000/ws/market [--messages 4]
    python3 tests/e2e/python_client.py --url wss://localhost:8443/ws/market --cafile ca.pem
"""

import argparse
import asyncio
import json
import ssl
import sys

from websockets.asyncio.client import connect


async def collect(url, compression, count, tls):
    async with connect(
        url, compression=compression, max_size=None, open_timeout=10, ssl=tls
    ) as ws:
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        ssl_object = ws.transport.get_extra_info("ssl_object")
        version = ssl_object.version() if ssl_object else None
        messages = []
        while len(messages) < count:
            text = await asyncio.wait_for(ws.recv(), timeout=10)
            if not isinstance(text, str):
                raise SystemExit(f"expected a text message, got {type(text).__name__}")
            messages.append(text)
        return extensions, messages, version


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--messages", type=int, default=4)
    parser.add_argument("--cafile", help="CA certificate to trust for a wss:// URL")
    args = parser.parse_args()
    tls = ssl.create_default_context(cafile=args.cafile) if args.cafile else None

    (zext, zipped, version), (pext, plain, _) = await asyncio.gather(
        collect(args.url, "deflate", args.messages, tls),
        collect(args.url, None, args.messages + 2, tls),
    )
    if "permessage-deflate" not in zext:
        raise SystemExit(f"deflate was not negotiated: {zext!r}")
    if pext:
        raise SystemExit(f"the plain client got extensions: {pext!r}")
    seqs = []
    for text in zipped:
        snap = json.loads(text)
        for key in ("seq", "ts", "quotes", "indices", "foreign", "derivatives"):
            if key not in snap:
                raise SystemExit(f"message lacks {key}")
        seqs.append(snap["seq"])
    if seqs != list(range(seqs[0], seqs[0] + len(seqs))):
        raise SystemExit(f"seq not consecutive: {seqs}")
    by_seq = {json.loads(t)["seq"]: t for t in plain}
    same = [s for s in seqs if s in by_seq]
    if not same:
        raise SystemExit(f"no common seq between {seqs} and {sorted(by_seq)}")
    for s in same:
        if by_seq[s] != zipped[seqs.index(s)]:
            raise SystemExit(f"seq {s}: compressed and plain clients decoded different text")
    print(json.dumps({
        "client": "python-websockets",
        "tls": version,
        "extensions": zext,
        "seqs": seqs,
        "compared": len(same),
        "bytes": len(zipped[-1]),
    }))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except SystemExit:
        raise
    except Exception as e:  # a clear one-line failure for the Rust test that runs this
        print(f"python client failed: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
