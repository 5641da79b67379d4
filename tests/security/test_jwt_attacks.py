"""The JWT attack matrix (RFC 8725, RFC 6750) through the real API: one named row per attack."""

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.servers import JWKSServer, jwks_server
from tests.tokens import SigningKey, b64url, better_auth_session, hmac_signed, hs256, hs256_raw

pytestmark = pytest.mark.anyio


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: str = "") -> str:
    return f"{b64url(json.dumps(header))}.{b64url(json.dumps(claims))}.{signature}"


@dataclass
class Attack:
    """What the attacker sends; `headers` None means no Authorization header at all."""

    authorization: str | None
    params: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)


@dataclass
class World:
    user: str
    issuer: str
    key: SigningKey
    rsa_key: SigningKey

    def claims(self, **extra: Any) -> dict[str, Any]:
        now = int(time.time())
        return {"sub": self.user, "iss": self.issuer, "aud": self.issuer, "iat": now, "exp": now + 600, **extra}

    def jwks_token(self, **extra: Any) -> str:
        return self.key.sign(self.claims(**extra))

    def bearer(self, token: str) -> Attack:
        return Attack(f"Bearer {token}")


def _hmac(algorithm: str) -> Callable[[World], Attack]:
    return lambda w: w.bearer(hmac_signed(w.claims(), algorithm=algorithm))


def _foreign_key(w: World) -> Attack:
    stranger = SigningKey("EdDSA", kid=w.key.kid)  # same kid, a key the JWKS does not hold
    return w.bearer(stranger.sign(w.claims()))


def _kid_of_other_type(w: World) -> Attack:
    ed = SigningKey("EdDSA", kid=w.rsa_key.kid)
    return w.bearer(ed.sign(w.claims()))


def _jku(w: World) -> Attack:
    attacker = SigningKey("EdDSA")
    headers = {"jku": "http://127.0.0.1:9/jwks.json", "x5u": "http://127.0.0.1:9/cert.pem"}
    return w.bearer(attacker.sign(w.claims(), headers=headers))


ATTACKS: dict[str, Callable[[World], Attack]] = {
    "missing-header": lambda w: Attack(None),
    "basic-scheme": lambda w: Attack("Basic dXNlcjpwYXNzd29yZA=="),
    "empty-token": lambda w: Attack("Bearer "),
    "one-segment": lambda w: w.bearer("eyJhbGciOiJIUzI1NiJ9"),
    "two-segments": lambda w: w.bearer("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0"),
    "four-segments": lambda w: w.bearer(hs256(w.user) + ".extra"),
    "bad-base64": lambda w: w.bearer("e$$.e%%.s^^"),
    "non-json-header": lambda w: w.bearer(f"{b64url('{not json')}.{b64url('{}')}.{b64url('sig')}"),
    "alg-none-unsigned": lambda w: w.bearer(unsigned({"alg": "none"}, w.claims())),
    "alg-none-signed": lambda w: w.bearer(unsigned({"alg": "none"}, w.claims(), b64url("sig"))),
    "hs256-with-jwks-public-key": lambda w: w.bearer(w.rsa_key.confused_hs256(w.claims())),
    "hs384-right-secret": _hmac("HS384"),
    "hs512-right-secret": _hmac("HS512"),
    "eddsa-key-not-in-jwks": _foreign_key,
    "unknown-kid": lambda w: w.bearer(SigningKey("EdDSA").sign(w.claims())),
    "kid-of-another-key-type": _kid_of_other_type,
    "jku-x5u-elsewhere": _jku,
    "expired-beyond-leeway": lambda w: w.bearer(w.jwks_token(exp=int(time.time()) - 60)),
    "nbf-in-future": lambda w: w.bearer(w.jwks_token(nbf=int(time.time()) + 300)),
    "iat-in-future": lambda w: w.bearer(w.jwks_token(iat=int(time.time()) + 300)),
    "no-exp": lambda w: w.bearer(w.key.sign({k: v for k, v in w.claims().items() if k != "exp"})),
    "exp-not-a-number": lambda w: w.bearer(w.jwks_token(exp="soon")),
    "identity-missing": lambda w: w.bearer(w.key.sign({k: v for k, v in w.claims().items() if k != "sub"})),
    "identity-empty": lambda w: w.bearer(w.jwks_token(sub="")),
    "identity-not-string-or-number": lambda w: w.bearer(hs256(None, user_id={"id": w.user})),
    "identity-over-255": lambda w: w.bearer(hs256("u" * 256)),
    "wrong-iss": lambda w: w.bearer(w.jwks_token(iss="https://evil.example")),
    "wrong-aud": lambda w: w.bearer(w.jwks_token(aud="https://evil.example")),
    "aud-list-without-ours": lambda w: w.bearer(w.jwks_token(aud=["https://a.example", "https://b.example"])),
    "token-of-16-kib": lambda w: w.bearer(hs256(w.user, pad="x" * 16 * 1024)),
    "token-with-10000-claims": lambda w: w.bearer(hmac_signed({**w.claims(), **{f"c{i}": i for i in range(10_000)}})),
    "exp-numeric-string": lambda w: w.bearer(hs256(w.user, exp=str(int(time.time()) + 86400))),
    "exp-boolean": lambda w: w.bearer(hs256(w.user, exp=True)),
    "exp-10-to-the-400": lambda w: w.bearer(hs256(w.user, exp=10**400)),
    "exp-1e400-float": lambda w: w.bearer(hs256_raw(f'{{"sub": "{w.user}", "exp": 1e400}}')),
    "exp-nan": lambda w: w.bearer(hs256_raw(f'{{"sub": "{w.user}", "exp": NaN}}')),
    "nbf-string": lambda w: w.bearer(w.jwks_token(nbf=str(int(time.time())))),
    "iat-boolean": lambda w: w.bearer(w.jwks_token(iat=True)),
    "identity-with-nul": lambda w: w.bearer(hs256(w.user + "\x00")),
    "identity-with-crlf": lambda w: w.bearer(hs256(w.user + "\r\nX-Injected: 1")),
    "identity-with-slash": lambda w: w.bearer(hs256(f"{w.user}/x")),
    "session-shape-mismatched-user": lambda w: w.bearer(better_auth_session(w.user, session_user_id="someone-else")),
    "session-shape-without-user-id": lambda w: w.bearer(better_auth_session(w.user, user={"email": "a@b.example"})),
    "session-shape-expired": lambda w: w.bearer(better_auth_session(w.user, ttl=-120)),
    "session-shape-wrong-secret": lambda w: w.bearer(
        hmac_signed(
            {"user": {"id": w.user}, "session": {"userId": w.user}, "exp": int(time.time()) + 60},
            secret="another-secret-of-sufficient-length-000000",
        )
    ),
    "token-in-query-only": lambda w: Attack(None, params={"access_token": hs256(w.user)}),
    "token-in-cookie-only": lambda w: Attack(None, cookies={"access_token": hs256(w.user)}),
}


