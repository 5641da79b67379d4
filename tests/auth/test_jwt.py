"""Token verification with real keys, a real JWKS served over HTTP, and real clocks."""

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest

from backend.auth.jwt import MAX_TOKEN_LENGTH, InvalidToken, JWKSCache, TokenPolicy, TokenVerifier, check_user_id
from tests.servers import JWKSServer, jwks_server
from tests.tokens import TEST_SECRET, SigningKey, b64url, better_auth_session, hmac_signed, hs256, hs256_raw

pytestmark = pytest.mark.anyio


@pytest.fixture
async def server() -> AsyncIterator[JWKSServer]:
    async with jwks_server() as jwks:
        yield jwks


def make_verifier(server: JWKSServer, *, cooldown: float = 30.0, **policy: Any) -> TokenVerifier:
    cache = JWKSCache(f"{server.url}/api/auth/jwks", cache_seconds=300, cooldown_seconds=cooldown, timeout_seconds=2)
    values: dict[str, Any] = {
        "secret": TEST_SECRET,
        "jwks_issuer": server.url,
        "jwks_audience": server.url,
        "leeway_seconds": 30,
        **policy,
    }
    return TokenVerifier(TokenPolicy(**values), cache)


@pytest.fixture
def verifier(server: JWKSServer) -> TokenVerifier:
    return make_verifier(server)


async def refused(verifier: TokenVerifier, token: str) -> InvalidToken:
    with pytest.raises(InvalidToken) as caught:
        await verifier.user_id(token)
    return caught.value


# --- HS256 ------------------------------------------------------------------------------------------


async def test_hs256_identity_from_sub(verifier: TokenVerifier) -> None:
    assert await verifier.user_id(hs256("alice")) == "alice"


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        pytest.param({"user_id": "u1"}, "u1", id="user_id"),
        pytest.param({"id": "u2"}, "u2", id="id"),
        pytest.param({"id": 42}, "42", id="numeric-id"),
        pytest.param({"sub": "s", "user_id": "u", "id": "i"}, "s", id="sub-wins"),
        pytest.param({"user_id": "u", "id": "i"}, "u", id="user_id-before-id"),
    ],
)
async def test_hs256_identity_fallbacks(verifier: TokenVerifier, claims: dict[str, Any], expected: str) -> None:
    sub = claims.pop("sub", None)
    assert await verifier.user_id(hs256(sub, **claims)) == expected


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({}, id="missing"),
        pytest.param({"sub": ""}, id="empty"),
        pytest.param({"user_id": True}, id="boolean"),
        pytest.param({"user_id": ["a"]}, id="list"),
        pytest.param({"user_id": 1.5}, id="float"),
        pytest.param({"sub": "x" * 256}, id="too-long"),
        pytest.param({"sub": 123}, id="numeric-sub"),
    ],
)
async def test_hs256_bad_identity_is_refused(verifier: TokenVerifier, claims: dict[str, Any]) -> None:
    sub = claims.pop("sub", None)
    await refused(verifier, hs256(sub, **claims))


async def test_identity_of_255_characters_is_accepted(verifier: TokenVerifier) -> None:
    assert await verifier.user_id(hs256("x" * 255)) == "x" * 255


UNUSUAL_BUT_VALID_IDS = ["用户", "Ωmega", "emoji😀", "a?b", "a#b", "a b", "ålice", "a%2Fb", ".", "..", "é" * 255]


@pytest.mark.parametrize("user_id", UNUSUAL_BUT_VALID_IDS)
async def test_any_addressable_identity_is_accepted(verifier: TokenVerifier, user_id: str) -> None:
    assert await verifier.user_id(hs256(user_id)) == user_id
    assert await verifier.user_id(hs256(None, user_id=user_id)) == user_id


@pytest.mark.parametrize(
    "user_id",
    [
        pytest.param("a\x00b", id="nul"),
        pytest.param("a\rb", id="cr"),
        pytest.param("a\nb", id="lf"),
        pytest.param("a\r\nINFO forged log line", id="crlf"),
        pytest.param("a\tb", id="tab"),
        pytest.param("a\x1bb", id="esc"),
        pytest.param("a\x7fb", id="del"),
        pytest.param("a\x85b", id="c1-next-line"),
        pytest.param("a/b", id="slash"),
        pytest.param("/", id="only-slash"),
        pytest.param("a\ud800b", id="lone-surrogate"),
        pytest.param("é" * 256, id="256-code-points"),
    ],
)
@pytest.mark.parametrize("claim", ["sub", "user_id", "id", "user.id"])
async def test_unaddressable_identity_is_invalid(verifier: TokenVerifier, user_id: str, claim: str) -> None:
    if claim == "user.id":
        token = better_auth_session(user_id)
    else:
        claims: dict[str, Any] = {claim: user_id}
        token = hs256(user_id) if claim == "sub" else hs256(None, **claims)
    error = await refused(verifier, token)
    assert error.detail == "Invalid token"


