"""Annotated dependency aliases: who is calling, may they use this path, and which database.

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
from backend.security_log import security_event

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="BetterAuthJWT",
    description="A Better Auth JWT (HS256 with the shared secret, or the jwt() plugin's token). "
    "Mint one for development with `python -m backend token <user_id>`.",
)

BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


async def verified_user(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str:
    """The user id of a valid `Authorization: Bearer` token; query strings and cookies are never read."""
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
    user_id: Annotated[str, Path(description="Must equal the token's user id.")],
    credentials: BearerCredentials,
) -> OwnedPath:
    caller = await verified_user(request, credentials)
    if user_id != caller:
        security_event(request, "authorization_failed", "path user_id is not the token's user")
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="You may only access your own tasks")
    return OwnedPath(user_id, request.app.state.database)


Owner = Annotated[OwnedPath, Depends(owned_path)]
TaskId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The task's id.")]
