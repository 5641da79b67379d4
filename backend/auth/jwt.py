"""Verify Better Auth tokens: HS256 with the shared secret, or the JWT plugin's keys from its JWKS.

The token's header picks the path (never trial and error), so an HS256 token is never checked
against a public key and an asymmetric token never against the secret.
"""

import asyncio
import logging
import math
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

log = logging.getLogger("backend.auth")

HS256 = "HS256"
# What Better Auth's jwt() plugin can sign with; everything else (none, HS384, ...) is refused.
JWKS_ALGORITHMS = frozenset({"EdDSA", "ES256", "ES512", "RS256", "PS256"})
MAX_TOKEN_LENGTH = 8 * 1024
MAX_USER_ID_LENGTH = 255
HS256_IDENTITY_CLAIMS = ("sub", "user_id", "id")
# NumericDate claims must be JSON numbers between the epoch and the end of year 9999: anything else
# (strings, booleans, 1e400, 10**400) is a malformed token, never a crash or a token valid forever.
TIME_CLAIMS = ("exp", "nbf", "iat")
MAX_NUMERIC_DATE = 253_402_300_799
# An identity must be usable as one URL path segment and as one log field: no control characters
# (Unicode Cc: NUL, CR, LF, TAB, ESC, DEL, C1), no lone surrogates (not UTF-8), no "/" (a path
# separator even when percent-encoded, since servers decode %2F before routing).
_UNADDRESSABLE = re.compile("[\x00-\x1f\x7f-\x9f/\ud800-\udfff]")


class InvalidToken(Exception):
    """The token was refused. `detail` is safe to show the client; `reason` is for the log only."""

    def __init__(self, reason: str, detail: str = "Invalid token") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class JWKSCache:
    """Better Auth's public keys by kid: fetched asynchronously, cached, refetched sparingly.

    An unknown kid triggers at most one fetch per cooldown, so a flood of forged kids cannot turn
    into a flood of requests to the auth server; a failed fetch keeps the last good keys.
    """

    def __init__(
        self,
        url: str,
        *,
        cache_seconds: float,
        cooldown_seconds: float,
        timeout_seconds: float,
    ) -> None:
        self.url = url
        self._cache_seconds = cache_seconds
        self._cooldown_seconds = cooldown_seconds
        self._timeout_seconds = timeout_seconds
        self._keys: dict[str, dict[str, Any]] = {}
        self._built: dict[tuple[str, str], jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = {"ok": 0, "failed": 0}  # read by the metrics

    async def key(self, kid: str, algorithm: str) -> jwt.PyJWK:
        if kid not in self._keys or self._is_stale():
            await self._refresh(kid)
        jwk = self._keys.get(kid)
        if jwk is None:
            raise InvalidToken(f"unknown kid (JWKS at {self.url})")
        return self._build(kid, jwk, algorithm)

    def _is_stale(self) -> bool:
        return self._fetched_at is None or time.monotonic() - self._fetched_at > self._cache_seconds

    async def _refresh(self, kid: str) -> None:
        async with self._lock:
            if kid in self._keys and not self._is_stale():
                return  # another request fetched while we waited
            now = time.monotonic()
            if self._attempted_at is not None and now - self._attempted_at < self._cooldown_seconds:
                return
            self._attempted_at = now
            log.debug("Fetching JWKS from %s (kid %r not cached, or keys older than the cache time)", self.url, kid)
            try:
                # A client per fetch: fetches are rare (cooldown), and nothing outlives the request.
                async with httpx.AsyncClient(timeout=self._timeout_seconds, follow_redirects=False) as client:
                    response = await client.get(self.url, headers={"Accept": "application/json"})
                response.raise_for_status()
                keys = _parse_jwks(response.json())
            except (httpx.HTTPError, ValueError) as exc:
                log.warning(
                    "JWKS fetch from %s failed (%s); keeping %d cached keys",
                    self.url,
                    type(exc).__name__,
                    len(self._keys),
                )
                self.fetches["failed"] += 1
                return
            self.fetches["ok"] += 1
            self._keys = keys
            self._built = {}
            self._fetched_at = now
            log.info("JWKS fetched from %s: %d keys", self.url, len(keys))

    def _build(self, kid: str, jwk: dict[str, Any], algorithm: str) -> jwt.PyJWK:
        """The key must be of the type the header's algorithm needs, and match its own `alg` if it names one."""
        cached = self._built.get((kid, algorithm))
        if cached is not None:
            return cached
        declared = jwk.get("alg")
        if declared is not None and declared != algorithm:
            raise InvalidToken(f"token alg {algorithm} does not match key alg {declared}")
        try:
            built = jwt.PyJWK(jwk, algorithm=algorithm)
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"key {kid} cannot verify {algorithm}: {exc}") from None
        self._built[(kid, algorithm)] = built
        return built


def _parse_jwks(document: object) -> dict[str, dict[str, Any]]:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document")
    return {key["kid"]: key for key in document["keys"] if isinstance(key, dict) and isinstance(key.get("kid"), str)}


@dataclass(frozen=True)
class TokenPolicy:
    """What a valid token must look like, from settings."""

    secret: str
    jwks_issuer: str
    jwks_audience: str
    leeway_seconds: int
    hs256_issuer: str | None = None
    hs256_audience: str | None = None
    # Refuse tokens meant to live longer than this (exp - iat, or exp - now without iat).
    max_lifetime_seconds: int | None = None


@dataclass(frozen=True)
class _Verified:
    user_id: str
    expires_at: float