# --- Better Auth's session JWT (session.cookieCache strategy "jwt") ----------------------------------


async def test_better_auth_session_jwt_identity_is_user_id(verifier: TokenVerifier) -> None:
    assert await verifier.user_id(better_auth_session("ba-user-1")) == "ba-user-1"


async def test_better_auth_session_without_session_object_uses_user_id(verifier: TokenVerifier) -> None:
    token = better_auth_session("ba-user-2", session=None)
    assert await verifier.user_id(token) == "ba-user-2"


async def test_top_level_identity_claims_win_over_the_session_shape(verifier: TokenVerifier) -> None:
    assert await verifier.user_id(better_auth_session("ba-user", sub="subject")) == "subject"
    assert await verifier.user_id(better_auth_session("ba-user", user_id="flat")) == "flat"


@pytest.mark.parametrize(
    ("token_factory", "reason"),
    [
        pytest.param(lambda: better_auth_session("alice", session_user_id="mallory"), "match", id="mismatched-ids"),
        pytest.param(lambda: better_auth_session("alice", session_user_id=""), "match", id="empty-session-user"),
        pytest.param(lambda: better_auth_session("alice", user={"email": "a@example.com"}), "user.id", id="no-user-id"),
        pytest.param(lambda: better_auth_session("alice", user={"id": 42}), "user.id", id="numeric-user-id"),
        pytest.param(lambda: better_auth_session("alice", user="alice"), "identity", id="user-not-object"),
        pytest.param(lambda: better_auth_session("alice", user=None), "identity", id="user-null"),
    ],
)
async def test_better_auth_session_edge_cases_are_refused(
    verifier: TokenVerifier, token_factory: Any, reason: str
) -> None:
    error = await refused(verifier, token_factory())
    assert error.detail == "Invalid token"
    assert reason in error.reason


async def test_expired_better_auth_session_says_so(verifier: TokenVerifier) -> None:
    error = await refused(verifier, better_auth_session("alice", ttl=-120))
    assert error.detail == "Token has expired"


async def test_better_auth_session_needs_exp(verifier: TokenVerifier) -> None:
    token = better_auth_session("alice", exp=None)
    await refused(verifier, token)


async def test_better_auth_session_shape_is_hs256_only(server: JWKSServer, verifier: TokenVerifier) -> None:
    key = SigningKey("EdDSA")
    server.keys.append(key.public_jwk)
    now = int(time.time())
    claims = {"iss": server.url, "aud": server.url, "exp": now + 60, "user": {"id": "u"}, "session": {"userId": "u"}}
    await refused(verifier, key.sign(claims))


async def test_expired_token_says_so(verifier: TokenVerifier) -> None:
    error = await refused(verifier, hs256("a", ttl=-31))
    assert error.detail == "Token has expired"


async def test_expiry_within_leeway_is_accepted(verifier: TokenVerifier) -> None:
    assert await verifier.user_id(hs256("a", ttl=-10)) == "a"


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"nbf": int(time.time()) + 120}, id="nbf-future"),
        pytest.param({"iat": int(time.time()) + 120}, id="iat-future"),
        pytest.param({"exp": "tomorrow"}, id="exp-not-number"),
        pytest.param({"exp": str(int(time.time()) + 600)}, id="exp-numeric-string"),
        pytest.param({"exp": True}, id="exp-boolean"),
        pytest.param({"exp": 10**400}, id="exp-huge-integer"),
        pytest.param({"exp": 253_402_300_800}, id="exp-after-year-9999"),
        pytest.param({"exp": [int(time.time()) + 600]}, id="exp-list"),
        pytest.param({"nbf": str(int(time.time()))}, id="nbf-string"),
        pytest.param({"nbf": False}, id="nbf-boolean"),
        pytest.param({"nbf": None}, id="nbf-null"),
        pytest.param({"iat": str(int(time.time()))}, id="iat-string"),
        pytest.param({"iat": True}, id="iat-boolean"),
        pytest.param({"iat": -1}, id="iat-before-epoch"),
        pytest.param({"iat": 10**400}, id="iat-huge-integer"),
    ],
)
async def test_time_claims_are_enforced(verifier: TokenVerifier, claims: dict[str, Any]) -> None:
    token = hs256("a", **claims)
    error = await refused(verifier, token)
    assert error.detail == "Invalid token"
    assert token not in verifier._verified


