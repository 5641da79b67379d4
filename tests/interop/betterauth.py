"""A real Better Auth server (Node, ``tests/interop/betterauth/server.mjs``) for interop tests.

Usage::

    async with better_auth_server(alg="ES256") as ba:
        issued = await ba.issue_token()          # sign up + GET /api/auth/token
        jwks = await ba.jwks()                   # GET /api/auth/jwks
        rotated = await ba.rotate_key()          # POST /test/rotate-key

``better_auth_server`` runs ``npm ci`` once when ``node_modules`` is missing or stale, starts the
server on a free loopback port with a fresh SQLite file, waits for its ``READY <port>`` line and
stops it afterwards. Tokens carry ``iss == aud == base_url``. See ``betterauth/README.md``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

import anyio
import anyio.abc
import anyio.to_thread
import httpx

from tests.support._proc import run_captured

SERVER_DIR = Path(__file__).resolve().parent / "betterauth"
SERVER_SCRIPT = SERVER_DIR / "server.mjs"
NODE_MODULES = SERVER_DIR / "node_modules"
_INSTALL_STAMP = NODE_MODULES / ".todo-api-package-lock.sha256"

Alg = Literal["EdDSA", "ES256", "RS256", "PS256", "ES512"]
CookieCache = Literal["jwt", "compact", "jwe"]
Via = Literal["cookie", "bearer"]

DEFAULT_PASSWORD = "correct-horse-battery-staple"
DEFAULT_SECRET = "todo-api-interop-better-auth-secret-0123456789abcdef"
NPM_CI_TIMEOUT = 900.0
STARTUP_TIMEOUT = 60.0
_READY = re.compile(r"^READY (\d+)$", re.MULTILINE)


class BetterAuthUnavailableError(RuntimeError):
    """Node or npm is missing, so the real Better Auth server cannot run here."""


class BetterAuthError(RuntimeError):
    """The Better Auth server failed to start, or answered a request with an unexpected status."""


@dataclass(frozen=True)
class SessionUser:
    """A Better Auth user with a live session."""

    user_id: str
    email: str
    password: str
    session_token: str
    """The signed session token (``set-auth-token`` header); send as ``Authorization: Bearer``."""
    session_cookie: str
    """A ready ``Cookie`` header value (``better-auth.session_token=...``)."""
    session_data: str | None = None
    """The ``better-auth.session_data`` cookie's value (the session cookie cache), when enabled:
    with ``cookie_cache="jwt"`` an HS256 JWT signed with the server's secret."""


@dataclass(frozen=True)
class IssuedToken:
    """A JWT issued by Better Auth and the id of the user it was issued to (its ``sub``)."""

    token: str
    user_id: str


@dataclass(frozen=True)
class RotatedKey:
    kid: str
    alg: str
    previous_kids: tuple[str, ...]


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise BetterAuthUnavailableError(f"`{tool}` is not on PATH; the Better Auth interop server needs Node >= 20")
    return path


def _lock_digest() -> str:
    return hashlib.sha256((SERVER_DIR / "package-lock.json").read_bytes()).hexdigest()


def node_modules_ready() -> bool:
    """True when ``npm ci`` already ran for the current ``package-lock.json``."""
    try:
        return _INSTALL_STAMP.read_text().strip() == _lock_digest()
    except FileNotFoundError:
        return False


