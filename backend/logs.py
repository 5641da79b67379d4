"""Logging: one handler for the service's and uvicorn's lines, as text or one JSON object per line.

Configured from `create_app`, because uvicorn, `fastapi run` and `python -m backend serve` all build
the app after setting up their own logging: whatever they installed, this is what the process
writes. Three guarantees hold for every record, whichever handler ends up writing it (pytest's
caplog included), because they are applied where records are made (a record factory), not where
they are formatted:

- inside a request, the record carries `request_id` (a context variable the edge middleware sets);
- query parameters named like credentials are `[filtered]` and control characters escaped in the
  message, so no client byte can start a new line or put a token in the log;
- a traceback keeps its frames but not the exception messages, which can hold SQL, parameters or
  tokens (drivers and libraries put them there); each exception is named by class and SQLSTATE.
"""

import logging
import re
import sys
import traceback
from collections.abc import Callable
from contextvars import ContextVar, Token
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote_plus

from pythonjsonlogger.json import JsonFormatter

if TYPE_CHECKING:
    from backend.config import Settings

LogFormat = Literal["text", "json"]

CREDENTIAL_PARAMETERS = frozenset({"access_token", "token", "jwt", "id_token", "auth"})
FILTERED = "[filtered]"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
# Loggers whose level LOG_LEVEL sets; everything else (SQLAlchemy, httpx, ...) stays at WARNING.
SERVICE_LOGGERS = ("backend", "uvicorn", "uvicorn.error", "uvicorn.asgi")

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
_CREDENTIAL_IN_TEXT = re.compile(
    rf"([?&](?:{'|'.join(sorted(CREDENTIAL_PARAMETERS))})=)[^&#\s\"']*", flags=re.IGNORECASE
)
# Unicode Cc (C0, DEL, C1) and the two Unicode line separators some log viewers split on.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_handler: logging.Handler | None = None
_escape_messages = True  # in text output; JSON output escapes control characters itself
_access_log_requested: bool | None = None


def bind_request_id(request_id: str) -> Token[str | None]:
    """Every record made until `reset_request_id` (in this task and the ones it starts) carries it."""
    return _request_id.set(request_id)


def reset_request_id(token: Token[str | None]) -> None:
    _request_id.reset(token)


def filter_query(query: str) -> str:
    """A query string with the values of credential-like parameters replaced by `[filtered]`."""
    parts = query.split("&")
    for index, part in enumerate(parts):
        name, equals, _ = part.partition("=")
        if equals and unquote_plus(name).lower() in CREDENTIAL_PARAMETERS:
            parts[index] = f"{name}={FILTERED}"
    return "&".join(parts)


def escape_controls(text: str) -> str:
    """`a\\nb` instead of a line break: what a client sent can never start a log line of its own."""
    return _CONTROL.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


def describe(exc: BaseException) -> str:
    """Name an error without its message: driver messages can carry SQL, parameters or hosts."""
    original = getattr(exc, "orig", None) or exc.__cause__
    if original is not None:
        sqlstate = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
        inner = type(original).__name__ + (f" sqlstate={sqlstate}" if sqlstate else "")
        return f"{type(exc).__name__} ({inner})"
    return type(exc).__name__


def redacted_traceback(exc: BaseException) -> str:
    """The frames of `exc` and of its causes, each exception named by class (and SQLSTATE) only."""
    chain: list[tuple[BaseException, str | None]] = []
    current: BaseException | None = exc
    seen: set[int] = set()
    link: str | None = None
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = current.__cause__, "The above exception was the direct cause of the following exception:"
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, "During handling of the above exception, another exception occurred:"
        else:
            current = None
    lines: list[str] = []
    for error, following in reversed(chain):
        lines.append("Traceback (most recent call last):\n")
        lines.extend(traceback.format_tb(error.__traceback__))
        lines.append(f"{type(error).__module__}.{describe(error)} (message withheld)\n")
        if following:
            lines.append(f"\n{following}\n\n")
    return "".join(lines).rstrip("\n")


