"""A delay proxy between an app and PostgreSQL: adds a round-trip time and counts round trips.

The benchmark's network mode (bench/README.md) puts one of these between each app and PostgreSQL,
because on Neon every round trip crosses a network (1-2 ms in region) and on loopback it costs
almost nothing: a request that talks to the database twice looks as fast as one that talks once.

Delay: every chunk the client sends is forwarded `rtt` later (the whole round trip on the way in;
replies go straight back), in order. Timers have about 1 ms granularity, so the delay actually
added is measured per chunk and reported next to the nominal one.

Round trips are counted exactly, per listener: a round trip is a burst of client bytes that the
server answers, counted when the first reply byte arrives after client data (so a pipelined
Parse/Bind/Execute/Sync is one, a Parse/Describe/Flush followed by a Bind/Execute/Sync is two). As a
protocol-level cross-check the proxy also counts the frontend messages that make the server deliver
its output: Sync, Flush and Query (asyncpg ends a prepare with Flush, not Sync, so Sync alone would
miss it). Connection startup is a round trip too (with trust auth, one per new connection).

SSLRequest and GSSENCRequest are answered "N" by the proxy itself, so the stream stays readable.

`python -m bench.proxy --upstream 127.0.0.1:5432 --listen service --listen limit --rtt-ms 2` prints
one JSON line with the listening ports and a control port; a control connection that sends `stats`
gets one JSON line of counters per listener back.
"""

import argparse
import asyncio
import contextlib
import json
import struct
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, cast

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104
_ANSWERED = frozenset(b"SHQ")  # Sync, Flush, Query: the server answers what came before
_EARLY = 0.0001  # a timer that fires this close to its deadline may flush


@dataclass
class Counters:
    """What one listener saw since it started (monotonic; callers take differences)."""

    connections: int = 0
    round_trips: int = 0
    answered_messages: int = 0
    delayed_chunks: int = 0
    delay_seconds: float = 0.0


class _FrontendReader:
    """Walks the client's byte stream message by message, without buffering message bodies.

    Startup-phase messages are untyped (length, code); every later one is a type byte plus a
    length that includes itself.
    """

    def __init__(self) -> None:
        self.started = False
        self._header = bytearray()
        self._skip = 0

    def feed(self, data: bytes, on_type: Any, on_encryption_request: Any) -> bytes:
        """Returns what to forward (everything but SSL/GSSENC requests, which are answered here)."""
        forward = bytearray()
        view = memoryview(data)
        while view:
            if self._skip:
                step = min(self._skip, len(view))
                forward += view[:step]
                self._skip -= step
                view = view[step:]
                continue
            need = (5 if self.started else 8) - len(self._header)
            take = bytes(view[:need])
            self._header += take
            view = view[len(take) :]
            if len(self._header) < (5 if self.started else 8):
                continue
            header, self._header = bytes(self._header), bytearray()
            if self.started:
                on_type(header[0])
                forward += header
                self._skip = struct.unpack("!I", header[1:5])[0] - 4
                continue
            length, code = struct.unpack("!II", header)
            if code in (_SSL_REQUEST, _GSSENC_REQUEST):
                on_encryption_request()
                continue
            forward += header
            self._skip = length - 8
            self.started = True
        return bytes(forward)


