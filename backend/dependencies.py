"""Annotated dependency aliases: who is calling, may they use this path, and which database.

The FastAPI full-stack template's names, and what replaces each here:

- `SessionDep` (a session per request) -> `owner.database`, the app's one `Database`: every
  endpoint is one autocommitted statement, so there is no session to open, commit or close; each
  call borrows a pooled connection for that statement only.
- `TokenDep` + `CurrentUser` (a `User` row) -> `Owner`: the verified token's user id
  (`owner.user_id`), already checked against the path's `{user_id}`. Better Auth owns the users, so
  there is no user row to load.
- `session.exec(select(...))` -> `crud.get_task(owner.database, owner.user_id, task_id)` and its
  siblings: Core statements built once from the `Task` table, compiled once, run with bind
  parameters (`Database.fetch`), rows back as `TaskRow` dicts.
- `session.refresh(task)` -> `RETURNING`: a write answers with the row in the same round trip.

`TaskId` is a task id in the path (canonical decimal only).

Two dependency nodes per request, on purpose: `owned_path` and the `HTTPBearer` scheme it depends
on (kept so the OpenAPI security scheme and Swagger's Authorize button stay automatic). FastAPI's
resolution costs per node, so the checks the template chains as separate dependencies happen inside
`owned_path`, in the contract's order: 400 (two `Authorization` headers), 401 (no or bad token), 403
(someone else's path), and only then the database (the cost is in specs/decisions.md).
"""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from backend.auth.jwt import InvalidToken, TokenVerifier
from backend.db import Database
from backend.models import DECIMAL
from backend.security_log import security_event

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="BetterAuthJWT",
    description="A Better Auth JWT in exactly one `Authorization: Bearer` header: the jwt() plugin's "
    "token (identity `sub`), the `better-auth.session_data` cookie of `cookieCache` strategy "
    '"jwt" (identity `user.id`), or an HS256 token signed with the shared secret (identity `sub`, '
    "`user_id` or `id`). `exp` is required; the identity is 1..255 characters without control "
    "characters or '/'. Mint one for development with `python -m backend token <user_id>`.",
)

BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


async def verified_user(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str:
    """The user id of a valid `Authorization: Bearer` token; query strings and cookies are never read.

    `Authorization` is a singleton field (RFC 9110): with two, which one a proxy or the client
    meant is ambiguous, so the request is refused rather than the first one silently used.
    """
    if len(request.headers.getlist("authorization")) > 1:
        security_event(request, "bad_request", "more than one Authorization header")
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            detail="Send exactly one Authorization header",
            headers={"WWW-Authenticate": 'Bearer error="invalid_request"'},
        )
    if credentials is None:
        security_event(request, "authentication_failed", "missing bearer token")
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="Not authenticated",
            headers={"WWW-Authenticate": "Bearer"},
        )
    verifier: TokenVerifier = request.app.state.verifier
    try:
        return await verifier.user_id(credentials.credentials)
    except InvalidToken as exc:
        security_event(request, "authentication_failed", exc.reason)
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=exc.detail,
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        ) from None


@dataclass(frozen=True, slots=True)
class OwnedPath:
    """An /api/{user_id}/... request whose caller is that user, and the database to serve it from."""

    user_id: str
    database: Database


async def owned_path(
    request: Request,
    user_id: Annotated[
        str,
        Path(
            description="Must equal the token's user id exactly, percent-encoded as one path segment "
            "(UTF-8). A user id is 1..255 characters without control characters or '/'.",
        ),
    ],
    credentials: BearerCredentials,
) -> OwnedPath:
    caller = await verified_user(request, credentials)
    request.state.user_id = caller  # the access log's `user` (verified ids hold no control characters)
    if user_id != caller:
        security_event(request, "authorization_failed", "path user_id is not the token's user")
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="You may only access your own tasks")
    return OwnedPath(user_id, request.app.state.database)


Owner = Annotated[OwnedPath, Depends(owned_path)]
TaskId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The task's id, a decimal integer."), DECIMAL]
