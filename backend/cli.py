"""`python -m backend` (or `todo-api`): apply migrations, mint a development token, serve."""

import argparse
import asyncio
import sys
import time

import jwt

from backend.config import ConfigError, Settings, load_settings
from backend.logs import service_version


def mint_token(settings: Settings, user_id: str, ttl_seconds: int) -> str:
    """An HS256 token exactly like the frontend's, signed with the configured secret."""
    now = int(time.time())
    claims = {"sub": user_id, "iat": now, "exp": now + ttl_seconds}
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, settings.secret, algorithm="HS256")


def _migrate(settings: Settings) -> int:
    """Apply migrations; a database that cannot be used is one line naming the setting, not a traceback."""
    from backend.db import DatabaseUnavailable
    from backend.migrate import upgrade_database

    try:
        asyncio.run(upgrade_database(settings))
    except DatabaseUnavailable as problem:
        print(f"todo-api: {settings.database_setting}: {problem.cause}", file=sys.stderr)
        return 1
    print("Migrations applied.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend", description=__doc__)
    parser.add_argument("--version", action="version", version=f"todo-api {service_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply pending migrations to the configured database")
    token = commands.add_parser("token", help="print a development bearer token for a user id")
    token.add_argument("user_id")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    serve = commands.add_parser("serve", help="run the API with uvicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--reload", action="store_true")
    args = parser.parse_args(argv)

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"todo-api: {exc}", file=sys.stderr)
        return 2
    if args.command == "migrate":
        return _migrate(settings)
    if args.command == "token":
        from backend.auth.jwt import InvalidToken, check_user_id

        try:
            check_user_id(args.user_id)
        except InvalidToken as exc:
            print(f"todo-api: {exc.reason}: the API would refuse this user id", file=sys.stderr)
            return 2
        print(mint_token(settings, args.user_id, args.ttl))
    else:
        import uvicorn

        uvicorn.run("backend.main:app", host=args.host, port=args.port, reload=args.reload)
    return 0