class TokenVerifier:
    """Verifies tokens, remembering the ones that passed until they expire.

    A frontend sends the same token on every request for its whole lifetime (15 minutes with
    Better Auth), so signature and claims are checked once per token, not once per request. Only
    tokens that passed every check are remembered; the expiry (with leeway) is still enforced on
    each use. The memory is bounded: the oldest entries go first.
    """

    def __init__(self, policy: TokenPolicy, jwks: JWKSCache, *, remember: int = 10_000) -> None:
        self.policy = policy
        self.jwks = jwks
        self._remember = remember
        self._verified: OrderedDict[str, _Verified] = OrderedDict()

    async def user_id(self, token: str) -> str:
        """Return the verified user id, or raise InvalidToken."""
        known = self._verified.get(token)
        if known is not None:
            if time.time() <= known.expires_at + self.policy.leeway_seconds:
                return known.user_id
            del self._verified[token]
            raise InvalidToken("token expired", detail="Token has expired")
        user_id, expires_at = await self._verify(token)
        self._verified[token] = _Verified(user_id, expires_at)
        if len(self._verified) > self._remember:
            self._verified.popitem(last=False)
        return user_id

    async def _verify(self, token: str) -> tuple[str, float]:
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken(f"token longer than {MAX_TOKEN_LENGTH} characters")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"malformed token: {exc}") from None
        algorithm = header.get("alg")
        if algorithm == HS256:
            claims = self._decode(
                token,
                self.policy.secret,
                HS256,
                self.policy.hs256_issuer,
                self.policy.hs256_audience,
            )
            return _hs256_identity(claims), self._check_times(claims)
        if algorithm in JWKS_ALGORITHMS:
            kid = header.get("kid")
            if not isinstance(kid, str) or not kid:
                raise InvalidToken("JWKS token without kid")
            key = await self.jwks.key(kid, algorithm)
            claims = self._decode(token, key, algorithm, self.policy.jwks_issuer, self.policy.jwks_audience)
            return _identity(claims.get("sub"), "sub"), self._check_times(claims)
        raise InvalidToken(f"algorithm {algorithm!r} not allowed")

    def _decode(self, token: str, key: Any, algorithm: str, issuer: str | None, audience: str | None) -> dict[str, Any]:
        """Signature, iss, aud and sub type by PyJWT; the time claims by `_check_times`.

        PyJWT reads time claims with int(), which takes numeric strings and booleans and raises
        OverflowError (a 500) on infinities, so its own time checks are off.
        """
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=issuer,
                audience=audience,
                options={
                    "require": ["exp"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_iss": issuer is not None,
                    "verify_aud": audience is not None,
                },
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"{type(exc).__name__}: {exc}") from None
        return claims

    def _check_times(self, claims: dict[str, Any]) -> float:
        """Check exp (required), nbf and iat as RFC 7519 NumericDates; return exp."""
        exp, nbf, iat = (_numeric_date(claims, name) for name in TIME_CLAIMS)
        if exp is None:
            raise InvalidToken("exp claim missing")
        now = time.time()
        leeway = self.policy.leeway_seconds
        if exp <= now - leeway:
            raise InvalidToken("token expired", detail="Token has expired")
        if nbf is not None and nbf > now + leeway:
            raise InvalidToken("token not yet valid (nbf)")
        if iat is not None and iat > now + leeway:
            raise InvalidToken("token issued in the future (iat)")
        limit = self.policy.max_lifetime_seconds
        if limit is not None and exp - (iat if iat is not None else now) > limit:
            raise InvalidToken(f"token lifetime over JWT_MAX_LIFETIME_SECONDS ({limit} s)")
        return exp


def _numeric_date(claims: dict[str, Any], name: str) -> float | None:
    if name not in claims:
        return None
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(f"{name} claim is not a JSON number")
    # Compared before any conversion: 10**400 is a valid Python int that float() cannot hold.
    if not (isinstance(value, int) or math.isfinite(value)) or not 0 <= value <= MAX_NUMERIC_DATE:
        raise InvalidToken(f"{name} claim out of range")
    return float(value)


def _hs256_identity(claims: dict[str, Any]) -> str:
    """`sub`, else `user_id`, else `id`, else Better Auth's session shape (its cookie cache JWT).

    Better Auth's `session.cookieCache` with strategy "jwt" signs `{session: {userId, ...},
    user: {id, ...}, iat, exp}` with the shared secret and no top-level identity.
    """
    for name in HS256_IDENTITY_CLAIMS:
        value = claims.get(name)
        if value is not None:
            if isinstance(value, int) and not isinstance(value, bool) and name != "sub":
                value = str(value)
            return _identity(value, name)
    user, session = claims.get("user"), claims.get("session")
    if not isinstance(user, dict):
        raise InvalidToken("missing identity claim (sub/user_id/id/user.id)")
    user_id = _identity(user.get("id"), "user.id")
    if isinstance(session, dict) and "userId" in session and session["userId"] != user_id:
        raise InvalidToken("session.userId does not match user.id")
    return user_id


def check_user_id(value: object) -> str:
    """`value` if a token may carry it as its identity here; else InvalidToken saying why (for tools)."""
    return _identity(value, "user id")


def _identity(value: object, name: str) -> str:
    """A usable user id: a non-empty string of at most 255 characters that a URL path can carry."""
    if not isinstance(value, str) or not value:
        raise InvalidToken(f"missing or invalid identity claim ({name})")
    if len(value) > MAX_USER_ID_LENGTH:
        raise InvalidToken(f"identity longer than {MAX_USER_ID_LENGTH} characters")
    if _UNADDRESSABLE.search(value):
        raise InvalidToken("identity contains a control character, a lone surrogate or '/'")
    return value
