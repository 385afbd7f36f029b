"""Seed peer: the original Python design that marketcast replaces, rebuilt for the fan-out benchmark.

What it reproduces (shared/seed/websocket-broadcast-server.md): FastAPI + uvicorn, one WebSocket
stream at /ws/market, a ConnectionManager with one asyncio.Queue(maxsize=50) per client and one
sender task per client, drop-oldest on overflow, and a broadcast loop that serialises the whole
Pydantic v2 MarketSnapshot with model_dump_json() on every tick. That per-tick serialisation is the
seed's real cost and is kept on purpose; only the market processor is replaced by a snapshot file
loaded once at start.

Deliberate differences from the seed, so that every peer sends the same bytes:
- no app-level heartbeat (the seed pinged every 30 s); nothing is sent but the snapshots;
- seq/ts are spliced in front of the body: '{"seq":N,"ts":MS,' + body[1:];
- nothing is sent on a tick with no clients.

Keepalive: OFF (ws_ping_interval=None, ws_ping_timeout=None), like node_ws.js and floor.c, so all
three peers send only snapshots. At uvicorn's default (20 s) the legacy websockets protocol's
keepalive races the per-client sender task when a socket's writes stay paused past the ping
interval ("keepalive ping failed ... AssertionError" in _drain_helper, one traceback per
connection, seen here once in an overloaded run with 1,000 clients and the large snapshot); in
steady state it made no difference. permessage-deflate is left at uvicorn's default
(on), so it is used only with clients that offer it; the benchmark client and check_peer.py
do not.
Server: uvicorn, one worker, ws="websockets" (uvicorn's legacy websockets implementation, which
is deprecated upstream; its DeprecationWarning is silenced here), log level warning, no
connection limit (limit_concurrency=None), listen backlog 4096.

Wire text vs. the fixture file: with the current fixtures model_dump_json() reproduces the file
byte for byte (same keys, same order, compact). Two spellings could differ on other data:
pydantic-core writes a tiny float as "1e-7" where Python's json writes "1e-07", and a datetime
whose microseconds are 0 loses its fraction (".000000+07:00" comes back as "+07:00").
The startup check below prints a warning to stderr when the body does not equal the file.

Run:
    pip install -r bench/peers/requirements.txt
    python3 bench/peers/seed_fastapi.py --port 8001 \
        --snapshot /work/shared/fixtures/snapshot-small.json --interval 1.0
Prints "READY <port>" once listening; stops cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import warnings
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Optional

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from pydantic import BaseModel

QUEUE_MAXSIZE = 50  # the seed's per-client queue bound; overflow drops the oldest message


# --- Snapshot models: mirror the fixture's shape, in its key order -------------------------------

class SessionStats(BaseModel):
    symbol: str
    mua_chu_dong_volume: int
    mua_chu_dong_value: float
    ban_chu_dong_volume: int
    ban_chu_dong_value: float
    neutral_volume: int
    total_volume: int
    last_updated: Optional[datetime] = None


class IntradayPoint(BaseModel):
    timestamp: datetime
    value: float


class IndexData(BaseModel):
    index_id: str
    value: float
    prior_value: float
    change: float
    ratio_change: float
    total_volume: int
    advances: int
    declines: int
    no_changes: int
    intraday: list[IntradayPoint] = []
    last_updated: Optional[datetime] = None
    advance_ratio: float = 0.0  # a computed field in the seed; a plain field holds the same value


class ForeignInvestorData(BaseModel):
    symbol: str
    buy_volume: int
    sell_volume: int
    net_volume: int
    buy_value: float
    sell_value: float
    net_value: float
    total_room: int
    current_room: int
    buy_speed_per_min: float
    sell_speed_per_min: float
    buy_acceleration: float
    sell_acceleration: float
    last_updated: Optional[datetime] = None


class ForeignSummary(BaseModel):
    total_buy_value: float
    total_sell_value: float
    total_net_value: float
    total_buy_volume: int
    total_sell_volume: int
    total_net_volume: int
    top_buy: list[ForeignInvestorData] = []
    top_sell: list[ForeignInvestorData] = []


class DerivativesData(BaseModel):
    symbol: str
    last_price: float
    change: float
    change_pct: float
    volume: int
    bid_price: float
    ask_price: float
    basis: float
    basis_pct: float
    is_premium: bool
    last_updated: Optional[datetime] = None


class MarketSnapshot(BaseModel):
    quotes: dict[str, SessionStats] = {}
    indices: dict[str, IndexData] = {}
    foreign: Optional[ForeignSummary] = None
    derivatives: Optional[DerivativesData] = None


# --- Fan-out: the seed's ConnectionManager ------------------------------------------------------

class ConnectionManager:
    """One bounded queue and one sender task per client; broadcast never waits on a socket."""

    def __init__(self) -> None:
        self._queues: dict[WebSocket, asyncio.Queue[str]] = {}
        self._senders: dict[WebSocket, asyncio.Task[None]] = {}

    @property
    def client_count(self) -> int:
        return len(self._queues)

    async def connect(self, websocket: WebSocket) -> None:
        await websocket.accept()
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=QUEUE_MAXSIZE)
        self._queues[websocket] = queue
        self._senders[websocket] = asyncio.create_task(self._sender(websocket, queue))

    def disconnect(self, websocket: WebSocket) -> None:
        self._queues.pop(websocket, None)
        task = self._senders.pop(websocket, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _sender(self, websocket: WebSocket, queue: asyncio.Queue[str]) -> None:
        try:
            while True:
                message = await queue.get()
                await websocket.send_text(message)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Socket gone or closing: the receive loop in the endpoint notices and unregisters.
            self.disconnect(websocket)

    def broadcast(self, message: str) -> None:
        for queue in list(self._queues.values()):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:
                try:
                    queue.get_nowait()  # drop the oldest so a slow client never blocks the rest
                except asyncio.QueueEmpty:
                    pass
                queue.put_nowait(message)

    async def close_all(self) -> None:
        tasks = list(self._senders.values())
        for task in tasks:
            task.cancel()
        self._queues.clear()
        self._senders.clear()
        await asyncio.gather(*tasks, return_exceptions=True)


# --- Broadcast loop ------------------------------------------------------------------------------

async def broadcast_loop(manager: ConnectionManager, snapshot: MarketSnapshot, interval: float) -> None:
    seq = 0
    loop = asyncio.get_running_loop()
    next_tick = loop.time() + interval
    while True:
        await asyncio.sleep(max(0.0, next_tick - loop.time()))
        next_tick += interval
        if manager.client_count == 0:
            continue
        seq += 1
        ts = int(time.time() * 1000)
        body = snapshot.model_dump_json()  # per-tick serialisation: the seed's design
        manager.broadcast('{"seq":%d,"ts":%d,' % (seq, ts) + body[1:])


def build_app(snapshot: MarketSnapshot, interval: float) -> FastAPI:
    manager = ConnectionManager()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        task = asyncio.create_task(broadcast_loop(manager, snapshot, interval))
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await manager.close_all()

    app = FastAPI(lifespan=lifespan)

    @app.websocket("/ws/market")
    async def ws_market(websocket: WebSocket) -> None:
        await manager.connect(websocket)
        try:
            while True:  # clients send nothing we use: read and discard until they leave
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            manager.disconnect(websocket)

    return app


def load_snapshot(path: str) -> MarketSnapshot:
    with open(path, "rb") as f:
        raw = f.read()
    snapshot = MarketSnapshot.model_validate_json(raw)
    body = snapshot.model_dump_json()
    if body.encode() != raw.strip():
        # Same keys either way; report so a size difference in results is explained.
        print(f"warning: model_dump_json() differs from {path} "
              f"({len(body.encode())} vs {len(raw.strip())} bytes)", file=sys.stderr, flush=True)
    return snapshot


def main() -> None:
    parser = argparse.ArgumentParser(description="FastAPI seed peer for the marketcast fan-out benchmark")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--snapshot", required=True, help="snapshot JSON file")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between broadcasts")
    args = parser.parse_args()

    snapshot = load_snapshot(args.snapshot)
    app = build_app(snapshot, args.interval)

    import uvicorn
    from uvicorn.config import UvicornDeprecationWarning

    # ws="websockets" loads uvicorn's legacy implementation, which warns when it is imported.
    warnings.filterwarnings("ignore", category=UvicornDeprecationWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)

    class ReadyServer(uvicorn.Server):
        """uvicorn.Server that says READY only after the listening socket is bound."""

        async def startup(self, sockets=None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                print(f"READY {args.port}", flush=True)

        def handle_exit(self, sig, frame) -> None:
            # uvicorn re-raises a captured SIGTERM/SIGINT after its graceful shutdown, which would
            # make the exit status 143/130; forgetting it makes a clean stop exit 0.
            super().handle_exit(sig, frame)
            self._captured_signals.clear()

    # Server.run installs SIGTERM/SIGINT handlers, runs lifespan shutdown, then returns.
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        workers=1,
        ws="websockets",
        log_level="warning",
        access_log=False,
        backlog=4096,
        limit_concurrency=None,
        ws_ping_interval=None,
        ws_ping_timeout=None,
    )
    ReadyServer(config).run()


if __name__ == "__main__":
    main()
