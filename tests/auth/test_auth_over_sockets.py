"""Authentication of a kite with authentication on, over real sockets.

A kite ``math`` of user alice trusts the test key pair as its Kontrol key.
Callers present kite keys and tokens signed with that pair, or nothing. Every
test also checks that no key or token text reaches a log line (DEBUG and up)
or an error message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from kitelib import AuthenticationError, Client, Config, Kite
from kitelib.auth import AuthenticatorError, KeyPair, sign_kite_key, sign_token

KONTROL_USER = "kontrol"
KONTROL_URL = "http://127.0.0.1:1/kite"
WAIT = 5.0
TRANSPORTS = ["websocket", "xhr"]


def secret_fragments(secret: str) -> list[str]:
    """Return the parts of a secret that must never be shown.

    A JWT's header segment is the same for every RS256 token, so only its
    payload and signature count. A PEM counts by its base64 body lines. Any
    other secret counts as a whole.
    """
    if secret.startswith("-----BEGIN"):
        return [line for line in secret.splitlines() if line and not line.startswith("-----")]
    parts = secret.split(".")
    if len(parts) == 3:
        return parts[1:]
    return [secret]


def find_leaks(texts: list[str], secrets: list[str]) -> list[str]:
    """Return the texts that contain a fragment of any secret."""
    fragments = [fragment for secret in secrets for fragment in secret_fragments(secret)]
    return [text for text in texts if any(fragment in text for fragment in fragments)]


class Issuer:
    """Signs kite keys and tokens like the test Kontrol would, and remembers each one as a secret."""

    def __init__(self, keys: KeyPair):
        self.keys = keys
        self.secrets: list[str] = [keys.private_pem]

    def remember(self, secret: str) -> str:
        self.secrets.append(secret)
        return secret

    def kite_key(self, username: str = "bob", keys: KeyPair | None = None) -> dict[str, str]:
        pair = keys or self.keys
        key = sign_kite_key(pair.private_pem, username=username, issuer=KONTROL_USER, kontrol_url=KONTROL_URL)
        return {"type": "kiteKey", "key": self.remember(key)}

    def token(self, audience: str = "/alice/prod/math", subject: str = "bob", *, ttl: float = 3600,
              leeway: float = 0, keys: KeyPair | None = None, issuer: str = KONTROL_USER) -> dict[str, str]:
        pair = keys or self.keys
        token = sign_token(pair.private_pem, issuer=issuer, subject=subject, audience=audience, ttl=ttl,
                           leeway=leeway)
        return {"type": "token", "key": self.remember(token)}


def kite_config(keys: KeyPair, **overrides: Any) -> Config:
    settings: dict[str, Any] = {
        "username": "alice",
        "environment": "prod",
        "region": "eu",
        "kontrol_user": KONTROL_USER,
        "kontrol_key": keys.public_pem,
        "kontrol_url": KONTROL_URL,
        "ip": "127.0.0.1",
        "timeout": WAIT,
        "handshake_timeout": WAIT,
    }
    settings.update(overrides)
    return Config(**settings)


@pytest.fixture
def issuer(kontrol_keys: KeyPair, caplog: pytest.LogCaptureFixture) -> Any:
    """An Issuer; at teardown, fail if any secret it issued appears in the captured log."""
    caplog.set_level(logging.DEBUG)
    issuer = Issuer(kontrol_keys)
    yield issuer
    texts = [record.getMessage() for record in caplog.records]
    texts.append(caplog.text)
    leaked = find_leaks(texts, issuer.secrets)
    assert not leaked, f"a key or token fragment was logged: {leaked[0][:200]!r}"


class Counter:
    def __init__(self) -> None:
        self.calls = 0
        self.requests: list[Any] = []


@pytest.fixture
async def make_kite(kontrol_keys: KeyPair) -> AsyncIterator[Callable[..., Awaitable[Kite]]]:
    """Return ``await make_kite(name, **config_overrides)``: a started kite with authentication on."""
    kites: list[Kite] = []

    async def build(name: str = "math", **overrides: Any) -> Kite:
        kite = Kite(name, "1.0.0", config=kite_config(kontrol_keys, **overrides))
        kites.append(kite)
        await kite.start()
        return kite

    yield build
    for kite in kites:
        await kite.stop()


def add_counted(kite: Kite, name: str = "square", **options: Any) -> Counter:
    """Serve ``name`` (squares its argument) and count how often the handler runs."""
    counter = Counter()

    async def handler(request: Any, number: int) -> int:
        counter.calls += 1
        counter.requests.append(request)
        return number * number

    kite.handle(name, handler, **options)
    return counter


@pytest.fixture
async def caller() -> AsyncIterator[Kite]:
    """The identity of test clients: user bob's kite, never started."""
    kite = Kite("caller", "1.0.0", config=Config(username="bob", environment="prod", ip="127.0.0.1", timeout=WAIT))
    yield kite
    await kite.stop()