@pytest.mark.parametrize(
    "exp",
    [
        pytest.param("1e400", id="overflowing-float"),
        pytest.param("Infinity", id="infinity"),
        pytest.param("-Infinity", id="minus-infinity"),
        pytest.param("NaN", id="nan"),
        pytest.param("1" + "0" * 400, id="400-digit-integer"),
    ],
)
async def test_non_finite_or_huge_exp_is_refused_not_a_crash(verifier: TokenVerifier, exp: str) -> None:
    """Python's JSON parser turns these into inf/nan or a huge int; none may crash or be cached."""
    token = hs256_raw(f'{{"sub": "a", "iat": {int(time.time())}, "exp": {exp}}}')
    for _ in range(2):
        error = await refused(verifier, token)
        assert error.detail == "Invalid token"
    assert token not in verifier._verified


async def test_float_time_claims_are_accepted(verifier: TokenVerifier) -> None:
    now = time.time()
    assert await verifier.user_id(hs256("a", iat=now, nbf=now, exp=now + 60.5)) == "a"


async def test_max_lifetime_is_unset_by_default(verifier: TokenVerifier) -> None:
    assert await verifier.user_id(hs256("a", ttl=365 * 86400)) == "a"


async def test_max_lifetime_refuses_longer_tokens(server: JWKSServer) -> None:
    verifier = make_verifier(server, max_lifetime_seconds=900)
    assert await verifier.user_id(hs256("a", ttl=900)) == "a"
    error = await refused(verifier, hs256("a", ttl=901))
    assert "JWT_MAX_LIFETIME_SECONDS" in error.reason
    now = int(time.time())
    without_iat = hmac_signed({"sub": "a", "exp": now + 3600})
    await refused(verifier, without_iat)  # without iat the lifetime counts from now
    short_without_iat = hmac_signed({"sub": "a", "exp": now + 60})
    assert await verifier.user_id(short_without_iat) == "a"


async def test_exp_is_required(verifier: TokenVerifier) -> None:
    token = hmac_signed({"sub": "a", "iat": int(time.time())})
    await refused(verifier, token)


async def test_wrong_secret_is_refused(verifier: TokenVerifier) -> None:
    await refused(verifier, hs256("a", secret="another-secret-of-sufficient-length-000000"))


async def test_hs256_iss_and_aud_checked_only_when_configured(server: JWKSServer) -> None:
    open_verifier = make_verifier(server)
    strict = make_verifier(server, hs256_issuer="https://app", hs256_audience="todo")
    token = hs256("a", iss="https://elsewhere", aud="other")
    assert await open_verifier.user_id(token) == "a"
    await refused(strict, token)
    assert await strict.user_id(hs256("a", iss="https://app", aud="todo")) == "a"


@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
async def test_other_hmac_algorithms_are_refused(verifier: TokenVerifier, algorithm: str) -> None:
    token = hmac_signed({"sub": "a", "exp": int(time.time()) + 60}, algorithm=algorithm)
    await refused(verifier, token)


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("", id="empty"),
        pytest.param("abc", id="one-segment"),
        pytest.param("abc.def", id="two-segments"),
        pytest.param("a.b.c.d", id="four-segments"),
        pytest.param("!!!.***.$$$", id="bad-base64"),
        pytest.param(f"{b64url('not json')}.{b64url('{}')}.sig", id="non-json-header"),
    ],
)
async def test_malformed_tokens_are_refused(verifier: TokenVerifier, token: str) -> None:
    await refused(verifier, token)


async def test_alg_none_is_refused(verifier: TokenVerifier) -> None:
    body = b64url(json.dumps({"sub": "a", "exp": int(time.time()) + 60}))
    for signature in ("", b64url("sig")):
        await refused(verifier, f"{b64url(json.dumps({'alg': 'none', 'typ': 'JWT'}))}.{body}.{signature}")


