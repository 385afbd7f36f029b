"""End-to-end client: headless Chromium's own WebSocket against marketcast's /ws/market.

Starts Debian's Chromium headless with a DevTools port on a page of the server, and evaluates a script
in it that opens `new WebSocket(url)`, records the negotiated
`extensions` (Chromium always offers permessage-deflate) and the first few messages, and hands
back what it saw. Checks the extension was negotiated and the messages are snapshots with
consecutive `seq`. Prints one JSON line; exits non-zero on any failure.

    python3 tests/e2e/chromium_client.py --http http://127.0.0.1:8000 [--messages 3]
"""

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from websockets.asyncio.client import connect

# Plays the original frontend's hook: JSON-parse every text frame, ignore type "status", take
# anything else as a complete snapshot. With a hold time it stays connected that long (across
# server heartbeats, which the browser answers by itself) and fails if the socket closes.
SCRIPT = """
new Promise((resolve, reject) => {
  const ws = new WebSocket(%(url)s);
  const seen = [];
  const started = Date.now();
  const timer = setTimeout(() => reject(new Error('timeout; got ' + seen.length)), %(hold)d + 15000);
  const finish = () => {
    clearTimeout(timer);
    resolve(JSON.stringify({extensions: ws.extensions, seen}));
    ws.onclose = null;
    ws.close();
  };
  ws.onmessage = (e) => {
    const msg = JSON.parse(e.data);
    if (msg.type === 'status') return;
    seen.push({seq: msg.seq, keys: Object.keys(msg), bytes: e.data.length,
               symbols: Object.keys(msg.quotes).length});
    if (seen.length >= %(count)d && Date.now() - started >= %(hold)d) finish();
  };
  ws.onclose = (e) => reject(new Error('socket closed by the server: ' + e.code));
  ws.onerror = () => reject(new Error('websocket error'));
})
"""


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit("chromium is not installed (scripts/test installs it)")


def devtools_page(port, deadline):
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=1) as r:
                pages = [p for p in json.load(r) if p.get("type") == "page"]
                if pages:
                    return pages[0]["webSocketDebuggerUrl"]
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("chromium's DevTools endpoint did not come up")


async def evaluate(debugger_url, expression):
    async with connect(debugger_url, max_size=None) as cdp:
        await cdp.send(json.dumps({
            "id": 1,
            "method": "Runtime.evaluate",
            "params": {"expression": expression, "awaitPromise": True, "returnByValue": True},
        }))
        while True:
            reply = json.loads(await asyncio.wait_for(cdp.recv(), timeout=30))
            if reply.get("id") == 1:
                return reply


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", required=True, help="marketcast base URL, http://host:port")
    parser.add_argument("--messages", type=int, default=3)
    parser.add_argument("--hold", type=float, default=0.0, help="seconds to stay connected")
    args = parser.parse_args()
    ws_url = args.http.replace("http://", "ws://", 1) + "/ws/market"
    profile = tempfile.mkdtemp(prefix="marketcast-chromium-")
    port = 9300 + os.getpid() % 500
    browser = subprocess.Popen(
        [find_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", f"--remote-debugging-port={port}",
         # A page of the server's own origin, as a browser client is (a blank page's origin
         # is opaque, `Origin: null`, which marketcast refuses like any foreign origin).
         args.http + "/health"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        page = devtools_page(port, time.time() + 30)
        expression = SCRIPT % {"url": json.dumps(ws_url), "count": args.messages,
                               "hold": int(args.hold * 1000)}
        # Wait until the server's page has committed (before that the tab is about:blank,
        # whose opaque origin the server refuses, or its context is being replaced).
        for _ in range(100):
            here = asyncio.run(evaluate(page, "location.origin"))
            if here.get("result", {}).get("result", {}).get("value") == args.http:
                break
            time.sleep(0.1)
        else:
            raise SystemExit(f"the page never loaded {args.http}: {json.dumps(here)[:300]}")
        reply = asyncio.run(evaluate(page, expression))
        result = reply.get("result", {})
        if "exceptionDetails" in result or result.get("result", {}).get("type") != "string":
            raise SystemExit(f"page script failed: {json.dumps(reply)[:500]}")
        seen = json.loads(result["result"]["value"])
        if "permessage-deflate" not in seen["extensions"]:
            raise SystemExit(f"deflate was not negotiated: {seen['extensions']!r}")
        seqs = [m["seq"] for m in seen["seen"]]
        if seqs != list(range(seqs[0], seqs[0] + len(seqs))):
            raise SystemExit(f"seq not consecutive: {seqs}")
        for m in seen["seen"]:  # every frame a complete snapshot
            for key in ("seq", "ts", "quotes", "indices", "foreign", "derivatives"):
                if key not in m["keys"]:
                    raise SystemExit(f"message lacks {key}")
        print(json.dumps({"client": "chromium", "extensions": seen["extensions"],
                          "messages": len(seqs), "first_seq": seqs[0], "last_seq": seqs[-1],
                          "bytes": seen["seen"][-1]["bytes"]}))
    finally:
        browser.terminate()
        try:
            browser.wait(timeout=5)
        except subprocess.TimeoutExpired:
            browser.kill()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
