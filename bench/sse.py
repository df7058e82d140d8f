"""A lean server-sent-events client for benchmarks, and the commit-to-delivery latency of the
change feed.

    async with SseClient(port, "/v1/events?kind=reservation") as feed:
        async for message in feed:
            print(message.id, message.event, delivery_ms(message))

Each event's JSON carries `created_at`, stamped by the database (clock_timestamp()) when the
change was written, just before its transaction commits. Received time minus `created_at`
is therefore an upper bound of commit-to-delivery (client and database on one machine share
a clock). For a lower bound, time the write's acknowledgement on the client and match its
event (a reservation's id is in its event's payload): the commit precedes the answer.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

import msgspec

from bench.common import BENCH_KEY


class Message(msgspec.Struct):
    id: str | None
    event: str | None
    data: bytes | None
    received: float  # time.time() when its last line arrived


class _Envelope(msgspec.Struct):
    seq: int
    kind: str
    created_at: datetime
    payload: msgspec.Raw


_decoder = msgspec.json.Decoder(_Envelope)


def envelope(message: Message) -> _Envelope:
    return _decoder.decode(message.data)


def delivery_ms(message: Message) -> float:
    """Received time minus the event's created_at, in ms (an upper bound of commit-to-delivery)."""
    return (message.received - envelope(message).created_at.timestamp()) * 1000


class SseClient:
    """One GET with `Accept: text/event-stream` on a raw socket; iterate for messages
    (keep-alives included: their `data` is None)."""

    def __init__(self, port: int, target: str = "/v1/events", last_event_id: int | None = None) -> None:
        self.port = port
        self.target = target
        self.last_event_id = last_event_id
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> SseClient:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        resume = f"Last-Event-ID: {self.last_event_id}\r\n" if self.last_event_id is not None else ""
        self.writer.write(
            f"GET {self.target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {BENCH_KEY}\r\n"
            f"Accept: text/event-stream\r\n{resume}\r\n".encode()
        )
        status = await self.reader.readline()
        if int(status.split()[1]) != 200:
            raise RuntimeError(f"event stream refused: {status!r}")
        while (await self.reader.readline()) not in (b"\r\n", b""):
            pass
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.writer is not None:
            self.writer.close()

    def __aiter__(self) -> SseClient:
        return self

    async def __anext__(self) -> Message:
        """The next message. The body is chunked: size lines and chunk ends are skipped."""
        fields: dict[str, bytes] = {}
        while True:
            line = await self.reader.readline()
            if not line:
                raise StopAsyncIteration
            line = line.rstrip(b"\r\n")
            if not line:
                if fields:
                    return Message(
                        id=fields["id"].decode() if "id" in fields else None,
                        event=fields["event"].decode() if "event" in fields else None,
                        data=fields.get("data"),
                        received=time.time(),
                    )
                continue
            name, sep, value = line.partition(b":")
            if not sep:
                continue  # a chunk-size line of the chunked encoding
            if name:
                fields[name.decode()] = value[1:] if value.startswith(b" ") else value