@pytest.fixture
async def connect(caller: Kite) -> AsyncIterator[Callable[..., Awaitable[Client]]]:
    """Return ``await connect(kite, auth=..., transport=..., **options)``: a connected Client."""
    clients: list[Client] = []

    async def factory(target: Kite, auth: dict[str, str] | None = None, transport: str = "websocket",
                      **options: Any) -> Client:
        options.setdefault("kite", caller)
        client = Client(target.url, auth=auth, transport=transport, timeout=WAIT, **options)
        clients.append(client)
        await client.connect()
        return client

    yield factory
    for client in clients:
        await client.close()


async def rejected(call: Awaitable[Any], issuer: Issuer) -> AuthenticationError:
    """Await ``call``, expect an authenticationError and check that its text contains no secret."""
    with pytest.raises(AuthenticationError) as caught:
        await call
    error = caught.value
    assert error.type == "authenticationError"
    assert not find_leaks([error.message], issuer.secrets), f"error message shows a secret: {error.message[:200]!r}"
    return error


# Anonymous callers


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_anonymous_call_rejected(make_kite, connect, issuer: Issuer, transport: str) -> None:
    kite = await make_kite()
    square = add_counted(kite)
    client = await connect(kite, transport=transport)

    error = await rejected(client.tell("square", 3), issuer)

    assert error.message == "No authentication information is provided"
    assert square.calls == 0
    # The connection stays usable after a rejection.
    assert await client.tell("kite.ping") == "pong"


async def test_ping_needs_no_auth(make_kite, connect, issuer: Issuer) -> None:
    kite = await make_kite()
    client = await connect(kite)
    assert await client.tell("kite.ping") == "pong"


# kite.key


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_kite_key_accepted(make_kite, connect, issuer: Issuer, transport: str) -> None:
    kite = await make_kite()
    square = add_counted(kite)
    client = await connect(kite, auth=issuer.kite_key("bob"), transport=transport)

    assert await client.tell("square", 4) == 16

    [request] = square.requests
    assert request.username == "bob"
    assert request.auth.type == "kiteKey"
    assert request.auth.claims["sub"] == "bob"


async def test_kite_key_from_untrusted_kontrol(make_kite, connect, issuer: Issuer,
                                               attacker_keys: KeyPair) -> None:
    kite = await make_kite()
    square = add_counted(kite)
    client = await connect(kite, auth=issuer.kite_key("bob", keys=attacker_keys))

    error = await rejected(client.tell("square", 4), issuer)

    assert error.message == "kiteKey: kontrol key is not trusted"
    assert square.calls == 0


# Tokens


@pytest.mark.parametrize("audience", ["/alice/prod/math", "/alice/prod", "/alice", "/alice//math", "/"])
async def test_token_for_audience_accepted(make_kite, connect, issuer: Issuer, audience: str) -> None:
    kite = await make_kite()
    square = add_counted(kite)
    client = await connect(kite, auth=issuer.token(audience))

    assert await client.tell("square", 5) == 25

    [request] = square.requests
    assert request.username == "bob"
    assert request.auth.type == "token"
    assert request.auth.claims["aud"] == audience