def _sanitize(record: logging.LogRecord) -> None:
    request_id = _request_id.get()
    if request_id is not None:
        record.request_id = request_id
    if record.exc_info is not None and record.exc_info[1] is not None:
        record.exc_text = redacted_traceback(record.exc_info[1])
        record.exc_info = None
    try:
        message = record.getMessage()
    except (TypeError, ValueError):  # a bad format string: logging reports it when formatting
        return
    cleaned = _CREDENTIAL_IN_TEXT.sub(rf"\1{FILTERED}", message)
    if _escape_messages:
        cleaned = escape_controls(cleaned)
    if cleaned != message:
        record.msg, record.args = cleaned, None


def _make_factory(base: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base(*args, **kwargs)
        _sanitize(record)
        return record

    factory.sanitizes = True  # type: ignore[attr-defined]
    return factory


def install_record_factory() -> None:
    """Sanitize every record where it is made; installed once per process."""
    current = logging.getLogRecordFactory()
    if not getattr(current, "sanitizes", False):
        logging.setLogRecordFactory(_make_factory(current))


class _StderrHandler(logging.StreamHandler[Any]):
    """Writes to whatever `sys.stderr` is when a record arrives (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


def build_formatter(log_format: LogFormat) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",
            # uvicorn adds `color_message` (the message again, with ANSI colours) to its records.
            reserved_attrs=[*logging.LogRecord("", 0, "", 0, None, None, None).__dict__, "color_message", "message"],
        )
    return logging.Formatter(TEXT_FORMAT, defaults={"request_id": "-"})


def configure_logging(level: str, log_format: LogFormat) -> None:
    """Send the service's and uvicorn's records through one handler in `log_format`, at `level`.

    uvicorn's access log is switched off (the edge middleware writes a better one); whether ours is
    written follows uvicorn's own switch: `--no-access-log` turns both off.
    """
    global _handler, _access_log_requested, _escape_messages
    install_record_factory()
    _escape_messages = log_format == "text"
    access = logging.getLogger("uvicorn.access")
    if access.handlers or access.propagate:
        _access_log_requested = True  # uvicorn's default, or no uvicorn at all
    elif _access_log_requested is None:
        _access_log_requested = False  # uvicorn --no-access-log left it without handlers
    access.handlers, access.propagate = [], False
    logging.getLogger("backend.access").disabled = not _access_log_requested

    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = _StderrHandler()
    _handler.setFormatter(build_formatter(log_format))
    root.addHandler(_handler)
    numeric = logging.getLevelName(level.upper())
    for name in SERVICE_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers, logger.propagate, logger.disabled = [], True, False
        logger.setLevel(numeric)
    for name, existing in logging.Logger.manager.loggerDict.items():
        # A dictConfig with disable_existing_loggers (uvicorn --log-config) disables ours.
        if name.startswith("backend.") and isinstance(existing, logging.Logger) and name != "backend.access":
            existing.disabled = False


def service_version() -> str:
    try:
        return version("todo-api")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def log_startup_summary(settings: "Settings") -> None:
    """One INFO line an operator can check a deploy against; names where things are, never secrets."""
    secret = "generated development secret" if settings.better_auth_secret is None else "BETTER_AUTH_SECRET"
    fields: dict[str, Any] = {
        "version": service_version(),
        "environment": settings.environment,
        "database": settings.database.display,
        "pool_size": settings.db_pool_size,
        "pool_max_overflow": settings.db_max_overflow,
        "cors_origins": settings.allowed_origins,
        "token_kinds": [f"HS256 ({secret})", f"JWKS {settings.jwks_url}"],
        "docs": settings.docs_enabled,
        "metrics": settings.metrics_enabled,
        "log_format": settings.log_format,
    }
    logging.getLogger("backend.startup").info(
        "todo-api %s starting: environment=%s database=%s pool=%d+%d cors=%s tokens=%s docs=%s metrics=%s",
        fields["version"],
        settings.environment,
        fields["database"],
        settings.db_pool_size,
        settings.db_max_overflow,
        ",".join(settings.allowed_origins),
        ", ".join(fields["token_kinds"]),
        "on" if settings.docs_enabled else "off",
        "on" if settings.metrics_enabled else "off",
        extra=fields,
    )
