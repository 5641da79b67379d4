"""Annotated dependency aliases: who is calling, may they use this path, and which database.

What the usual FastAPI names became here: the template's `TokenDep` + `CurrentUser` are the bearer
check inside `Owner` (`verified_user`), `SessionDep` is `Owner.database`, and the path's owner check
is `Owner` itself. `TaskId` is a path id.

One dependency per request on purpose: FastAPI's resolution costs tens of microseconds per
dependency node, and a chain of five (bearer, user, path owner, database, ...) measured ~85 us of a
~300 us request (see specs/decisions.md). `Owner` does all three checks in one node, in the
contract's order: 401 (no or bad token), then 403 (someone else's path), and only then the database.
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