@pytest.mark.parametrize(
    ("audience", "expected"),
    [
        ("/alice/prod/other", 'audience: name "other" not allowed (/alice/prod/other)'),
        ("/carol/prod/math", 'audience: username "carol" not allowed (/carol/prod/math)'),
        ("/carol", 'audience: username "carol" not allowed (/carol)'),
        ("/alice/dev/math", 'audience: environment "dev" not allowed (/alice/dev/math)'),
    ],
    ids=["other-kite", "other-user", "other-user-only", "other-environment"],
)
async def test_token_for_other_audience_rejected(make_kite, connect, issuer: Issuer, audience: str,
                                                 expected: str) -> None:
    kite = await make_kite()
    square = add_counted(kite)
    client = await connect(kite, auth=issuer.token(audience))

    error = await rejected(client.tell("square", 5), issuer)

    assert error.message == f"token: {expected}"
    assert square.calls == 0


async def test_token_from_other_issuer_rejected(make_kite, connect, issuer: Issuer) -> None:
    kite = await make_kite()
    square = add_counted(kite)
    client = await connect(kite, auth=issuer.token(issuer="mallory"))

    error = await rejected(client.tell("square", 5), issuer)

    assert error.message == "token: issuer is not trusted: mallory"
    assert square.calls == 0


async def test_expired_token_without_renewal(make_kite, connect, issuer: Issuer) -> None:
    kite = await make_kite()
    square = add_counted(kite)
    # Expired an hour ago, far outside the kite's 5 minute leeway.
    client = await connect(kite, auth=issuer.token(ttl=-3600))

    error = await rejected(client.tell("square", 6), issuer)

    assert error.message.startswith("token: token is expired by ")
    assert square.calls == 0


@pytest.mark.parametrize("stale", ["expired", "rotated-key"])
async def test_stale_token_renewed_and_retried(make_kite, connect, issuer: Issuer, attacker_keys: KeyPair,
                                               stale: str) -> None:
    """A kite's "token is expired" reply makes the client renew once and call again."""
    kite = await make_kite()
    square = add_counted(kite)
    # A token signed by a key the kite does not know is what callers hold after Kontrol rotated its keys.
    old = issuer.token(ttl=-3600) if stale == "expired" else issuer.token(keys=attacker_keys)
    fresh = issuer.token()
    renewals: list[str] = []

    async def renew() -> str:
        renewals.append("renew")
        return fresh["key"]

    client = await connect(kite, auth=old, renew_token=renew)

    assert await client.tell("square", 6) == 36

    assert renewals == ["renew"]
    assert client.auth == fresh
    assert square.calls == 1
    assert square.requests[0].auth.claims["jti"]
    # Later calls use the new token without renewing again.
    assert await client.tell("square", 7) == 49
    assert renewals == ["renew"]


async def test_token_renewed_before_expiry(make_kite, connect, issuer: Issuer) -> None:
    """A token within 30 s of its exp is renewed in the background, without any call failing."""
    kite = await make_kite()
    add_counted(kite)
    fresh = issuer.token()
    renewed = asyncio.Event()

    async def renew() -> str:
        renewed.set()
        return fresh["key"]

    # Valid for 10 more seconds, so it is inside the 30 s renewal window from the start.
    client = await connect(kite, auth=issuer.token(ttl=10), renew_token=renew)

    await asyncio.wait_for(renewed.wait(), WAIT)
    assert client.auth == fresh
    assert await client.tell("square", 2) == 4


# Per-method and kite-wide settings


async def test_method_without_auth(make_kite, connect, issuer: Issuer) -> None:
    kite = await make_kite()
    public = add_counted(kite, "public", auth=False)
    private = add_counted(kite, "private")
    client = await connect(kite)

    assert await client.tell("public", 3) == 9
    await rejected(client.tell("private", 3), issuer)

    assert public.calls == 1
    assert private.calls == 0
    # Without authentication the handler sees the username the caller claimed.
    assert public.requests[0].username == "bob"
    assert public.requests[0].auth is None


async def test_kite_wide_disable(make_kite, connect, issuer: Issuer) -> None:
    kite = await make_kite(disable_authentication=True)
    square = add_counted(kite)
    guarded = add_counted(kite, "guarded", auth=True)
    client = await connect(kite)

    assert await client.tell("square", 3) == 9
    # auth=True on a method overrides the kite-wide setting.
    error = await rejected(client.tell("guarded", 3), issuer)

    assert error.message == "No authentication information is provided"
    assert square.calls == 1
    assert guarded.calls == 0


# Authenticator types


