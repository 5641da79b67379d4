"""The Task model family: one table, and the input/output shapes clients may use."""

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StrictBool,
    StringConstraints,
)
from pydantic import Field as PydanticField
from pydantic_core import PydanticCustomError
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    Text,
    TypeDecorator,
    false,
)
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel
from sqlmodel._compat import SQLModelConfig

# Predictable constraint names, so Alembic migrations can name what they alter.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

TITLE_MAX = 200
DESCRIPTION_MAX = 1000


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """timestamptz on PostgreSQL; on SQLite, which drops the offset, reads come back as UTC again."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class PlainBoolean(TypeDecorator[bool]):
    """BOOLEAN, with values handed to the driver as they are.

    SQLAlchemy's Boolean checks and coerces values in a bind processor, which the asyncpg path in
    `db.py` never runs (it compiles once and skips SQLAlchemy's bind processing); a type whose bind
    processing is skipped would behave differently on the two backends. Values are already `bool`
    (pydantic's StrictBool), and both drivers take a `bool` as it is.
    """

    impl = Boolean
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> None:
        return None


def _storable(value: str) -> str:
    """PostgreSQL text cannot hold NUL, and UTF-8 cannot hold lone surrogates: refuse both up front."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


# The OpenAPI states the rules `_storable` and the trimming enforce, as JSON Schema patterns, so a
# schema-valid request is never refused (schemathesis checks both directions). The whitespace class
# is Unicode White_Space, exactly what pydantic's strip_whitespace (Rust `str::trim`) removes.
_WHITE_SPACE = "\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
NO_NUL_PATTERN = "^[^\\u0000]*$"
TITLE_PATTERN = f"^[^\\u0000]*[^\\u0000{_WHITE_SPACE}][^\\u0000]*$"

Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=TITLE_MAX),
    AfterValidator(_storable),
    PydanticField(description="Trimmed, then 1..200 characters; no NUL.", json_schema_extra={"pattern": TITLE_PATTERN}),
]
Description = Annotated[
    str,
    StringConstraints(max_length=DESCRIPTION_MAX),
    AfterValidator(_storable),
    PydanticField(description="At most 1000 characters; no NUL.", json_schema_extra={"pattern": NO_NUL_PATTERN}),
]

_CANONICAL_INTEGER = re.compile(r"0|-?[1-9][0-9]{0,39}")


def _canonical_integer(value: object) -> object:
    """Path and query integers are written one way only: no sign, spaces, "_", ".0" or leading zeros."""
    if isinstance(value, str) and not _CANONICAL_INTEGER.fullmatch(value):
        raise PydanticCustomError("int_parsing", "Input should be a decimal integer")
    return value


# For integers in a path or query string: `Annotated[int, <constraints>, DECIMAL]`. The constraints
# go first: after a before-validator, pydantic writes `ge`/`le` into the JSON schema verbatim
# instead of `minimum`/`maximum`.
DECIMAL = BeforeValidator(_canonical_integer)


class Task(SQLModel, table=True):
    """The one definition of the table; clients reach it only through the models below."""

    __tablename__ = "task"
    __table_args__ = (Index("ix_task_user_id_created_at", "user_id", "created_at"),)

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer(), "sqlite"), Identity(), primary_key=True),
    )
    # Indexed by ix_task_user_id_created_at, whose first column it is: no index of its own.
    user_id: str = Field(sa_column=Column(Text(), nullable=False))
    title: str = Field(max_length=TITLE_MAX)
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX)
    completed: bool = Field(default=False, sa_type=PlainBoolean, sa_column_kwargs={"server_default": false()})
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class TaskCreate(SQLModel):
    """What a client may send to create a task; unknown fields (id, user_id, timestamps) are ignored."""

    model_config = SQLModelConfig(extra="ignore")

    title: Title
    description: Description | None = None
    completed: StrictBool = False


def _unset() -> Any:
    """The value of a field the client did not send; `fields_sent()` leaves it out."""
    return None


class TaskUpdate(SQLModel):
    """A partial update: only the fields present are changed.

    `title` and `completed` are typed without `None` (a null is refused like any other wrong type,
    with one clean error) and default to an unset None that `fields_sent()` never reports.
    """

    model_config = SQLModelConfig(extra="ignore")

    title: Title = PydanticField(default_factory=_unset)
    description: Description | None = None
    completed: StrictBool = PydanticField(default_factory=_unset)

    def fields_sent(self) -> frozenset[str]:
        """The fields the client sent (a `description` sent as null included): the ones to change."""
        return frozenset(self.model_fields_set)


class TaskCompletion(SQLModel):
    """Optional body of the toggle endpoint: set completion explicitly instead of flipping it."""

    completed: StrictBool


class TaskRead(BaseModel):
    """A task as clients see it; timestamps are ISO 8601 in UTC.

    A plain pydantic model (not SQLModel): it is built from database rows on every response, and
    pydantic-core does that natively where SQLModel's validation runs in Python.
    """

    model_config = ConfigDict(from_attributes=True)

    id: int
    user_id: str
    title: str
    description: str | None
    completed: bool
    created_at: datetime
    updated_at: datetime


class ErrorDetail(SQLModel):
    """Every error body: a human-readable reason the frontend can show."""

    detail: str
