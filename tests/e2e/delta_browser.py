"""Delta messages in a real browser: the dashboard's own applier (assets/dashboard/delta.js) in
Debian's Chromium, driven by Selenium.

Opens a page of the server (its /health: same origin, nothing running, unlike the dashboard,
whose rendering would compete for the page's thread), loads the dashboard's delta.js into it as
the server serves it, then in the page opens a plain WebSocket and one with ?delta=fossil (Chromium negotiates
permessage-deflate on both), rebuilds each delta with MarketcastDelta.Rebuilder, and compares
every rebuilt message with the plain client's message of the same seq. Halfway it closes the
delta socket and opens a new one with a new Rebuilder (a reconnect: its first message must be
full, and deltas must follow). Before that, in the same page, the applier's bounds: a small
delta made by hand is applied, and one that declares a size far above anything its base and
its own length could make is refused before anything is allocated.

    python3 tests/e2e/delta_browser.py --http http://127.0.0.1:8000 [--messages 40]

Prints one JSON line with what it saw; exits non-zero with a message on any failure.
"""

import argparse
import json
import shutil
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

SCRIPT = r"""
const [want, done] = arguments;
const ws = location.origin.replace(/^http/, 'ws');
const plain = {}, rebuilt = {};
let deltas = 0, fulls = 0, count = 0, finished = false, reconnects = 0, firstAfterReconnect = null;
const seqOf = (t) => { const m = /^\{"seq":(\d+),/.exec(t); return m ? Number(m[1]) : null; };
const a = new WebSocket(ws + '/ws/market');
let b = null;
const finish = (extra) => {
  if (finished) return;
  finished = true;
  setTimeout(() => {
    a.close(); if (b) b.close();
    let same = 0; const differ = [];
    for (const s of Object.keys(rebuilt)) {
      if (s in plain) { if (plain[s] === rebuilt[s]) same++; else differ.push(Number(s)); }
    }
    const range = (o) => { const k = Object.keys(o).map(Number); return k.length ? [Math.min(...k), Math.max(...k)] : []; };
    done(Object.assign({ same, differ, deltas, fulls, count, reconnects, firstAfterReconnect,
      plainCount: Object.keys(plain).length, plainRange: range(plain), rebuiltRange: range(rebuilt),
      plainState: a.readyState, extensions: b ? b.extensions : '' }, extra || {}));
  }, 1500);
};
const open = () => {
  const sock = new WebSocket(ws + '/ws/market?delta=fossil');
  sock.binaryType = 'arraybuffer';
  const r = new MarketcastDelta.Rebuilder();
  let first = true;
  sock.onmessage = (e) => {
    if (finished || sock !== b) return;
    let text;
    try { text = r.take(e.data); } catch (err) { finish({ error: String(err) }); return; }
    const s = seqOf(text);
    if (s === null) return;
    if (first && reconnects > 0) firstAfterReconnect = typeof e.data === 'string' ? 'full' : 'delta';
    first = false;
    if (typeof e.data === 'string') fulls++; else deltas++;
    rebuilt[s] = text;
    count++;
    if (count === Math.floor(want / 2) && reconnects === 0) {
      reconnects++;
      const old = b;
      b = open();
      old.close();
      return;
    }
    if (count >= want) finish();
  };
  return sock;
};
a.onopen = () => { b = open(); };
a.onmessage = (e) => { const s = seqOf(e.data); if (s !== null) plain[s] = e.data; };
setTimeout(() => finish({ error: 'timeout' }), 90000);
"""

BOUNDS = r"""
const D = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~';
const enc = (n) => { let s = ''; do { s = D[n % 64] + s; n = Math.floor(n / 64); } while (n > 0); return s; };
const te = new TextEncoder();
const base = te.encode('hello');
const target = te.encode('hello!');
const good = enc(6) + '\n' + enc(5) + '@0,' + enc(1) + ':!' + enc(MarketcastDelta.checksum(target)) + ';';
const rebuilt = new TextDecoder().decode(MarketcastDelta.apply(base, te.encode(good)));
let oversize = null;
try {
  MarketcastDelta.apply(base, te.encode(enc(1000000) + '\n' + enc(5) + '@0,' + enc(0) + ';'));
} catch (e) { oversize = String(e); }
return { rebuilt, oversize };
"""


def fail(message):
    print(f"delta browser check failed: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--http", required=True)
    ap.add_argument("--messages", type=int, default=40)
    args = ap.parse_args()

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or fail("chromium is not installed")
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--disable-background-networking", "--disable-component-update", "--no-first-run"):
        options.add_argument(a)
    driver_path = shutil.which("chromedriver") or fail("chromedriver is not installed")
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(args.http + "/health")
        driver.set_script_timeout(120)
        loaded = driver.execute_async_script("""
            const done = arguments[0];
            const s = document.createElement('script');
            s.src = '/assets/dashboard/delta.js';
            s.onload = () => done(typeof MarketcastDelta === 'object');
            s.onerror = () => done(false);
            document.head.appendChild(s);
        """)
        if not loaded:
            fail("the dashboard's delta.js did not load")
        bounds = driver.execute_script(BOUNDS)
        if bounds["rebuilt"] != "hello!":
            fail(f"a small delta made by hand was not applied: {bounds}")
        if "too large" not in (bounds["oversize"] or ""):
            fail(f"a delta declaring 1,000,000 bytes from a 5-byte base was not refused: {bounds}")
        seen = driver.execute_async_script(SCRIPT, args.messages)
        seen["oversize"] = bounds["oversize"]
    finally:
        driver.quit()
    if seen.get("error"):
        fail(f"{seen['error']}: {seen}")
    if seen["differ"]:
        fail(f"rebuilt messages differ from the full ones at seq {seen['differ']}")
    if seen["same"] < args.messages // 2:
        fail(f"too few messages compared: {seen}")
    if seen["deltas"] == 0:
        fail(f"no delta message arrived: {seen}")
    if seen["firstAfterReconnect"] != "full":
        fail(f"after the reconnect the first message was not full: {seen}")
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
