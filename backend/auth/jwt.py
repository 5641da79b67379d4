"""Verify Better Auth tokens: HS256 with the shared secret, or the JWT plugin's keys from its JWKS.

The token's header picks the path (never trial and error), so an HS256 token is never checked
against a public key and an asymmetric token never against the secret.
"""

import asyncio
import logging
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
                return
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
            return _identity(claims, HS256_IDENTITY_CLAIMS), float(claims["exp"])
        if algorithm in JWKS_ALGORITHMS:
            kid = header.get("kid")
            if not isinstance(kid, str) or not kid:
                raise InvalidToken("JWKS token without kid")
            key = await self.jwks.key(kid, algorithm)
            claims = self._decode(token, key, algorithm, self.policy.jwks_issuer, self.policy.jwks_audience)
            return _identity(claims, ("sub",)), float(claims["exp"])
        raise InvalidToken(f"algorithm {algorithm!r} not allowed")

    def _decode(self, token: str, key: Any, algorithm: str, issuer: str | None, audience: str | None) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=issuer,
                audience=audience,
                leeway=self.policy.leeway_seconds,
                options={
                    "require": ["exp"],
                    "verify_iss": issuer is not None,
                    "verify_aud": audience is not None,
                },
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token expired", detail="Token has expired") from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"{type(exc).__name__}: {exc}") from None
        return claims


def _identity(claims: dict[str, Any], names: tuple[str, ...]) -> str:
    """The first identity claim present; a string, or an integer from hand-rolled HS256 tokens."""
    value = next((claims[name] for name in names if claims.get(name) is not None), None)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise InvalidToken(f"missing or invalid identity claim ({'/'.join(names)})")
    if len(value) > MAX_USER_ID_LENGTH:
        raise InvalidToken(f"identity longer than {MAX_USER_ID_LENGTH} characters")
    return value