class _Link:
    """One client connection and its upstream connection."""

    def __init__(self, proxy: "DelayProxy", counters: Counters) -> None:
        self.proxy = proxy
        self.counters = counters
        self.client: asyncio.Transport | None = None
        self.server: asyncio.Transport | None = None
        self.reader = _FrontendReader()
        self.pending: deque[tuple[float, bytes]] = deque()
        self.early: list[bytes] = []  # client bytes that arrive before the upstream is connected
        self.timer: asyncio.TimerHandle | None = None
        self.client_spoke = False

    # client -> proxy -------------------------------------------------------------------------

    def from_client(self, data: bytes) -> None:
        forward = self.reader.feed(data, self._count_message, self._refuse_encryption)
        if forward:
            self.client_spoke = True
            self.pending.append((time.monotonic() + self.proxy.rtt, forward))
            if self.timer is None:
                self._flush()

    def _count_message(self, message_type: int) -> None:
        if message_type in _ANSWERED:
            self.counters.answered_messages += 1

    def _refuse_encryption(self) -> None:
        if self.client is not None:
            self.client.write(b"N")

    def _flush(self) -> None:
        """Forward every chunk whose delay is over, in order; re-arm for the next one."""
        self.timer = None
        now = time.monotonic()
        while self.pending and self.pending[0][0] <= now + _EARLY:
            deadline, data = self.pending.popleft()
            self.counters.delayed_chunks += 1
            self.counters.delay_seconds += now - deadline + self.proxy.rtt
            if self.server is None:
                self.early.append(data)
            else:
                self.server.write(data)
        if self.pending:
            self.timer = asyncio.get_running_loop().call_later(self.pending[0][0] - now, self._flush)

    # server -> proxy -------------------------------------------------------------------------

    def from_server(self, data: bytes) -> None:
        if self.client_spoke:
            self.client_spoke = False
            self.counters.round_trips += 1
        if self.client is not None:
            self.client.write(data)

    def upstream_ready(self, transport: asyncio.Transport) -> None:
        self.server = transport
        for data in self.early:
            transport.write(data)
        self.early.clear()

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for transport in (self.client, self.server):
            if transport is not None:
                transport.close()


class _ClientSide(asyncio.Protocol):
    def __init__(self, link: _Link) -> None:
        self.link = link

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.link.client = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        self.link.counters.connections += 1
        asyncio.get_running_loop().create_task(self.link.proxy.connect_upstream(self.link))

    def data_received(self, data: bytes) -> None:
        self.link.from_client(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.link.close()


class _ServerSide(asyncio.Protocol):
    def __init__(self, link: _Link) -> None:
        self.link = link

    def data_received(self, data: bytes) -> None:
        self.link.from_server(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.link.close()


class DelayProxy:
    """Named loopback listeners, each forwarding to the same PostgreSQL with `rtt_ms` added."""

    def __init__(self, upstream_host: str, upstream_port: int, rtt_ms: float) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.rtt = rtt_ms / 1000
        self.counters: dict[str, Counters] = {}
        self.ports: dict[str, int] = {}
        self._servers: list[asyncio.Server] = []

    async def listen(self, name: str, port: int = 0) -> int:
        counters = self.counters.setdefault(name, Counters())
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _ClientSide(_Link(self, counters)), "127.0.0.1", port)
        self._servers.append(server)
        self.ports[name] = int(server.sockets[0].getsockname()[1])
        return self.ports[name]

    async def connect_upstream(self, link: _Link) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_connection(lambda: _ServerSide(link), *self.upstream)
        except OSError:
            link.close()
            return
        link.upstream_ready(transport)

    def stats(self) -> dict[str, dict[str, Any]]:
        return {name: asdict(counters) for name, counters in self.counters.items()}

    async def close(self) -> None:
        for server in self._servers:
            server.close()
            await server.wait_closed()


async def read_stats(port: int) -> dict[str, dict[str, Any]]:
    """The counters of a proxy process, through its control port."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"stats\n")
        await writer.drain()
        data: dict[str, dict[str, Any]] = json.loads(await asyncio.wait_for(reader.readline(), timeout=10))
        return data
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _serve(args: argparse.Namespace) -> None:
    host, _, port = args.upstream.rpartition(":")
    proxy = DelayProxy(host, int(port), args.rtt_ms)
    for name in args.listen:
        await proxy.listen(name)

    async def control(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            if line.strip() == b"stats":
                writer.write(json.dumps(proxy.stats()).encode() + b"\n")
                await writer.drain()
        writer.close()

    control_server = await asyncio.start_server(control, "127.0.0.1", 0)
    control_port = int(control_server.sockets[0].getsockname()[1])
    print(json.dumps({"listen": proxy.ports, "control": control_port, "rtt_ms": args.rtt_ms}), flush=True)
    async with control_server:
        await control_server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.proxy", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--upstream", required=True, help="PostgreSQL's HOST:PORT")
    parser.add_argument("--listen", action="append", required=True, help="a listener's name (repeatable)")
    parser.add_argument("--rtt-ms", type=float, default=2.0, help="round-trip time to add (default 2 ms)")
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        asyncio.run(_serve(args))
    else:
        uvloop.run(_serve(args))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
    sys.exit(0)