async def test_custom_authenticator_type(make_kite, connect, issuer: Issuer) -> None:
    kite = await make_kite()
    square = add_counted(kite)
    passphrase = issuer.remember("open-sesame-4f1d9c")
    seen_keys: list[str] = []

    def check_passphrase(key: str) -> str:
        seen_keys.append(key)
        if key != passphrase:
            raise AuthenticatorError("wrong passphrase")
        return "carol"

    kite.authenticators.register("custom", check_passphrase)
    good = await connect(kite, auth={"type": "custom", "key": passphrase})
    bad = await connect(kite, auth={"type": "custom", "key": "guess"})

    assert await good.tell("square", 8) == 64
    error = await rejected(bad.tell("square", 8), issuer)

    assert error.message == "custom: wrong passphrase"
    assert seen_keys == [passphrase, "guess"]
    assert square.calls == 1
    assert square.requests[0].username == "carol"
    assert square.requests[0].auth.type == "custom"


async def test_unknown_auth_type_rejected(make_kite, connect, issuer: Issuer) -> None:
    kite = await make_kite()
    square = add_counted(kite)
    client = await connect(kite, auth={"type": "sessionID", "key": "abc"})

    error = await rejected(client.tell("square", 2), issuer)

    assert error.message == "Unknown authentication type: sessionID"
    assert square.calls == 0


# Trust by connection direction


async def test_dialed_connection_trusted(make_kite, connect, issuer: Issuer) -> None:
    """Kite A trusts calls without credentials on a connection A dialed.

    The same method called over a connection that A accepted is rejected,
    even when the caller is the same peer kite B.
    """
    kite_a = await make_kite("a")
    kite_b = await make_kite("b")
    secret = Counter()

    @kite_a.handle("secret")
    async def tell_secret(request: Any) -> str:
        secret.calls += 1
        secret.requests.append(request)
        return "the secret"

    @kite_b.handle("ask", auth=False)
    async def ask(request: Any) -> str:
        return await request.tell("secret", timeout=WAIT)

    a_to_b = await connect(kite_b, kite=kite_a)
    assert await a_to_b.tell("ask") == "the secret"
    assert secret.calls == 1
    assert secret.requests[0].connection.dialed is True
    assert secret.requests[0].auth is None

    b_to_a = await connect(kite_a, kite=kite_b)
    error = await rejected(b_to_a.tell("secret"), issuer)

    assert error.message == "No authentication information is provided"
    assert secret.calls == 1


async def test_accepted_connection_never_trusted(make_kite, connect, issuer: Issuer) -> None:
    """A caller claiming the kite's own identity gets no trust on an accepted connection."""
    kite = await make_kite()
    square = add_counted(kite)
    client = await connect(kite, kite=kite)

    await rejected(client.tell("square", 2), issuer)

    assert square.calls == 0


async def test_rejections_keep_other_callers_working(make_kite, connect, issuer: Issuer) -> None:
    kite = await make_kite()
    square = add_counted(kite)
    honest = await connect(kite, auth=issuer.kite_key("bob"))
    attackers = [await connect(kite, auth=auth) for auth in (
        None,
        {"type": "token", "key": "not.a.token"},
        {"type": "kiteKey", "key": "x" * 10},
        issuer.token("/carol"),
    )]

    errors = await asyncio.gather(*(rejected(client.tell("square", 2), issuer) for client in attackers))

    assert len(errors) == 4
    assert await honest.tell("square", 9) == 81
    assert square.calls == 1


def test_leak_check_finds_fragments(kontrol_keys: KeyPair) -> None:
    """The log check above would catch a token or a private key line."""
    keys = kontrol_keys
    token = sign_token(keys.private_pem, issuer="kontrol", subject="bob", audience="/")
    header, payload, signature = token.split(".")
    key_line = keys.private_pem.splitlines()[3]

    assert find_leaks([f"rejected {token}"], [token]) == [f"rejected {token}"]
    assert find_leaks([f"sig={signature[:-1]}x", f"body {payload}"], [token]) == [f"body {payload}"]
    assert find_leaks([f"header {header}"], [token]) == []
    assert find_leaks([f"key: {key_line}"], [keys.private_pem]) == [f"key: {key_line}"]
