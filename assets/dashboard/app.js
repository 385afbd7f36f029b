// marketcast dashboard: the VN30 market as a trader's screen shows it, from /ws/market.
//
// Connects to /ws/market (with ?token= when the page was opened with one), reconnects with
// exponential backoff and jitter, and while the socket is down polls /api/market/snapshot as the
// original frontend did. Every snapshot is complete, so each one simply redraws the view; rows
// of the board are kept and updated in place so a changed price can flash. It asks for delta
// messages (?delta=fossil, applied by delta.js); a server that does not offer them sends full
// messages, which are taken as they are.
'use strict';

(() => {
  const $ = (sel) => document.querySelector(sel);
  const token = new URLSearchParams(location.search).get('token');
  // The REST data takes the same token as the socket (WS_AUTH_TOKEN), as a bearer header.
  const authorized = (init = {}) =>
    token ? { ...init, headers: { ...init.headers, Authorization: 'Bearer ' + token } } : init;
  const EXCHANGE_TZ = 'Asia/Ho_Chi_Minh';
  const RECONNECT_MIN_MS = 1000;
  const RECONNECT_MAX_MS = 30000;
  const POLL_MS = 2000;

  // ---- formatting -------------------------------------------------------------------------
  const nf = (digits) => new Intl.NumberFormat('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
  const f0 = nf(0), f1 = nf(1), f2 = nf(2);
  const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
  const signed = (v, fmt) => (v > 0 ? '+' : '') + fmt.format(v);
  const dir = (v) => (v > 0 ? 'up' : v < 0 ? 'down' : 'ref');
  /** Vietnamese board colour of a price against its reference, ceiling and floor. */
  function priceClass(p) {
    const last = num(p.last_price), ref = num(p.ref_price);
    if (!last) return '';
    if (p.ceiling > 0 && last >= p.ceiling) return 'ceil';
    if (p.floor > 0 && last <= p.floor) return 'floor';
    if (ref > 0) return last > ref ? 'up' : last < ref ? 'down' : 'ref';
    return dir(num(p.change));
  }
  const setText = (el, text, cls) => {
    if (el.textContent !== text) el.textContent = text;
    if (cls !== undefined && el.className !== cls) el.className = cls;
  };

  // ---- charts (uPlot) ---------------------------------------------------------------------
  const charts = {};
  function chart(id, color) {
    if (charts[id]) return charts[id];
    const el = document.getElementById(id);
    const width = el.clientWidth;
    if (!width || typeof uPlot !== 'function') return null;
    const axis = { stroke: '#8a96a3', grid: { stroke: '#26303a', width: 1 }, ticks: { stroke: '#26303a' } };
    charts[id] = new uPlot({
      width, height: el.clientHeight || 130,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), EXCHANGE_TZ),
      legend: { show: false },
      cursor: { drag: { x: false, y: false } },
      series: [{}, { stroke: color, width: 1.5 }],
      axes: [axis, { ...axis, size: 56 }],
    }, [[], []], el);
    return charts[id];
  }
  window.addEventListener('resize', () => {
    for (const [id, c] of Object.entries(charts)) {
      const el = document.getElementById(id);
      c.setSize({ width: el.clientWidth, height: el.clientHeight || 130 });
    }
  });
  const seconds = (iso) => Date.parse(iso) / 1000;

  // ---- indices ----------------------------------------------------------------------------
  function renderIndex(id, idx) {
    const card = document.getElementById('idx-' + id);
    if (!card) return;
    if (!idx) {
      setText(card.querySelector('.value'), '–');
      return;
    }
    setText(card.querySelector('.value'), f2.format(num(idx.value)), 'value ' + dir(num(idx.change)));
    setText(card.querySelector('.change'), `${signed(num(idx.change), f2)} (${signed(num(idx.ratio_change), f2)}%)`, 'change ' + dir(num(idx.change)));
    const a = num(idx.advances), d = num(idx.declines), u = num(idx.no_changes), all = a + d + u || 1;
    card.querySelector('.adv').style.width = (100 * a / all) + '%';
    card.querySelector('.unch').style.width = (100 * u / all) + '%';
    card.querySelector('.dec').style.width = (100 * d / all) + '%';
    setText(card.querySelector('.breadth-text'), `▲ ${a}  ■ ${u}  ▼ ${d}`);
    const c = chart('chart-' + id, '#3cc8f0');
    if (c) {
      const pts = idx.intraday || [];
      c.setData([pts.map((p) => seconds(p.timestamp)), pts.map((p) => p.value)]);
    }
  }

  // ---- futures and basis ------------------------------------------------------------------
  const basis = { xs: [], ys: [], last: null, symbol: null };
  const BASIS_MAX_POINTS = 20000;
  function addBasisPoint(t, value) {
    if (basis.xs.length && t <= basis.xs[basis.xs.length - 1]) return;
    basis.xs.push(t);
    basis.ys.push(value);
    if (basis.xs.length > BASIS_MAX_POINTS) { basis.xs.shift(); basis.ys.shift(); }
  }
  async function loadBasisTrend() {
    try {
      const r = await fetch('/api/market/basis-trend?minutes=120', authorized());
      if (!r.ok) return;
      const points = await r.json();
      basis.xs = []; basis.ys = [];
      for (const p of points) addBasisPoint(seconds(p.timestamp), p.basis);
    } catch (_) { /* the live points still come */ }
  }
  function renderFutures(d) {
    if (!d) {
      setText($('#fut-symbol'), '');
      setText($('#fut-price'), '–');
      setText($('#fut-change'), '');
      setText($('#fut-basis'), 'no futures trade yet');
      return;
    }
    if (basis.symbol !== d.symbol) { basis.symbol = d.symbol; basis.xs = []; basis.ys = []; }
    setText($('#fut-symbol'), d.symbol);
    setText($('#fut-price'), f1.format(num(d.last_price)), 'value ' + dir(num(d.change)));
    setText($('#fut-change'), `${signed(num(d.change), f1)} (${signed(num(d.change_pct), f2)}%)`, 'change ' + dir(num(d.change)));
    const b = num(d.basis);
    const kind = d.is_premium ? 'premium' : 'discount';
    const el = $('#fut-basis');
    el.replaceChildren();
    el.append('basis ');
    const span = document.createElement('span');
    span.className = kind;
    span.textContent = `${signed(b, f2)} (${signed(num(d.basis_pct), f2)}%) ${kind}`;
    el.append(span);
    if (d.last_updated && d.last_updated !== basis.last) {
      basis.last = d.last_updated;
      addBasisPoint(seconds(d.last_updated), b);
    }
    const c = chart('chart-basis', d.is_premium ? '#17c964' : '#f0424b');
    if (c) c.setData([basis.xs.slice(), basis.ys.slice()]);
  }

  // ---- foreign flows ----------------------------------------------------------------------
  const bn = (v) => f2.format(num(v) / 1e9);
  function renderForeign(f) {
    if (!f) return;
    setText($('#f-buy'), bn(f.total_buy_value) + ' bn');
    setText($('#f-sell'), bn(f.total_sell_value) + ' bn');
    setText($('#f-net'), (num(f.total_net_value) > 0 ? '+' : '') + bn(f.total_net_value) + ' bn', dir(num(f.total_net_value)));
    for (const [id, list] of [['#f-top-buy', f.top_buy || []], ['#f-top-sell', f.top_sell || []]]) {
      const body = $(id + ' tbody');
      const rows = list.map((r) => {
        const tr = document.createElement('tr');
        const s = document.createElement('td'); s.className = 'text sym'; s.textContent = r.symbol;
        const v = document.createElement('td'); v.className = dir(num(r.net_value)); v.textContent = bn(r.net_value);
        tr.append(s, v);
        return tr;
      });
      body.replaceChildren(...rows);
    }
  }

  // ---- the price board --------------------------------------------------------------------
  const board = { rows: new Map(), key: 'symbol', desc: false };
  const COLUMNS = ['symbol', 'last_price', 'change', 'change_pct', 'buy', 'sell', 'neutral', 'total'];
  function rowFor(symbol) {
    let row = board.rows.get(symbol);
    if (row) return row;
    const tr = document.createElement('tr');
    const cells = {};
    for (const key of COLUMNS) {
      const td = document.createElement('td');
      if (key === 'symbol') { td.className = 'text sym'; td.textContent = symbol; }
      tr.append(td);
      cells[key] = td;
    }
    const barsCell = document.createElement('td');
    barsCell.className = 'text';
    const bars = document.createElement('div');
    bars.className = 'bars';
    const parts = {};
    for (const k of ['b', 's', 'n']) { parts[k] = document.createElement('span'); parts[k].className = k; bars.append(parts[k]); }
    barsCell.append(bars);
    tr.append(barsCell);
    row = { tr, cells, parts, values: { symbol }, price: null };
    board.rows.set(symbol, row);
    $('#board tbody').append(tr);
    return row;
  }
  function flash(td, up) {
    td.classList.remove('flash-up', 'flash-down');
    void td.offsetWidth; // restart the animation
    td.classList.add(up ? 'flash-up' : 'flash-down');
  }
  function renderBoard(quotes, prices) {
    const symbols = new Set([...Object.keys(quotes || {}), ...Object.keys(prices || {})]);
    $('#board-empty').hidden = symbols.size > 0;
    for (const [symbol, row] of board.rows) {
      if (!symbols.has(symbol)) { row.tr.remove(); board.rows.delete(symbol); }
    }
    for (const symbol of symbols) {
      const q = (quotes || {})[symbol] || {};
      const p = (prices || {})[symbol] || {};
      const row = rowFor(symbol);
      const cls = priceClass(p);
      const v = row.values;
      v.last_price = num(p.last_price); v.change = num(p.change); v.change_pct = num(p.change_pct);
      v.buy = num(q.mua_chu_dong_volume); v.sell = num(q.ban_chu_dong_volume);
      v.neutral = num(q.neutral_volume); v.total = num(q.total_volume);
      setText(row.cells.symbol, symbol, 'text sym ' + cls);
      setText(row.cells.last_price, v.last_price ? f2.format(v.last_price / 1000) : '–', cls);
      setText(row.cells.change, v.last_price ? signed(v.change / 1000, f2) : '', cls);
      setText(row.cells.change_pct, v.last_price ? signed(v.change_pct, f2) : '', cls);
      setText(row.cells.buy, f0.format(v.buy));
      setText(row.cells.sell, f0.format(v.sell));
      setText(row.cells.neutral, f0.format(v.neutral));
      setText(row.cells.total, f0.format(v.total));
      if (row.price !== null && v.last_price !== row.price) flash(row.cells.last_price, v.last_price > row.price);
      row.price = v.last_price;
      const all = v.buy + v.sell + v.neutral || 1;
      row.parts.b.style.width = (100 * v.buy / all) + '%';
      row.parts.s.style.width = (100 * v.sell / all) + '%';
      row.parts.n.style.width = (100 * v.neutral / all) + '%';
    }
    sortBoard();
  }
  function sortBoard() {
    const rows = [...board.rows.values()];
    const k = board.key, sign = board.desc ? -1 : 1;
    rows.sort((a, b) => {
      const x = a.values[k], y = b.values[k];
      const c = typeof x === 'string' ? x.localeCompare(y) : x - y;
      return sign * (c || a.values.symbol.localeCompare(b.values.symbol));
    });
    const body = $('#board tbody');
    rows.forEach((r, i) => { if (body.children[i] !== r.tr) body.insertBefore(r.tr, body.children[i] || null); });
    for (const th of document.querySelectorAll('#board thead th[data-key]')) {
      th.setAttribute('aria-sort', th.dataset.key === k ? (board.desc ? 'descending' : 'ascending') : 'none');
    }
  }
  for (const th of document.querySelectorAll('#board thead th[data-key]')) {
    th.addEventListener('click', () => {
      const key = th.dataset.key;
      board.desc = board.key === key ? !board.desc : key !== 'symbol';
      board.key = key;
      sortBoard();
    });
  }

  // ---- connection -------------------------------------------------------------------------
  const conn = { state: 'connecting', attempt: 0, ws: null, pollTimer: null, received: [], lastTs: null, lastSeq: null };
  function setState(state) {
    conn.state = state;
    setText($('#conn-state'), state, 'badge ' + state);
  }
  function onSnapshot(s, viaPoll) {
    if (!s || typeof s !== 'object' || !s.quotes) return;
    if (!viaPoll) {
      conn.received.push(performance.now());
      conn.lastTs = typeof s.ts === 'number' ? s.ts : null;
      conn.lastSeq = typeof s.seq === 'number' ? s.seq : null;
    } else {
      conn.lastTs = Date.now();
      conn.lastSeq = null;
    }
    setText($('#conn-seq'), conn.lastSeq === null ? 'polled' : 'seq ' + conn.lastSeq);
    const idx = s.indices || {};
    renderIndex('VN30', idx.VN30);
    renderIndex('VNINDEX', idx.VNINDEX);
    renderFutures(s.derivatives);
    renderForeign(s.foreign);
    renderBoard(s.quotes, s.prices);
  }
  function onStatus(m) {
    let note = '';
    if (m.connected === false) note = 'feed down' + (m.error ? ': ' + m.error : '');
    else if (m.stale) note = 'feed quiet';
    setText($('#feed-note'), note, m.connected === false || m.stale ? 'down' : '');
  }
  function wsUrl() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return `${proto}//${location.host}/ws/market?delta=fossil` +
      (token ? '&token=' + encodeURIComponent(token) : '');
  }
  function connect() {
    setState(conn.attempt ? 'reconnecting' : 'connecting');
    let ws;
    try { ws = new WebSocket(wsUrl()); } catch (_) { retry(); return; }
    ws.binaryType = 'arraybuffer';
    const rebuild = new MarketcastDelta.Rebuilder();
    conn.ws = ws;
    ws.onopen = () => {
      conn.attempt = 0;
      stopPolling();
      setState('live');
      // How many times the page has connected (read by the browser test after a restart).
      document.body.dataset.connects = String(Number(document.body.dataset.connects || 0) + 1);
    };
    ws.onmessage = (e) => {
      let text;
      try { text = rebuild.take(e.data); } catch (_) {
        // A delta that cannot be applied (never sent by marketcast): start again from a full one.
        ws.close();
        return;
      }
      document.body.dataset.deltas = String(Number(document.body.dataset.deltas || 0) +
        (typeof e.data === 'string' ? 0 : 1));
      let m;
      try { m = JSON.parse(text); } catch (_) { return; }
      if (m && m.type === 'status') { onStatus(m); return; }
      if (m && m.type) return; // other non-snapshot messages (pong)
      onSnapshot(m, false);
    };
    ws.onclose = () => {
      if (conn.ws !== ws) return;
      conn.ws = null;
      startPolling();
      retry();
    };
  }
  /** Exponential backoff with full jitter: the n-th retry waits up to min(max, min * 2^n). */
  function retry() {
    const ceiling = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** conn.attempt);
    conn.attempt += 1;
    setTimeout(connect, ceiling / 2 + Math.random() * ceiling / 2);
  }
  async function poll() {
    try {
      const r = await fetch('/api/market/snapshot', authorized({ cache: 'no-store' }));
      if (r.ok && !conn.ws?.readyState) onSnapshot(await r.json(), true);
      if (conn.pollTimer && conn.state !== 'live') setState('polling');
    } catch (_) {
      if (conn.state !== 'live') setState('offline');
    }
  }
  function startPolling() {
    if (conn.pollTimer) return;
    conn.pollTimer = setInterval(poll, POLL_MS);
  }
  function stopPolling() {
    clearInterval(conn.pollTimer);
    conn.pollTimer = null;
  }
  setInterval(() => {
    const now = performance.now();
    conn.received = conn.received.filter((t) => now - t < 5000);
    setText($('#conn-rate'), conn.state === 'live' ? f1.format(conn.received.length / 5) + ' msg/s' : '–');
    setText($('#conn-age'), conn.lastTs === null ? '–' : 'age ' + f1.format(Math.max(0, Date.now() - conn.lastTs) / 1000) + ' s');
  }, 250);

  loadBasisTrend().finally(connect);
})();
