"""Annotated dependency aliases: who is calling, may they use this path, and a database connection."""

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


async def current_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> str:
    """The verified user id from `Authorization: Bearer`; query strings and cookies are never read."""
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


CurrentUser = Annotated[str, Depends(current_user)]


async def path_owner(
    request: Request,
    user_id: Annotated[str, Path(description="Must equal the token's user id.")],
    caller: CurrentUser,
) -> str:
    """The path's user id, once it is known to be the caller's own (before any database work)."""
    if user_id != caller:
        security_event(request, "authorization_failed", "path user_id is not the token's user")
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="You may only access your own tasks")
    return user_id


OwnerId = Annotated[str, Depends(path_owner)]


async def get_database(request: Request, _owner: OwnerId) -> Database:
    """The database, handed out only after the caller is authorised for the path (403 first).

    `async` on purpose: FastAPI runs plain `def` dependencies in a worker thread.
    """
    database: Database = request.app.state.database
    return database


DatabaseDep = Annotated[Database, Depends(get_database)]
TaskId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The task's id.")]