@pytest.fixture
def world(user: str, jwks: JWKSServer, eddsa_key: SigningKey) -> World:
    rsa = getattr(jwks, "_attack_rsa", None)
    if rsa is None:
        rsa = SigningKey("RS256")
        jwks.keys.append(rsa.public_jwk)
        jwks._attack_rsa = rsa  # type: ignore[attr-defined]
    return World(user=user, issuer=jwks.url, key=eddsa_key, rsa_key=rsa)


@pytest.mark.parametrize("name", list(ATTACKS))
async def test_attack_is_refused_with_401(client: httpx.AsyncClient, world: World, name: str) -> None:
    attack = ATTACKS[name](world)
    headers = {"Authorization": attack.authorization} if attack.authorization is not None else {}
    client.cookies.clear()
    client.cookies.update(attack.cookies)
    response = await client.get(f"/api/{world.user}/tasks", headers=headers, params=attack.params)
    client.cookies.clear()
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert set(response.json()) == {"detail"}
    if attack.authorization is not None:
        # A refused token is refused every time: nothing half-checked was remembered as valid.
        again = await client.get(f"/api/{world.user}/tasks", headers=headers)
        assert again.status_code == 401


ACCEPTED: dict[str, Callable[[World], Attack]] = {
    "expired-within-leeway": lambda w: w.bearer(w.jwks_token(exp=int(time.time()) - 10)),
    "lowercase-bearer-scheme": lambda w: Attack(f"bearer {hs256(w.user)}"),
    "aud-list-with-ours": lambda w: w.bearer(w.jwks_token(aud=["https://a.example", w.issuer])),
    "numeric-user-id-claim": lambda w: w.bearer(hs256(None, user_id=12345)),
    "better-auth-session-jwt": lambda w: w.bearer(better_auth_session(w.user)),
}


@pytest.mark.parametrize("name", list(ACCEPTED))
async def test_legitimate_variant_is_accepted(client: httpx.AsyncClient, world: World, name: str) -> None:
    attack = ACCEPTED[name](world)
    user = "12345" if name == "numeric-user-id-claim" else world.user
    assert attack.authorization is not None
    response = await client.get(f"/api/{user}/tasks", headers={"Authorization": attack.authorization})
    assert response.status_code == 200, response.text


async def test_jku_target_is_never_contacted(user: str, eddsa_key: SigningKey, jwks: JWKSServer) -> None:
    """A token whose jku points at an attacker's JWKS server: that server must see no request."""
    from backend.main import create_app
    from tests.support.api import make_settings

    async with jwks_server() as attacker_keys:
        attacker = SigningKey("EdDSA")
        attacker_keys.keys.append(attacker.public_jwk)
        app = create_app(make_settings(None, better_auth_url=jwks.url))
        token = attacker.sign(
            {"sub": user, "iss": jwks.url, "aud": jwks.url, "exp": int(time.time()) + 60},
            headers={"jku": f"{attacker_keys.url}/api/auth/jwks", "x5u": f"{attacker_keys.url}/cert"},
        )
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            response = await http.get(f"/api/{user}/tasks", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401
        assert attacker_keys.fetches == 0


async def test_unknown_kid_flood_costs_one_jwks_fetch_per_cooldown(
    client: httpx.AsyncClient, world: World, jwks: JWKSServer
) -> None:
    import asyncio

    forger = SigningKey("EdDSA")
    before = jwks.fetches
    tokens = [
        SigningKey("EdDSA", kid=uuid.uuid4().hex, private=forger.private).sign(world.claims()) for _ in range(300)
    ]
    responses = await asyncio.gather(
        *(client.get(f"/api/{world.user}/tasks", headers={"Authorization": f"Bearer {t}"}) for t in tokens)
    )
    assert {r.status_code for r in responses} == {401}
    assert jwks.fetches - before <= 1
