"""The kite's Kontrol client against our Kontrol over real sockets.

Token renewal of clients from get_kites, shutdown on SIGTERM, HTTP
re-registration, key rotation seen by a running kite, and the redial
backoff. Kontrol runs on SQLite: none of these cases depends on the backend.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kitelib import AuthenticationError, Config, GenericError, Kite
from kitelib.auth.tokens import SignatureError, decode_unverified, sign_token, verify_signature
from kitelib.backoff import Backoff
from kontrol.server import Kontrol

from .conftest import HEARTBEAT, LIVENESS, KontrolFactory, write_kite_home
from .test_kontrol import next_event, watch_events

REPO = Path(__file__).resolve().parents[2]

sqlite_only = pytest.mark.parametrize("kontrols", ["sqlite"], indirect=True)


def record_methods(kontrol: Kontrol) -> list[str]:
    """Return a list that collects the name of every authenticated method call Kontrol runs."""
    methods: list[str] = []
    kontrol.kite.pre_handle(lambda request: methods.append(request.method))
    return methods


def add_counted_square(kite: Kite) -> list[Any]:
    """Serve ``counted_square`` on ``kite`` and return the list of requests its handler ran for."""
    requests: list[Any] = []

    async def counted_square(request: Any, number: int) -> int:
        requests.append(request)
        return number * number

    kite.handle("counted_square", counted_square)
    return requests


# Token renewal for clients from get_kites


@sqlite_only
async def test_renew_now_calls_get_token(kontrol: Kontrol, make_kite) -> None:
    math = await make_kite(kontrol, "math")
    caller = await make_kite(kontrol, "caller", register=False)
    methods = record_methods(kontrol)
    [client] = await caller.get_kites(username="alice", environment="unknown", name="math")
    old_token = client.auth["key"]

    async with client:
        new_token = await client._renewer.renew_now()

        assert methods.count("getToken") == 1
        assert new_token != old_token
        assert client.auth == {"type": "token", "key": new_token}
        claims = decode_unverified(new_token).claims
        # The renewal requests a token by id only, so the audience is "/", which every kite accepts.
        assert claims["aud"] == "/"
        assert claims["sub"] == "alice"
        assert await client.tell("square", 3) == 9
    assert client.identity.id == math.id


@sqlite_only
async def test_rejected_token_renewed_by_get_token(kontrol: Kontrol, make_kite) -> None:
    """A kite replying "token is expired" makes the client fetch a token from Kontrol and call again."""
    math = await make_kite(kontrol, "math")
    requests = add_counted_square(math)
    caller = await make_kite(kontrol, "caller", register=False)
    methods = record_methods(kontrol)
    [client] = await caller.get_kites(username="alice", environment="unknown", name="math")

    async with client:
        # The token as it would be 48 hours later: signed by Kontrol, expired an hour ago.
        expired = sign_token(kontrol.keys.current.private_key, issuer="kontrol", subject="alice",
                             audience="/alice/unknown/math", ttl=-3600, leeway=0)
        client.auth = {"type": "token", "key": expired}

        assert await client.tell("counted_square", 4) == 16

        assert methods.count("getToken") == 1
        assert client.auth["key"] != expired
        assert len(requests) == 1
        assert requests[0].auth.claims["aud"] == "/"


@sqlite_only
async def test_renewal_stops_when_target_gone(kontrol: Kontrol, make_kite,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="kitelib.auth.renewal")
    math = await make_kite(kontrol, "math")
    caller = await make_kite(kontrol, "caller", register=False)
    events, _watch = await watch_events(caller, {"username": "alice", "name": "math"})
    methods = record_methods(kontrol)
    [client] = await caller.get_kites(username="alice", environment="unknown", name="math")
    await client.connect()
    try:
        await math.stop()
        await next_event(events, "DEREGISTER", math.id, 5)

        with pytest.raises(GenericError, match="no kites found"):
            await asyncio.wait_for(client._renewer.renew_now(), 5)

        assert methods.count("getToken") == 1
        assert client._renewer.stopped
        # The renewer's task ended: nothing keeps asking Kontrol in the background.
        assert client._renewer._task.done()
        assert "token renewal stopped because the target kite is gone" in caplog.text
        # Later requests fail at once with the same error and do not reach Kontrol.
        with pytest.raises(GenericError, match="no kites found"):
            await asyncio.wait_for(client._renewer.renew_now(), 5)
        assert methods.count("getToken") == 1
    finally:
        await client.close()


# Shutdown on SIGTERM


@sqlite_only
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_run_leaves_kontrol_on_signal(kontrol: Kontrol, make_kite, tmp_path: Path, signum: int) -> None:
    """A kite in Kite.run() leaves Kontrol at once on the signal and exits 0."""
    caller = await make_kite(kontrol, "caller", register=False)
    events, _watch = await watch_events(caller, {"username": "alice", "name": "runner"})
    env = write_kite_home(tmp_path / "runner", kontrol.own_kite_key("alice"))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.kontrol.run_kite", "runner", cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode().split()
        assert line[0] == "registered", line
        kite_id = line[1]
        await next_event(events, "REGISTER", kite_id, 5)

        started = time.monotonic()
        process.send_signal(signum)
        await next_event(events, "DEREGISTER", kite_id, LIVENESS)
        elapsed = time.monotonic() - started

        # A kite that had just vanished would stay listed until the liveness window ends.
        assert elapsed < LIVENESS - HEARTBEAT, f"DEREGISTER took {elapsed:.2f}s"
        stdout, stderr = await asyncio.wait_for(process.communicate(), 10)
        assert process.returncode == 0, stderr.decode()[-2000:]
        assert stdout.decode().split()[-1] == "stopped"
        assert await caller.get_kites(username="alice", name="runner") == []
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


# HTTP registration


@sqlite_only
async def test_http_registers_again_on_registeragain(kontrol: Kontrol, make_kite,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kitelib.kontrolclient")
    kite = await make_kite(kontrol, "httpkite", register=False)
    caller = await make_kite(kontrol, "caller", register=False)
    registrations: asyncio.Queue = asyncio.Queue()
    kite.on_register(registrations.put_nowait)
    kite.register_http()
    await asyncio.wait_for(registrations.get(), 10)

    # Kontrol drops the kite's entry, so its next heartbeat gets "registeragain".
    await kontrol.registry.remove(kontrol.registry.owner_of(kite.id), "removed by the test")
    assert await caller.get_kites(username="alice", name="httpkite") == []

    await asyncio.wait_for(registrations.get(), 2 * HEARTBEAT + 3)

    assert "Kontrol asked" in caplog.text
    assert "to register again" in caplog.text
    found = await caller.get_kites(username="alice", name="httpkite")
    assert [client.identity.id for client in found] == [kite.id]


@sqlite_only
async def test_http_registers_again_after_restart(kontrols: KontrolFactory, make_kite) -> None:
    first = await kontrols.start()
    kite_key = first.own_kite_key("alice")
    kite = await make_kite(first, "httpkite", register=False, kite_key=kite_key)
    registrations: asyncio.Queue = asyncio.Queue()
    kite.on_register(registrations.put_nowait)
    kite.register_http()
    await asyncio.wait_for(registrations.get(), 10)

    await kontrols.stop(first)
    second = await kontrols.start()
    # Either a heartbeat got "registeragain", or one failed while Kontrol was down and the
    # first retry came 0.5 to 1.5 s later. Both end in a new POST /register.
    await asyncio.wait_for(registrations.get(), 2 * HEARTBEAT + 3)

    caller = await make_kite(second, "caller", register=False, kite_key=kite_key)
    found = await caller.get_kites(username="alice", name="httpkite")
    assert [client.identity.id for client in found] == [kite.id]
    assert second.registry.owner_of(kite.id) is not None


# Key rotation


@sqlite_only
async def test_running_kite_takes_rotated_key(kontrol: Kontrol, make_kite) -> None:
    """After a rotation, a registered kite learns the new key when it registers again."""
    math = await make_kite(kontrol, "math")
    caller = await make_kite(kontrol, "caller", register=False)
    registrations: asyncio.Queue = asyncio.Queue()
    math.on_register(registrations.put_nowait)
    old_public = kontrol.keys.current.public_pem

    await kontrol.rotate_keys()
    new_public = kontrol.keys.current.public_pem
    assert new_public != old_public

    # Kontrol now signs tokens for math with the new key, which math does not trust yet.
    [stale] = await caller.get_kites(username="alice", environment="unknown", name="math")
    with pytest.raises(SignatureError):
        verify_signature(decode_unverified(stale.auth["key"]), old_public)
    async with stale:
        with pytest.raises(AuthenticationError, match="token is expired"):
            await stale.tell("square", 2)

    # Cut math's connection to Kontrol, as a network failure would, so that math registers again.
    [link] = [connection for connection in kontrol.kite.connections
              if connection.remote_identity is not None and connection.remote_identity.id == math.id]
    await link.close()
    result = await asyncio.wait_for(registrations.get(), 10)

    assert result.public_key == new_public
    assert decode_unverified(result.kite_key).claims["kontrolKey"] == new_public
    assert math.config.kontrol_key == new_public
    assert math.config.kite_key == result.kite_key
    assert math.kontrol.client.auth == {"type": "kiteKey", "key": result.kite_key}
    [fresh] = await caller.get_kites(username="alice", environment="unknown", name="math")
    async with fresh:
        assert await fresh.tell("square", 3) == 9


# Redial backoff


def test_backoff_defaults_and_bounds() -> None:
    backoff = Backoff()
    assert (backoff.initial, backoff.factor, backoff.maximum, backoff.jitter) == (0.5, 1.5, 60.0, 0.5)

    delays = [backoff.next_delay() for _ in range(30)]

    for attempt, delay in enumerate(delays):
        interval = min(0.5 * 1.5 ** attempt, 60.0)
        assert interval * 0.5 <= delay <= interval * 1.5, f"attempt {attempt}: {delay}"
    # The interval stops growing at 60 s; jitter still spreads the delay over 30..90 s.
    assert all(30.0 <= delay <= 90.0 for delay in delays[15:])
    assert backoff.attempts == 30
    backoff.reset()
    assert backoff.attempts == 0
    assert 0.25 <= backoff.next_delay() <= 0.75


def test_backoff_jitter_differs_between_instances() -> None:
    """Kites that lost Kontrol together must not redial together."""
    first_delays = [Backoff().next_delay() for _ in range(200)]

    assert len(set(first_delays)) == len(first_delays)
    # ±50 % of 0.5 s: the spread covers most of 0.25..0.75 s.
    assert min(first_delays) < 0.35
    assert max(first_delays) > 0.65
    first_backoff, second_backoff = Backoff(), Backoff()
    assert [first_backoff.next_delay() for _ in range(5)] != [second_backoff.next_delay() for _ in range(5)]


def test_kontrol_clients_use_jittered_backoff() -> None:
    kites = [Kite(f"k{index}", "1.0.0", config=Config()) for index in range(2)]
    backoffs = [kite.kontrol.backoff for kite in kites]

    assert all(isinstance(backoff, Backoff) for backoff in backoffs)
    assert backoffs[0] is not backoffs[1]
    assert [(b.initial, b.factor, b.maximum, b.jitter) for b in backoffs] == [(0.5, 1.5, 60.0, 0.5)] * 2
    assert backoffs[0].next_delay() != backoffs[1].next_delay()
    for kite in kites:
        kite.executor.shutdown(wait=False)
