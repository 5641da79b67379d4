"""Real tokens for tests: HS256 with the test secret, EdDSA/ES256/RS256 with real private keys."""

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

TEST_SECRET = "test-secret-that-is-long-enough-for-production-and-hs512-0123456789abcdef"


def hs256(sub: str | None = "user", *, secret: str = TEST_SECRET, ttl: int = 600, **claims: object) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {"iat": now, "exp": now + ttl, **claims}
    if sub is not None:
        payload["sub"] = sub
    return hmac_signed(payload, secret=secret)


def hmac_signed(claims: dict[str, Any], *, algorithm: str = "HS256", secret: str = TEST_SECRET) -> str:
    """Exactly `claims` (no iat or exp added), signed with the test secret: the one HMAC signer."""
    return jwt.encode(claims, secret, algorithm=algorithm)


def b64url(data: bytes | str) -> str:
    """Unpadded base64url, as JWT segments are encoded: for hand-built (malformed) tokens."""
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class SigningKey:
    """A private key and its public JWK, as Better Auth's jwt() plugin keeps them."""

    algorithm: str
    kid: str = field(default_factory=lambda: uuid.uuid4().hex)
    private: Any = None

    def __post_init__(self) -> None:
        if self.private is None:
            self.private = _generate(self.algorithm)

    @property
    def public_jwk(self) -> dict[str, Any]:
        algo: Any = {"EdDSA": OKPAlgorithm, "ES256": ECAlgorithm, "RS256": RSAAlgorithm}[self.algorithm]
        jwk: dict[str, Any] = algo.to_jwk(self.private.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.algorithm}

    def sign(self, claims: dict[str, Any], *, headers: dict[str, Any] | None = None) -> str:
        return jwt.encode(
            claims,
            self.private,
            algorithm=self.algorithm,
            headers={"kid": self.kid, **(headers or {})},
        )

    def confused_hs256(self, claims: dict[str, Any]) -> str:
        """Algorithm confusion: an HS256 token whose HMAC secret is this key's public PEM (and its kid)."""
        pem = self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return hs256_raw(json.dumps(claims), key=pem, kid=self.kid)

    def token(self, sub: str, *, issuer: str, ttl: int = 900, **claims: Any) -> str:
        now = int(time.time())
        payload = {"sub": sub, "iss": issuer, "aud": issuer, "iat": now, "exp": now + ttl, **claims}
        return self.sign(payload)


def _generate(algorithm: str) -> Any:
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def hs256_raw(payload: str, *, key: bytes = TEST_SECRET.encode(), kid: str | None = None) -> str:
    """An HS256 token over a hand-written JSON payload (e.g. `1e400`, which json.dumps cannot write),
    signed by hand: PyJWT refuses a PEM as an HMAC key, which algorithm confusion needs."""
    header = {"alg": "HS256", "typ": "JWT", **({"kid": kid} if kid else {})}
    signing_input = f"{b64url(json.dumps(header))}.{b64url(payload)}"
    return f"{signing_input}.{b64url(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())}"


def better_auth_session(user: str, /, *, ttl: int = 300, session_user_id: str | None = None, **extra: Any) -> str:
    """The shape of Better Auth's cookie cache JWT (strategy "jwt"): no top-level sub."""
    now = int(time.time())
    session = {
        "id": uuid.uuid4().hex,
        "userId": user if session_user_id is None else session_user_id,
        "token": uuid.uuid4().hex,
        "expiresAt": "2030-01-01T00:00:00.000Z",
    }
    payload: dict[str, Any] = {
        "session": session,
        "user": {"id": user, "email": "user@example.com", "name": "User", "emailVerified": False},
        "updatedAt": now * 1000,
        "version": "1",
        "iat": now,
        "exp": now + ttl,
        **extra,
    }
    return hmac_signed(payload)
