"""The original's market data pipeline in Python, for the core benchmark's side-by-side figure.

Reproduces what the original backend did per SSI message (spec sections 2 and 3): decode the
callback payload and its `Content` string with `json.loads`, map the PascalCase keys through the
44-entry table, validate into Pydantic v2 models (lax mode, as the original), route by `RType`,
then the processor work: quote cache, trade classification, session aggregation, foreign deltas
with a 5-minute speed window, index tracking. It accepts SSI's own `X-TRADE`/`X-QUOTE` types and
`BuyVol` spellings like marketcast does, so both process the same file completely.

    python3 bench/peers/python_processor.py day.jsonl      # prints one JSON line: msgs/s
"""

import json
import sys
import time
from collections import deque
from datetime import datetime

from pydantic import BaseModel

FIELD_MAP = {
    "Symbol": "symbol", "StockSymbol": "symbol", "Exchange": "exchange", "LastPrice": "last_price",
    "LastVol": "last_vol", "TotalVol": "total_vol", "TotalVal": "total_val", "Change": "change",
    "RatioChange": "ratio_change", "TradingSession": "trading_session", "Ceiling": "ceiling",
    "Floor": "floor", "RefPrice": "ref_price", "Open": "open", "High": "high", "Low": "low",
    "Close": "close", "Time": "time", "BidPrice1": "bid_price_1", "BidPrice2": "bid_price_2",
    "BidPrice3": "bid_price_3", "BidVol1": "bid_vol_1", "BidVol2": "bid_vol_2",
    "BidVol3": "bid_vol_3", "AskPrice1": "ask_price_1", "AskPrice2": "ask_price_2",
    "AskPrice3": "ask_price_3", "AskVol1": "ask_vol_1", "AskVol2": "ask_vol_2",
    "AskVol3": "ask_vol_3", "FBuyVol": "f_buy_vol", "FSellVol": "f_sell_vol",
    "FBuyVal": "f_buy_val", "FSellVal": "f_sell_val", "BuyVol": "f_buy_vol",
    "SellVol": "f_sell_vol", "BuyVal": "f_buy_val", "SellVal": "f_sell_val",
    "TotalRoom": "total_room", "CurrentRoom": "current_room", "IndexId": "index_id",
    "IndexValue": "index_value", "PriorIndexValue": "prior_index_value",
    "TotalQtty": "total_qtty", "Advances": "advances", "Declines": "declines",
    "NoChanges": "no_changes", "Volume": "volume",
}


class Trade(BaseModel):
    symbol: str = ""
    exchange: str = ""
    last_price: float = 0.0
    last_vol: int = 0
    total_vol: int = 0
    total_val: float = 0.0
    change: float = 0.0
    ratio_change: float = 0.0
    trading_session: str = ""


class Quote(BaseModel):
    symbol: str = ""
    exchange: str = ""
    ceiling: float = 0.0
    floor: float = 0.0
    ref_price: float = 0.0
    open: float = 0.0
    high: float = 0.0
    low: float = 0.0
    bid_price_1: float = 0.0
    bid_price_2: float = 0.0
    bid_price_3: float = 0.0
    ask_price_1: float = 0.0
    ask_price_2: float = 0.0
    ask_price_3: float = 0.0
    bid_vol_1: int = 0
    bid_vol_2: int = 0
    bid_vol_3: int = 0
    ask_vol_1: int = 0
    ask_vol_2: int = 0
    ask_vol_3: int = 0


class Foreign(BaseModel):
    symbol: str = ""
    f_buy_vol: int = 0
    f_sell_vol: int = 0
    f_buy_val: float = 0.0
    f_sell_val: float = 0.0
    total_room: int = 0
    current_room: int = 0


class Index(BaseModel):
    index_id: str = ""
    index_value: float = 0.0
    prior_index_value: float = 0.0
    change: float = 0.0
    ratio_change: float = 0.0
    total_qtty: int = 0
    advances: int = 0
    declines: int = 0
    no_changes: int = 0


MODELS = {"X-TRADE": Trade, "Trade": Trade, "X-QUOTE": Quote, "Quote": Quote, "R": Foreign,
          "MI": Index}


class Processor:
    def __init__(self):
        self.quotes = {}
        self.stats = {}
        self.prices = {}
        self.foreign = {}
        self.indices = {}
        self.intraday = {}

    def on_quote(self, q):
        self.quotes[q.symbol] = q

    def on_trade(self, t):
        if t.symbol.startswith("VN30F"):
            return
        q = self.quotes.get(t.symbol)
        bid, ask = (q.bid_price_1, q.ask_price_1) if q else (0.0, 0.0)
        if t.trading_session in ("ATO", "ATC"):
            kind = "neutral"
        elif ask > 0 and t.last_price >= ask:
            kind = "buy"
        elif bid > 0 and t.last_price <= bid:
            kind = "sell"
        else:
            kind = "neutral"
        s = self.stats.setdefault(t.symbol, {"buy": 0, "sell": 0, "neutral": 0, "buy_value": 0.0,
                                             "sell_value": 0.0, "total": 0, "last": None})
        s[kind] += t.last_vol
        if kind != "neutral":
            s[kind + "_value"] += t.last_price * t.last_vol
        s["total"] += t.last_vol
        s["last"] = datetime.now()
        self.prices[t.symbol] = (t.last_price, t.change, t.ratio_change)

    def on_foreign(self, f):
        now = time.time()
        prev, hist = self.foreign.get(f.symbol, (None, deque(maxlen=600)))
        d_buy = f.f_buy_vol - prev.f_buy_vol if prev else 0
        d_sell = f.f_sell_vol - prev.f_sell_vol if prev else 0
        hist.append((max(d_buy, 0), max(d_sell, 0), now))
        recent = [h for h in hist if h[2] >= now - 300]
        _speed = (sum(h[0] for h in recent) / 5, sum(h[1] for h in recent) / 5)
        self.foreign[f.symbol] = (f, hist)

    def on_index(self, i):
        self.indices[i.index_id] = i
        if i.index_value > 0:
            self.intraday.setdefault(i.index_id, deque(maxlen=21600)).append(
                (datetime.now(), i.index_value))


def process(line, proc):
    if "\t" in line and not line.startswith("{"):
        line = line.split("\t", 1)[1]
    raw = json.loads(line)
    content = raw.get("Content") or raw.get("content") or raw
    if isinstance(content, str):
        content = json.loads(content)
    rtype = content.get("RType", "")
    model = MODELS.get(rtype)
    if model is None:
        return False
    data = {FIELD_MAP[k]: v for k, v in content.items() if k in FIELD_MAP}
    msg = model.model_validate(data)
    if model is Trade:
        proc.on_trade(msg)
    elif model is Quote:
        proc.on_quote(msg)
    elif model is Foreign:
        proc.on_foreign(msg)
    else:
        proc.on_index(msg)
    return True


def main():
    lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
    best = None
    for _ in range(3):
        proc = Processor()
        start = time.perf_counter()
        n = sum(1 for line in lines if process(line, proc))
        elapsed = time.perf_counter() - start
        best = elapsed if best is None else min(best, elapsed)
    print(json.dumps({"peer": "python (original pipeline)", "messages": len(lines),
                      "processed": n, "msgs_per_sec": round(len(lines) / best)}))


if __name__ == "__main__":
    main()