async def test_oversized_token_is_refused_before_parsing(verifier: TokenVerifier) -> None:
    token = hs256("a", padding="x" * MAX_TOKEN_LENGTH)
    error = await refused(verifier, token)
    assert "longer" in error.reason


# --- JWKS -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256", "RS256"])
async def test_jwks_tokens_verify(server: JWKSServer, verifier: TokenVerifier, algorithm: str) -> None:
    key = SigningKey(algorithm)
    server.keys.append(key.public_jwk)
    assert await verifier.user_id(key.token("ba-user", issuer=server.url)) == "ba-user"


async def test_jwks_is_cached(server: JWKSServer, verifier: TokenVerifier) -> None:
    key = SigningKey("EdDSA")
    server.keys.append(key.public_jwk)
    for _ in range(5):
        await verifier.user_id(key.token("u", issuer=server.url))
    assert server.fetches == 1


async def test_unknown_kid_refetches_after_rotation(server: JWKSServer) -> None:
    verifier = make_verifier(server, cooldown=0)
    old, new = SigningKey("EdDSA"), SigningKey("EdDSA")
    server.keys.append(old.public_jwk)
    assert await verifier.user_id(old.token("u", issuer=server.url)) == "u"
    server.keys.append(new.public_jwk)  # rotation: the new key joins, the old one stays a while
    assert await verifier.user_id(new.token("u", issuer=server.url)) == "u"
    assert await verifier.user_id(old.token("u", issuer=server.url)) == "u"
    assert server.fetches == 2


async def test_unknown_kid_flood_fetches_once_per_cooldown(server: JWKSServer, verifier: TokenVerifier) -> None:
    forger = SigningKey("EdDSA")
    tokens = [SigningKey("EdDSA", kid=uuid.uuid4().hex, private=forger.private) for _ in range(200)]
    results = await asyncio.gather(
        *(verifier.user_id(key.token("u", issuer=server.url)) for key in tokens), return_exceptions=True
    )
    assert all(isinstance(result, InvalidToken) for result in results)
    assert server.fetches == 1


async def test_failed_fetch_keeps_last_good_keys(server: JWKSServer) -> None:
    verifier = make_verifier(server, cooldown=0)
    key = SigningKey("EdDSA")
    server.keys.append(key.public_jwk)
    assert await verifier.user_id(key.token("u", issuer=server.url)) == "u"
    server.failing = True
    await refused(verifier, SigningKey("EdDSA").token("u", issuer=server.url))  # forces a failing fetch
    assert await verifier.user_id(key.token("u", issuer=server.url)) == "u"


async def test_auth_server_down_does_not_block_hs256(server: JWKSServer) -> None:
    cache = JWKSCache("http://127.0.0.1:9/api/auth/jwks", cache_seconds=300, cooldown_seconds=30, timeout_seconds=1)
    verifier = TokenVerifier(
        TokenPolicy(secret=TEST_SECRET, jwks_issuer=server.url, jwks_audience=server.url, leeway_seconds=30),
        cache,
    )
    started = time.monotonic()
    await refused(verifier, SigningKey("EdDSA").token("u", issuer=server.url))
    assert await verifier.user_id(hs256("u")) == "u"
    assert time.monotonic() - started < 3


async def test_invalid_jwks_document_is_ignored(server: JWKSServer) -> None:
    verifier = make_verifier(server)
    server.keys.append({"kty": "OKP", "crv": "Ed25519", "x": "broken"})  # no kid: skipped
    await refused(verifier, SigningKey("EdDSA").token("u", issuer=server.url))


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        pytest.param({"iss": "https://evil.example"}, "Issuer", id="wrong-iss"),
        pytest.param({"aud": "https://evil.example"}, "Audience", id="wrong-aud"),
        pytest.param({"aud": ["https://a.example", "https://b.example"]}, "Audience", id="aud-list-without-ours"),
    ],
)
async def test_jwks_iss_and_aud_must_be_better_auth(
    server: JWKSServer, verifier: TokenVerifier, claims: dict[str, Any], reason: str
) -> None:
    key = SigningKey("EdDSA")
    server.keys.append(key.public_jwk)
    error = await refused(verifier, key.token("u", issuer=server.url, **claims))
    assert reason in error.reason


