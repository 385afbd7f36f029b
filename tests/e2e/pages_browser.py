"""The original frontend's six pages, played in Chromium against marketcast: for each page, the
same requests its hooks make (the same URLs and parameters, the chart page's UTC date
included) and the same parsing, from a page of the server's own origin. Debian's Chromium,
driven by Selenium through Debian's chromedriver.

    python3 tests/e2e/pages_browser.py --http http://127.0.0.1:8000

Pages and what they read (reference: market-data-spec.md section 6, history-and-alerts.md A.3,
B.7):
  price board   /ws/market (fallback GET /api/market/snapshot)
  volume        /ws/market (fallback GET /api/market/volume-stats)
  derivatives   /ws/market, GET /api/market/basis-trend?minutes=30 and, for the snapshot's
                contract, GET /api/history/derivatives/<contract>?start=D&end=D (last row's
                open_interest)
  foreign flow  /ws/foreign (fallback GET /api/market/foreign-detail)
  signals       /ws/alerts (an array or one alert; fallback GET /api/market/alerts?limit=50)
  charts        GET /api/vn30-components, GET /api/history/<symbol>/candles?start=D&end=D and
                GET /api/history/index/VN30/candles?start=D&end=D for the default VN30F2503 and
                for a VN30 stock, with D the UTC date; live candles from /ws/market

Prints one JSON line with what each page got; exits non-zero when a request fails, a page gets
no data, or the browser logs an error.
"""

import argparse
import json
import shutil
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

# Runs in the page. Each page's calls, as its hooks make them; resolves to a report per page.
SCRIPT = r"""
const done = arguments[arguments.length - 1];
const host = location.host;
const D = new Date().toISOString().slice(0, 10);       // the chart page's UTC date
const api = async (path) => {
  const r = await fetch('/api' + path);
  if (!r.ok) throw new Error(`API ${r.status}: ${r.statusText} (${path})`);
  return r.json();
};
// The generic hook: ws:// + host + /ws/<channel>, JSON-parse every text frame, ignore status.
const firstMessage = (channel, accept) => new Promise((resolve, reject) => {
  const ws = new WebSocket(`ws://${host}/ws/${channel}`);
  const timer = setTimeout(() => { ws.close(); reject(new Error(`no data on /ws/${channel}`)); }, 20000);
  ws.onmessage = (e) => {
    const data = JSON.parse(e.data);
    if (data && data.type === 'status') return;
    if (accept && !accept(data)) return;
    clearTimeout(timer); ws.close(); resolve(data);
  };
  ws.onerror = () => { clearTimeout(timer); reject(new Error(`WebSocket error on /ws/${channel}`)); };
});
(async () => {
  const pages = {};
  // Price board.
  const snap = await firstMessage('market', (s) => Object.keys(s.quotes || {}).length > 0);
  const rest = await api('/market/snapshot');
  pages.board = { symbols: Object.keys(snap.quotes).length, prices: Object.keys(snap.prices || {}).length,
                  rest_symbols: Object.keys(rest.quotes).length };
  // Volume.
  const stats = await api('/market/volume-stats');
  pages.volume = { rows: stats.stats.length,
                   buy: stats.stats.reduce((a, s) => a + s.mua_chu_dong_volume, 0) };
  // Derivatives.
  const withFutures = snap.derivatives ? snap : await firstMessage('market', (s) => s.derivatives);
  const contract = withFutures.derivatives.symbol;
  const trend = await api('/market/basis-trend?minutes=30');
  const oi = await api(`/history/derivatives/${contract}?start=${D}&end=${D}`);
  const last = oi[oi.length - 1];
  pages.derivatives = { contract, basis: withFutures.derivatives.basis, trend: trend.length,
                        history_rows: oi.length, open_interest: last ? last.open_interest : null };
  // Foreign flow.
  const foreign = await firstMessage('foreign');
  const detail = await api('/market/foreign-detail');
  pages.foreign = { total_buy_value: foreign.total_buy_value, top_buy: foreign.top_buy.length,
                    stocks: detail.stocks.length };
  // Signals: the hook wraps a single object into an array.
  const incoming = await firstMessage('alerts');
  const alerts = Array.isArray(incoming) ? incoming : [incoming];
  const polled = await api('/market/alerts?limit=50');
  pages.signals = { received: alerts.length, first_type: alerts[0].alert_type, polled: polled.length };
  // Charts: the default contract, then a stock from the dropdown.
  const comps = await api('/vn30-components');
  const charts = {};
  for (const symbol of ['VN30F2503', comps.symbols[0]]) {
    const [candles, index] = await Promise.all([
      api(`/history/${symbol}/candles?start=${D}&end=${D}`),
      api(`/history/index/VN30/candles?start=${D}&end=${D}`),
    ]);
    const times = candles.map((c) => Math.floor(new Date(c.timestamp).getTime() / 1000));
    charts[symbol] = { candles: candles.length, index_candles: index.length,
                       times_ok: times.every((t) => Number.isFinite(t)),
                       close: candles.length ? candles[candles.length - 1].close : null };
  }
  const live = snap.prices[comps.symbols[0]];
  pages.charts = { components: comps.symbols.length, symbols: charts, live_price: live ? live.last_price : 0 };
  return pages;
})().then((pages) => done(JSON.stringify({ ok: true, pages })),
          (e) => done(JSON.stringify({ ok: false, error: String(e) })));
"""


def fail(message):
    print(f"pages check failed: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--http", required=True)
    args = ap.parse_args()
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or fail("chromium is not installed")
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(a)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or fail("no chromedriver")),
                              options=options)
    try:
        driver.set_script_timeout(90)
        # A page of the server's own origin: same-origin requests, as behind the dev proxy.
        driver.get(args.http + "/")
        result = json.loads(driver.execute_async_script(SCRIPT))
        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    finally:
        driver.quit()
    if not result.get("ok"):
        fail(result.get("error"))
    if errors:
        fail(f"console errors: {errors}")
    p = result["pages"]
    checks = [
        (p["board"]["symbols"] > 0 and p["board"]["rest_symbols"] > 0, "the board has no symbols"),
        (p["volume"]["rows"] > 0, "the volume page has no rows"),
        (p["derivatives"]["history_rows"] > 0, "no derivatives history today"),
        (p["derivatives"]["open_interest"] == 0, "open interest should read 0 (not available)"),
        (p["foreign"]["stocks"] > 0, "the foreign page has no stocks"),
        (p["signals"]["received"] > 0 and p["signals"]["polled"] > 0, "the signals page has no alerts"),
        (p["charts"]["symbols"]["VN30F2503"]["candles"] == 0, "the expired contract should have no candles"),
        (p["charts"]["symbols"][list(p["charts"]["symbols"])[1]]["candles"] > 0, "the stock has no candles"),
        (p["charts"]["symbols"][list(p["charts"]["symbols"])[1]]["index_candles"] > 0, "VN30 has no candles"),
        (p["charts"]["live_price"] > 0, "no live price for the chart's stock"),
    ]
    for ok, message in checks:
        if not ok:
            fail(f"{message}: {json.dumps(p)}")
    print(json.dumps(p))


if __name__ == "__main__":
    main()
