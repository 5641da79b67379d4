"""Tiny synchronous simple-query client for the PostgreSQL wire protocol.

PgBouncer's admin console only speaks the simple query protocol, which
asyncpg cannot use for row-returning commands; this also lets sync fixtures
run setup SQL without an event loop or a psql binary.  Trust auth only.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path

Row = dict[str, str | None]
_PROTOCOL_3 = 196608


class PgWireError(RuntimeError):
    """Server-reported error, with its SQLSTATE."""

    def __init__(self, fields: dict[str, str]) -> None:
        self.sqlstate = fields.get("C", "")
        self.fields = fields
        super().__init__(f"{fields.get('S', 'ERROR')} {self.sqlstate}: {fields.get('M', '')}")


@dataclass
class _Result:
    """Rows of the last row-returning statement of a simple query."""

    columns: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    error: PgWireError | None = None


def simple_query(
    sql: str,
    *,
    host: str,
    port: int,
    user: str = "postgres",
    database: str = "postgres",
    timeout: float = 10.0,
) -> list[Row]:
    """Run `sql` (may hold several statements); return the last result's rows.

    `host` starting with "/" is a unix-socket directory, as in libpq.
    """
    with _connect(host, port, timeout) as sock:
        _startup(sock, user, database)
        _send(sock, b"Q", sql.encode() + b"\0")
        result = _collect(sock)
        _send(sock, b"X", b"")
    if result.error is not None:
        raise result.error
    return result.rows


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    """Open a TCP or unix-domain socket with an overall I/O timeout."""
    if host.startswith("/"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(str(Path(host) / f".s.PGSQL.{port}"))
        except BaseException:
            sock.close()
            raise
        return sock
    return socket.create_connection((host, port), timeout=timeout)


def _startup(sock: socket.socket, user: str, database: str) -> None:
    """Send StartupMessage and read until ReadyForQuery."""
    params = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in (("user", user), ("database", database)))
    body = struct.pack("!i", _PROTOCOL_3) + params + b"\0"
    sock.sendall(struct.pack("!i", len(body) + 4) + body)
    while True:
        kind, payload = _read(sock)
        if kind == b"R":
            _check_auth(payload)
        elif kind == b"E":
            raise PgWireError(_error_fields(payload))
        elif kind == b"Z":
            return


def _check_auth(payload: bytes) -> None:
    """Accept AuthenticationOk only: this client has no password support."""
    (code,) = struct.unpack("!i", payload[:4])
    if code != 0:
        raise RuntimeError(f"server asked for authentication method {code}; only trust is supported")


def _collect(sock: socket.socket) -> _Result:
    """Read one simple-query response cycle up to ReadyForQuery."""
    result = _Result()
    while True:
        kind, payload = _read(sock)
        if kind == b"T":
            result.columns, result.rows = _row_description(payload), []
        elif kind == b"D":
            result.rows.append(dict(zip(result.columns, _data_row(payload), strict=True)))
        elif kind == b"E":
            result.error = PgWireError(_error_fields(payload))
        elif kind == b"Z":
            return result


def _row_description(payload: bytes) -> list[str]:
    """Column names from a RowDescription message."""
    (count,) = struct.unpack_from("!h", payload, 0)
    pos, names = 2, []
    for _ in range(count):
        end = payload.index(b"\0", pos)
        names.append(payload[pos:end].decode())
        pos = end + 1 + 18  # table oid, attnum, type oid, typlen, typmod, format
    return names


def _data_row(payload: bytes) -> list[str | None]:
    """Text values from a DataRow message (None for SQL NULL)."""
    (count,) = struct.unpack_from("!h", payload, 0)
    pos = 2
    values: list[str | None] = []
    for _ in range(count):
        (size,) = struct.unpack_from("!i", payload, pos)
        pos += 4
        if size < 0:
            values.append(None)
            continue
        values.append(payload[pos : pos + size].decode())
        pos += size
    return values


def _error_fields(payload: bytes) -> dict[str, str]:
    """Field code -> text from an ErrorResponse."""
    fields: dict[str, str] = {}
    for part in payload.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode(errors="replace")
    return fields


def _send(sock: socket.socket, kind: bytes, body: bytes) -> None:
    """Write one frontend message."""
    sock.sendall(kind + struct.pack("!i", len(body) + 4) + body)


def _read(sock: socket.socket) -> tuple[bytes, bytes]:
    """Read one backend message as (type byte, payload)."""
    header = _read_exact(sock, 5)
    (size,) = struct.unpack("!i", header[1:])
    return header[:1], _read_exact(sock, size - 4)


def _read_exact(sock: socket.socket, size: int) -> bytes:
    """Read exactly `size` bytes or fail on a closed connection."""
    chunks, remaining = [], size
    while remaining:
        chunk = sock.recv(remaining)
        if not chunk:
            raise ConnectionError("server closed the connection")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