def _lock_path() -> Path:
    key = hashlib.sha256(str(SERVER_DIR).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"todo-api-betterauth-{key}.lock"


def _install_locked() -> None:
    """Blocking: run ``npm ci`` under an exclusive file lock (safe across processes and tasks)."""
    npm = _require("npm")
    node = Path(_require("node")).resolve()
    env = dict(os.environ)
    # better-sqlite3 is compiled by node-gyp (its prebuilt download is unreachable here); point
    # node-gyp at the installed Node headers so it does not try to download them either.
    prefix = node.parent.parent
    if "npm_config_nodedir" not in env and (prefix / "include" / "node" / "node.h").is_file():
        env["npm_config_nodedir"] = str(prefix)
    with _lock_path().open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if node_modules_ready():
                return
            result = run_captured(
                [npm, "ci", "--no-audit", "--no-fund"], cwd=SERVER_DIR, env=env, timeout=NPM_CI_TIMEOUT
            )
            if result.returncode != 0:
                raise BetterAuthError(
                    f"`npm ci` in {SERVER_DIR} failed with exit code {result.returncode}:\n"
                    f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
                )
            _INSTALL_STAMP.write_text(_lock_digest() + "\n")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


async def ensure_node_modules() -> None:
    """Run ``npm ci`` once if ``node_modules`` is missing or was installed from another lockfile."""
    if not node_modules_ready():
        await anyio.to_thread.run_sync(_install_locked)


def _set_cookie_pairs(response: httpx.Response) -> dict[str, str]:
    """``name -> raw value`` of every Set-Cookie header (values kept URL-encoded, as sent)."""
    pairs: dict[str, str] = {}
    for header in response.headers.get_list("set-cookie"):
        name, _, rest = header.partition("=")
        pairs[name.strip()] = rest.split(";", 1)[0]
    return pairs


class BetterAuthServer:
    """A running Better Auth server plus typed helpers for its HTTP API.

    The helper client never stores cookies: every call states its credentials explicitly, so
    several users can be used side by side.
    """

    def __init__(self, *, base_url: str, alg: str, db_path: Path, log_path: Path, client: httpx.AsyncClient) -> None:
        self.base_url = base_url
        self.alg = alg
        self.db_path = db_path
        self.log_path = log_path
        self.client = client

    @property
    def port(self) -> int:
        return httpx.URL(self.base_url).port or 80

    @property
    def issuer(self) -> str:
        return self.base_url

    @property
    def audience(self) -> str:
        return self.base_url

    @property
    def jwks_url(self) -> str:
        return f"{self.base_url}/api/auth/jwks"

    def log(self) -> str:
        """Everything the Node process printed so far (stdout and stderr)."""
        return _read_log(self.log_path)

    # -- raw requests -------------------------------------------------------------------------

    def _credentials(self, user: SessionUser, via: Via) -> dict[str, str]:
        if via == "cookie":
            return {"cookie": user.session_cookie}
        return {"authorization": f"Bearer {user.session_token}"}

    async def _post_json(
        self, path: str, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        # Better Auth validates Origin on cookie-carrying POSTs (and whenever Origin/Sec-Fetch-* is
        # present); the server's own base URL is always a trusted origin, so send it every time.
        all_headers = {"origin": self.base_url, **(headers or {})}
        return await self.client.post(f"{self.base_url}{path}", json=dict(body), headers=all_headers)

    @staticmethod
    def _expect(response: httpx.Response, what: str) -> None:
        if response.status_code != 200:
            raise BetterAuthError(f"{what}: HTTP {response.status_code}: {response.text[:500]}")

    def _session_user(self, response: httpx.Response, email: str, password: str, what: str) -> SessionUser:
        self._expect(response, what)
        body = response.json()
        cookies = _set_cookie_pairs(response)
        cookie_name = next((name for name in cookies if name.endswith("better-auth.session_token")), None)
        bearer = response.headers.get("set-auth-token")
        if cookie_name is None or not bearer:
            raise BetterAuthError(f"{what}: no session cookie / set-auth-token in the response")
        data_name = next((name for name in cookies if name.endswith("better-auth.session_data")), None)
        return SessionUser(
            user_id=str(body["user"]["id"]),
            email=email,
            password=password,
            session_token=bearer,
            session_cookie=f"{cookie_name}={cookies[cookie_name]}",
            session_data=unquote(cookies[data_name]) if data_name else None,
        )

    # -- users and sessions -------------------------------------------------------------------

    async def sign_up(
        self, *, email: str | None = None, password: str = DEFAULT_PASSWORD, name: str = "Interop User"
    ) -> SessionUser:
        """``POST /api/auth/sign-up/email`` (auto sign-in): a new user with a live session."""
        email = email or f"user-{uuid.uuid4().hex}@example.com"
        response = await self._post_json(
            "/api/auth/sign-up/email", {"email": email, "password": password, "name": name}
        )
        return self._session_user(response, email, password, "sign-up")

    async def sign_in(self, email: str, password: str = DEFAULT_PASSWORD) -> SessionUser:
        """``POST /api/auth/sign-in/email``: a new session for an existing user."""
        response = await self._post_json("/api/auth/sign-in/email", {"email": email, "password": password})
        return self._session_user(response, email, password, "sign-in")

    async def sign_out(self, user: SessionUser) -> None:
        """``POST /api/auth/sign-out``: revokes the session (already issued JWTs stay valid)."""
        response = await self._post_json("/api/auth/sign-out", {}, self._credentials(user, "cookie"))
        self._expect(response, "sign-out")

    # -- JWTs ---------------------------------------------------------------------------------

    async def token(self, user: SessionUser, *, via: Via = "cookie") -> IssuedToken:
        """A JWT from ``GET /api/auth/token`` (JSON body ``{"token": ...}``)."""
        response = await self.client.get(f"{self.base_url}/api/auth/token", headers=self._credentials(user, via))
        self._expect(response, "GET /api/auth/token")
        return IssuedToken(token=str(response.json()["token"]), user_id=user.user_id)

    async def session_jwt(self, user: SessionUser, *, via: Via = "cookie") -> IssuedToken:
        """A JWT from the ``set-auth-jwt`` response header of ``GET /api/auth/get-session``."""
        response = await self.client.get(f"{self.base_url}/api/auth/get-session", headers=self._credentials(user, via))
        self._expect(response, "GET /api/auth/get-session")
        token = response.headers.get("set-auth-jwt")
        if not token:
            raise BetterAuthError("GET /api/auth/get-session: no set-auth-jwt header (session not found?)")
        return IssuedToken(token=token, user_id=user.user_id)

    async def issue_token(
        self, *, source: Literal["token", "get-session"] = "token", via: Via = "cookie"
    ) -> IssuedToken:
        """Sign a fresh user up and get a JWT for them."""
        user = await self.sign_up()
        if source == "token":
            return await self.token(user, via=via)
        return await self.session_jwt(user, via=via)

    # -- keys ---------------------------------------------------------------------------------

    async def jwks(self) -> dict[str, Any]:
        """``GET /api/auth/jwks`` as a dict (``{"keys": [...]}``)."""
        response = await self.client.get(self.jwks_url)
        self._expect(response, "GET /api/auth/jwks")
        data: dict[str, Any] = response.json()
        return data

    async def keys(self) -> list[dict[str, Any]]:
        """Test route: every stored key (kid, alg, createdAt, expiresAt), oldest first."""
        response = await self.client.get(f"{self.base_url}/test/keys")
        self._expect(response, "GET /test/keys")
        keys: list[dict[str, Any]] = response.json()["keys"]
        return keys

    async def rotate_key(self) -> RotatedKey:
        """Test route: add a new signing key. New JWTs use its kid; the JWKS keeps listing old keys."""
        response = await self._post_json("/test/rotate-key", {})
        self._expect(response, "POST /test/rotate-key")
        body = response.json()
        return RotatedKey(kid=str(body["kid"]), alg=str(body["alg"]), previous_kids=tuple(body["previousKids"]))

    async def delete_key(self, kid: str) -> None:
        """Test route: remove a key from the database, so it disappears from the JWKS."""
        response = await self._post_json("/test/delete-key", {"kid": kid})
        self._expect(response, "POST /test/delete-key")


def _read_log(log_path: Path) -> str:
    return log_path.read_text(errors="replace")


async def _wait_ready(process: anyio.abc.Process, log_path: Path) -> int:
    """Poll the server's log for its ``READY <port>`` line; the caller bounds the wait."""
    while True:
        match = _READY.search(_read_log(log_path))
        if match:
            return int(match.group(1))
        if process.returncode is not None:
            raise BetterAuthError(
                f"Better Auth server exited with code {process.returncode} before READY:\n{_read_log(log_path)[-4000:]}"
            )
        await anyio.sleep(0.05)


async def _stop(process: anyio.abc.Process) -> None:
    with anyio.CancelScope(shield=True):
        if process.returncode is None:
            process.terminate()
            with anyio.move_on_after(5):
                await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()


@asynccontextmanager
async def better_auth_server(
    alg: Alg = "EdDSA",
    *,
    secret: str = DEFAULT_SECRET,
    jwt_expiration: str | None = None,
    rotation_interval: int | None = None,
    grace_period: int | None = None,
    cookie_cache: CookieCache | None = None,
    cookie_cache_max_age: int | None = None,
    startup_timeout: float = STARTUP_TIMEOUT,
) -> AsyncIterator[BetterAuthServer]:
    """Run a real Better Auth server (email+password, ``jwt()`` and ``bearer()`` plugins).

    ``jwt_expiration`` is Better Auth's ``expirationTime`` (default ``"15m"``, e.g. ``"2s"``);
    ``rotation_interval``/``grace_period`` (seconds) switch on Better Auth's own time-based
    key rotation. ``cookie_cache`` turns on ``session.cookieCache`` with that strategy (``"jwt"``:
    the ``better-auth.session_data`` cookie, :attr:`SessionUser.session_data`, is an HS256 JWT
    signed with ``secret``). Raises :class:`BetterAuthUnavailableError` when Node/npm are missing.
    """
    node = _require("node")
    await ensure_node_modules()
    workdir = Path(tempfile.mkdtemp(prefix="todo-api-betterauth-"))
    db_path = workdir / "auth.sqlite"
    log_path = workdir / "server.log"
    env = {key: value for key, value in os.environ.items() if key not in {"TEST", "BASE_URL", "NODE_OPTIONS"}}
    env.update(
        {
            "PORT": "0",
            "DB_PATH": str(db_path),
            "JWT_ALG": alg,
            "BETTER_AUTH_SECRET": secret,
            "NODE_ENV": "development",
        }
    )
    for name, value in (
        ("JWT_EXPIRATION", jwt_expiration),
        ("JWKS_ROTATION_INTERVAL", rotation_interval),
        ("JWKS_GRACE_PERIOD", grace_period),
        ("COOKIE_CACHE_STRATEGY", cookie_cache),
        ("COOKIE_CACHE_MAX_AGE", cookie_cache_max_age),
    ):
        if value is not None:
            env[name] = str(value)
        else:
            env.pop(name, None)
    try:
        with log_path.open("wb") as log:
            process = await anyio.open_process(
                [node, str(SERVER_SCRIPT)], cwd=SERVER_DIR, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        try:
            try:
                with anyio.fail_after(startup_timeout):
                    port = await _wait_ready(process, log_path)
            except TimeoutError:
                raise BetterAuthError(
                    f"Better Auth server not READY after {startup_timeout}s:\n{_read_log(log_path)[-4000:]}"
                ) from None
            base_url = f"http://127.0.0.1:{port}"
            cookie_jar = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))  # never store cookies
            async with httpx.AsyncClient(cookies=cookie_jar, timeout=30.0, trust_env=False) as client:
                yield BetterAuthServer(base_url=base_url, alg=alg, db_path=db_path, log_path=log_path, client=client)
        finally:
            await _stop(process)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