async def test_aud_list_containing_ours_is_accepted(server: JWKSServer, verifier: TokenVerifier) -> None:
    key = SigningKey("EdDSA")
    server.keys.append(key.public_jwk)
    token = key.token("u", issuer=server.url, aud=["https://other.example", server.url])
    assert await verifier.user_id(token) == "u"


async def test_jwks_token_needs_kid_and_sub(server: JWKSServer, verifier: TokenVerifier) -> None:
    key = SigningKey("EdDSA")
    server.keys.append(key.public_jwk)
    now = int(time.time())
    no_kid = jwt.encode({"sub": "u", "exp": now + 60}, key.private, algorithm="EdDSA")
    await refused(verifier, no_kid)
    no_sub = key.sign({"iss": server.url, "aud": server.url, "exp": now + 60, "user_id": "u"})
    await refused(verifier, no_sub)


async def test_hs256_signed_with_public_key_is_refused(server: JWKSServer, verifier: TokenVerifier) -> None:
    """Algorithm confusion: the public key used as an HMAC secret must not verify."""
    key = SigningKey("RS256")
    server.keys.append(key.public_jwk)
    body = {"sub": "u", "iss": server.url, "aud": server.url, "exp": int(time.time()) + 60}
    await refused(verifier, key.confused_hs256(body))
    assert server.fetches == 0  # an HS256 token never consults the JWKS


async def test_kid_of_another_key_type_is_refused(server: JWKSServer, verifier: TokenVerifier) -> None:
    rsa_key, ed_key = SigningKey("RS256"), SigningKey("EdDSA")
    server.keys.append(rsa_key.public_jwk)
    forged = SigningKey("EdDSA", kid=rsa_key.kid, private=ed_key.private)
    await refused(verifier, forged.token("u", issuer=server.url))


async def test_key_without_declared_alg_must_fit_the_header(server: JWKSServer, verifier: TokenVerifier) -> None:
    key = SigningKey("ES256")
    jwk = {k: v for k, v in key.public_jwk.items() if k != "alg"}
    server.keys.append(jwk)
    assert await verifier.user_id(key.token("u", issuer=server.url)) == "u"
    ed = SigningKey("EdDSA", kid=key.kid)
    error = await refused(verifier, ed.token("u", issuer=server.url))
    assert "cannot verify" in error.reason


async def test_jku_and_x5u_headers_are_never_fetched(server: JWKSServer, verifier: TokenVerifier) -> None:
    key = SigningKey("EdDSA")
    server.keys.append(key.public_jwk)
    now = int(time.time())
    claims = {"sub": "u", "iss": server.url, "aud": server.url, "exp": now + 60}
    token = key.sign(claims, headers={"jku": "http://127.0.0.1:9/keys", "x5u": "http://127.0.0.1:9/cert"})
    assert await verifier.user_id(token) == "u"
    assert server.fetches == 1


async def test_verified_tokens_are_remembered_until_they_expire(server: JWKSServer) -> None:
    verifier = make_verifier(server, leeway_seconds=0)
    key = SigningKey("EdDSA")
    server.keys.append(key.public_jwk)
    token = key.token("u", issuer=server.url, ttl=2)
    assert await verifier.user_id(token) == "u"
    server.keys.clear()  # a remembered token no longer needs its key...
    assert await verifier.user_id(token) == "u"
    await asyncio.sleep(2.1)
    error = await refused(verifier, token)  # ...but still expires on time
    assert error.detail == "Token has expired"
    assert server.fetches == 1


async def test_remembered_tokens_are_bounded(server: JWKSServer) -> None:
    verifier = TokenVerifier(make_verifier(server).policy, make_verifier(server).jwks, remember=3)
    tokens = [hs256(f"user-{i}") for i in range(5)]
    for token in tokens:
        await verifier.user_id(token)
    assert len(verifier._verified) == 3
    assert tokens[0] not in verifier._verified
    assert tokens[-1] in verifier._verified


async def test_refused_tokens_are_not_remembered(verifier: TokenVerifier) -> None:
    bad = hs256("u", secret="another-secret-of-sufficient-length-000000")
    for _ in range(2):
        await refused(verifier, bad)
    assert bad not in verifier._verified


def test_check_user_id_applies_the_token_rules() -> None:
    assert check_user_id("用户") == "用户"
    for bad in ("", "a/b", "a\nb", "x" * 256, 42):
        with pytest.raises(InvalidToken):
            check_user_id(bad)
