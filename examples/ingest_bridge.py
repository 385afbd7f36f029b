"""Forward raw SSI messages to marketcast's /ws/ingest: a bridge for a feed that runs elsewhere.

In the original Python backend, call `forward(message)` from the ssi-fc-data `on_message`
callback (the message as the SSI client delivers it: a str, or the dict it parsed). Run alone,
this script forwards the lines of its standard input (the replay format), which is how the
tests use it:

    python3 examples/ingest_bridge.py ws://127.0.0.1:8000/ws/ingest change-me < day.jsonl

The bridge reconnects when marketcast restarts and never loses the message it was sending.
Needs `pip install websockets` (version 14 or later).
"""

import asyncio
import json
import queue
import sys
import threading

import websockets

outbox: "queue.Queue[str | None]" = queue.Queue()


def forward(message) -> None:
    """Queues one SSI message (str or dict) for marketcast; never blocks the SSI callback."""
    outbox.put(message if isinstance(message, str) else json.dumps(message))


async def bridge(url: str, token: str, stop_at_end: bool = False) -> None:
    pending = None
    while True:
        try:
            headers = {"Authorization": f"Bearer {token}"}
            async with websockets.connect(url, additional_headers=headers) as ws:
                while True:
                    if pending is None:
                        pending = await asyncio.to_thread(outbox.get)
                    if pending is None:  # end of input (stdin mode)
                        await ws.close()
                        return
                    await ws.send(pending)
                    pending = None
        except (OSError, websockets.ConnectionClosed) as e:
            if stop_at_end and pending is None and outbox.empty():
                return
            print(f"bridge: {e}; reconnecting", file=sys.stderr)
            await asyncio.sleep(1)


def start_in_background(url: str, token: str) -> None:
    """For the SSI callback's process: runs the bridge on a thread of its own."""
    threading.Thread(target=lambda: asyncio.run(bridge(url, token)), daemon=True).start()


if __name__ == "__main__":
    url, token = sys.argv[1], sys.argv[2]
    for line in sys.stdin:
        line = line.rstrip("\n")
        if line:
            forward(line)
    outbox.put(None)
    asyncio.run(bridge(url, token, stop_at_end=True))
