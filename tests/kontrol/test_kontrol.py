"""Kontrol over real sockets on every storage backend: registration, discovery, tokens, watches, failures."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import httpx
import pytest

from kitelib import AuthenticationError, Client, Config, GenericError, Kite
from kitelib.auth.tokens import decode_unverified, generate_key_pair, sign_kite_key
from kontrol import machine
from kontrol.server import Kontrol

from .conftest import HEARTBEAT, LIVENESS, KontrolFactory, config_for, write_kite_home

REPO = Path(__file__).resolve().parents[2]


async def watch_events(caller: Kite, query: dict) -> tuple[asyncio.Queue, object]:
    events: asyncio.Queue = asyncio.Queue()
    watch = await caller.watch_kites(query, events.put_nowait)
    return events, watch


async def next_event(events: asyncio.Queue, action: str, kite_id: str, timeout: float) -> object:
    """Return the first event with this action and kite id, skipping others."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {action} event for {kite_id} within {timeout}s"
        event = await asyncio.wait_for(events.get(), remaining)
        if event.action == action and event.identity.id == kite_id:
            return event


async def test_register_and_find_with_token(kontrol: Kontrol, make_kite) -> None:
    math = await make_kite(kontrol, "math")
    caller = await make_kite(kontrol, "caller", register=False)
    clients = await caller.get_kites(username="alice", environment="unknown", name="math")
    assert [client.identity.id for client in clients] == [math.id]
    client = clients[0]
    assert client.url == math.url
    assert client.auth["type"] == "token"
    claims = decode_unverified(client.auth["key"]).claims
    assert claims["aud"] == "/alice/unknown/math"
    assert claims["iss"] == "kontrol"
    assert claims["sub"] == "alice"
    async with client:
        assert await client.tell("square", 7) == 49
    # With a gap the client sends the gap-free prefix, so the token's audience is the user.
    gapped = await caller.get_kites(username="alice", name="math")
    assert decode_unverified(gapped[0].auth["key"]).claims["aud"] == "/alice"


async def test_get_kites_result_shape(kontrol: Kontrol, make_kite) -> None:
    math = await make_kite(kontrol, "math")
    caller = await make_kite(kontrol, "caller", register=False)
    result = await caller.kontrol.tell("getKites", {"query": {"username": "alice", "name": ""}})
    entries = [entry for entry in result["kites"] if entry["kite"]["id"] == math.id]
    assert len(entries) == 1
    assert set(entries[0]) == {"kite", "url", "keyId", "token"}
    assert entries[0]["keyId"] == kontrol.keys.current.id


async def test_token_for_another_kite_rejected(kontrol: Kontrol, make_kite) -> None:
    await make_kite(kontrol, "math")
    other = await make_kite(kontrol, "other")
    caller = await make_kite(kontrol, "caller", register=False)
    math_client = (await caller.get_kites(username="alice", environment="unknown", name="math"))[0]
    # A token for the math kite's audience presented to the other kite.
    async with Client(other.url, kite=caller, auth=math_client.auth) as client:
        with pytest.raises(AuthenticationError, match="audience"):
            await client.tell("square", 2)


async def test_query_gap_and_version_rules(kontrol: Kontrol, make_kite) -> None:
    caller = await make_kite(kontrol, "caller", register=False)
    with pytest.raises(GenericError, match="Query option is not set: environment"):
        await caller.kontrol.tell("getKites", {"query": {"username": "alice", "name": "math"}})
    with pytest.raises(GenericError, match="Empty username field"):
        await caller.kontrol.tell("getKites", {"query": {"name": "math"}})
    await make_kite(kontrol, "math")
    found = await caller.kontrol.tell("getKites", {"query": {"username": "alice", "environment": "unknown",
                                                             "name": "math", "version": ">=1.0.0, <2"}})
    assert len(found["kites"]) == 1
    none = await caller.kontrol.tell("getKites", {"query": {"username": "alice", "environment": "unknown",
                                                            "name": "math", "version": "~>2.1"}})
    assert none["kites"] == []
    with pytest.raises(GenericError):
        await caller.kontrol.tell("getKites", {"query": {"username": "alice", "environment": "unknown",
                                                         "name": "math", "version": ">=>1"}})


async def test_get_kites_no_match_empty(kontrol: Kontrol, make_kite) -> None:
    caller = await make_kite(kontrol, "caller", register=False)
    assert await caller.get_kites(username="alice", name="nothing-here") == []


async def test_clean_disconnect_deregisters(kontrol: Kontrol, make_kite) -> None:
    caller = await make_kite(kontrol, "caller", register=False)
    events, _watch = await watch_events(caller, {"username": "alice", "name": "math"})
    math = await make_kite(kontrol, "math")
    registered = await next_event(events, "REGISTER", math.id, 5)
    assert registered.url == math.url
    assert registered.token
    started = time.monotonic()
    await math.stop()
    await next_event(events, "DEREGISTER", math.id, 5)
    assert time.monotonic() - started < LIVENESS
    assert await caller.get_kites(username="alice", name="math") == []


async def test_kill9_gone_and_watcher_told(kontrols: KontrolFactory, kontrol: Kontrol, make_kite, tmp_path) -> None:
    caller = await make_kite(kontrol, "caller", register=False)
    events, _watch = await watch_events(caller, {"username": "alice", "name": "victim"})
    env = write_kite_home(tmp_path / "victim", kontrol.own_kite_key("alice"))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.kontrol.kite_process", "victim", cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode().split()
        assert line[0] == "registered"
        kite_id = line[1]
        await next_event(events, "REGISTER", kite_id, 5)
        assert [c.identity.id for c in await caller.get_kites(username="alice", name="victim")] == [kite_id]
        started = time.monotonic()
        process.send_signal(signal.SIGKILL)
        await next_event(events, "DEREGISTER", kite_id, LIVENESS + 3)
        assert time.monotonic() - started <= LIVENESS + 1
        assert await caller.get_kites(username="alice", name="victim") == []
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def test_stopped_heartbeats_expire(kontrol: Kontrol, make_kite, tmp_path) -> None:
    """A kite that keeps its connection but stops pinging (SIGSTOP) is removed after the liveness window."""
    caller = await make_kite(kontrol, "caller", register=False)
    events, _watch = await watch_events(caller, {"username": "alice", "name": "frozen"})
    env = write_kite_home(tmp_path / "frozen", kontrol.own_kite_key("alice"))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.kontrol.kite_process", "frozen", cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        kite_id = (await asyncio.wait_for(process.stdout.readline(), 30)).decode().split()[1]
        await next_event(events, "REGISTER", kite_id, 5)
        started = time.monotonic()
        process.send_signal(signal.SIGSTOP)
        await next_event(events, "DEREGISTER", kite_id, LIVENESS + 5)
        elapsed = time.monotonic() - started
        assert elapsed >= LIVENESS - HEARTBEAT
        assert elapsed <= LIVENESS + 2
        assert await caller.get_kites(username="alice", name="frozen") == []
    finally:
        process.send_signal(signal.SIGCONT)
        process.kill()
        await process.wait()


async def test_restart_kites_register_again(kontrols: KontrolFactory, make_kite) -> None:
    first = await kontrols.start()
    math = await make_kite(first, "math")
    kite_key = first.own_kite_key("alice")
    await kontrols.stop(first)

    started = time.monotonic()
    second = await kontrols.start()
    caller = Kite("caller", "1.0.0", config=config_for(second, "alice", kite_key))
    try:
        deadline = started + 2 * HEARTBEAT + 3
        found = []
        while not found:
            assert time.monotonic() < deadline, "kite did not register again after the Kontrol restart"
            found = [c for c in await caller.get_kites(username="alice", name="math") if c.identity.id == math.id]
            if not found:
                await asyncio.sleep(0.1)
        async with found[0] as client:
            assert await client.tell("square", 3) == 9
    finally:
        await caller.kontrol.close()


async def test_duplicate_identity_rejected(kontrol: Kontrol, make_kite) -> None:
    math = await make_kite(kontrol, "math")
    impostor = Kite("math", "1.0.0", config=config_for(kontrol, "alice"))
    impostor.id = math.id
    try:
        with pytest.raises(GenericError, match="already registered from another live connection"):
            await impostor.kontrol.tell("register", {"url": "http://127.0.0.1:1/kite"})
    finally:
        await impostor.kontrol.close()
    # The same connection registering again overwrites.
    result = await math.kontrol.tell("register", {"url": math.url})
    assert result["url"] == math.url


async def test_two_kites_share_one_key(kontrol: Kontrol, make_kite) -> None:
    key = kontrol.own_kite_key("alice")
    first = await make_kite(kontrol, "math", kite_key=key)
    second = await make_kite(kontrol, "math", kite_key=key)
    assert first.id != second.id
    caller = await make_kite(kontrol, "caller", register=False)
    ids = {client.identity.id for client in await caller.get_kites(username="alice", name="math")}
    assert ids == {first.id, second.id}


async def test_register_rejects_bad_input(kontrol: Kontrol, make_kite) -> None:
    kite = await make_kite(kontrol, "math", register=False)
    with pytest.raises(GenericError, match="empty url"):
        await kite.kontrol.tell("register", {"url": ""})
    with pytest.raises(GenericError, match="invalid register URL"):
        await kite.kontrol.tell("register", {"url": "not a url"})
    async with Client(kontrol.url, kite=kite, auth=None) as anonymous:
        with pytest.raises(AuthenticationError, match="No authentication information"):
            await anonymous.tell("register", {"url": kite.url})


async def test_unknown_kontrol_key_rejected(kontrol: Kontrol) -> None:
    stranger_pair = generate_key_pair()
    stranger_key = sign_kite_key(stranger_pair.private_pem, username="mallory", issuer="kontrol",
                                 kontrol_url=kontrol.url)
    kite = Kite("math", "1.0.0", config=config_for(kontrol, "mallory", stranger_key))
    try:
        with pytest.raises(AuthenticationError, match="kontrol key is not trusted"):
            await kite.kontrol.tell("register", {"url": "http://127.0.0.1:1/kite"})
    finally:
        await kite.kontrol.close()


async def test_key_rotation_resigns_old_keys(kontrol: Kontrol, make_kite) -> None:
    old_key = kontrol.own_kite_key("alice")
    old_pair = kontrol.keys.current
    math = await make_kite(kontrol, "math", kite_key=old_key)
    caller = await make_kite(kontrol, "caller", register=False, kite_key=old_key)
    old_token_client = (await caller.get_kites(username="alice", name="math"))[0]

    new_id = await kontrol.rotate_keys()
    assert new_id != old_pair.id
    # A token signed by the retired pair still verifies on a kite that trusts that pair.
    async with old_token_client as client:
        assert await client.tell("square", 2) == 4

    late = Kite("late", "1.0.0", config=config_for(kontrol, "alice", old_key))
    await late.start()
    try:
        late.register()
        result = await late.wait_registered(timeout=10)
        assert result.kite_key
        assert result.public_key == kontrol.keys.current.public_pem
        claims = decode_unverified(result.kite_key).claims
        assert claims["kontrolKey"] == kontrol.keys.current.public_pem
        assert claims["sub"] == "alice"
        assert late.config.kontrol_key == kontrol.keys.current.public_pem
        assert await late.get_key() == kontrol.keys.current.public_pem
    finally:
        await late.stop()
    assert math.id


async def test_get_token_and_renewal_rules(kontrol: Kontrol, make_kite) -> None:
    math = await make_kite(kontrol, "math")
    caller = await make_kite(kontrol, "caller", register=False)
    token = await caller.get_token({"id": math.id})
    assert decode_unverified(token).claims["aud"] == "/"
    assert await caller.get_token({"id": math.id}) == token
    assert await caller.get_token({"id": math.id}, force=True) != token
    with pytest.raises(GenericError, match="no kites found"):
        await caller.get_token({"id": "00000000-0000-4000-8000-000000000000"})
    await make_kite(kontrol, "math")
    with pytest.raises(GenericError, match="query matches more than one kite"):
        await caller.get_token({"username": "alice", "environment": "unknown", "name": "math"})


async def test_cancel_watcher_stops_events(kontrol: Kontrol, make_kite) -> None:
    caller = await make_kite(kontrol, "caller", register=False)
    events, watch = await watch_events(caller, {"username": "alice", "name": "math"})
    await watch.cancel()
    with pytest.raises(GenericError, match="watcher not found"):
        await watch.cancel()
    sentinel_events, _sentinel = await watch_events(caller, {"username": "alice", "name": "math"})
    math = await make_kite(kontrol, "math")
    await next_event(sentinel_events, "REGISTER", math.id, 5)
    assert events.empty()


async def test_register_machine_password(kontrol: Kontrol) -> None:
    await kontrol.storage.set_user("bob", machine.hash_password("s3cret"))
    newcomer = Kite("kitectl", "1.0.0", config=Config(username="bob", timeout=5))
    answers = iter(["wrong", "s3cret"])
    newcomer.handle("kite.getPass", lambda request: next(answers), spread_args=False)
    async with Client(kontrol.url, kite=newcomer) as client:
        with pytest.raises(GenericError, match="invalid password"):
            await client.tell("registerMachine", {"authType": "password", "username": "bob"})
        kite_key = await client.tell("registerMachine", {"authType": "password", "username": "bob"})
        with pytest.raises(GenericError, match="not enabled"):
            await client.tell("registerMachine", {"authType": "open"})
        with pytest.raises(GenericError, match="unknown user"):
            await client.tell("registerMachine", {"authType": "password", "username": "carol"})
    claims = decode_unverified(kite_key).claims
    assert claims["sub"] == "bob"
    assert claims["iss"] == "kontrol"
    assert claims["kontrolKey"] == kontrol.keys.current.public_pem
    assert claims["kontrolURL"] == kontrol.url


async def test_register_machine_token_once(kontrol: Kontrol) -> None:
    token = await machine.create_registration_token(kontrol.storage, "dave")
    newcomer = Kite("kitectl", "1.0.0", config=Config(timeout=5))
    async with Client(kontrol.url, kite=newcomer) as client:
        with pytest.raises(GenericError, match="for user 'dave'"):
            await client.tell("registerMachine", {"authType": "token", "username": "erin", "token": token})
        kite_key = await client.tell("registerMachine", {"authType": "token", "username": "dave", "token": token})
        assert decode_unverified(kite_key).claims["sub"] == "dave"
        with pytest.raises(GenericError, match="already used"):
            await client.tell("registerMachine", {"authType": "token", "username": "dave", "token": token})


async def test_http_register_and_heartbeat(kontrol: Kontrol, make_kite) -> None:
    kite = await make_kite(kontrol, "httpkite", register=False)
    base = kontrol.url.removesuffix("/kite")
    async with httpx.AsyncClient(timeout=5) as http:
        bad = await http.post(base + "/register", content=b"{nope")
        assert bad.status_code == 400
        assert "wrong register input" in bad.json()["err"]
        assert (await http.get(base + "/heartbeat")).text == "query id is empty"
        assert (await http.get(base + "/heartbeat", params={"id": kite.id})).text == "registeragain"
    kite.register_http()
    await kite.wait_registered(timeout=10)
    caller = await make_kite(kontrol, "caller", register=False)
    assert [c.identity.id for c in await caller.get_kites(username="alice", name="httpkite")] == [kite.id]
    async with httpx.AsyncClient(timeout=5) as http:
        assert (await http.get(base + "/heartbeat", params={"id": kite.id})).text == "pong"


async def test_forgotten_kite_comes_back(kontrol: Kontrol, make_kite) -> None:
    math = await make_kite(kontrol, "math")
    caller = await make_kite(kontrol, "caller", register=False)
    await kontrol.storage.delete(math.identity)
    deadline = time.monotonic() + 2 * HEARTBEAT + 3
    while not await caller.get_kites(username="alice", name="math"):
        assert time.monotonic() < deadline, "kite was not written again after storage lost it"
        await asyncio.sleep(0.1)


async def test_kite_keeps_serving_without_kontrol(tmp_path, kontrols: KontrolFactory) -> None:
    """Kontrol down at start: the kite serves its own methods and registers once Kontrol is up."""
    first = await kontrols.start()
    kite_key = first.own_kite_key("alice")
    await kontrols.stop(first)
    kite = Kite("math", "1.0.0", config=config_for(first, "alice", kite_key))
    kite.handle("square", lambda request, number: number * number, auth=False)
    await kite.start()
    try:
        kite.register()
        async with Client(kite.url, kite=Kite("c", "1.0.0", config=Config())) as client:
            assert await client.tell("square", 5) == 25
        await kontrols.start()
        await kite.wait_registered(timeout=15)
    finally:
        await kite.stop()


@pytest.mark.parametrize("kontrols", ["etcd", "postgres"], indirect=True)
async def test_storage_outage_reports_error(kontrols: KontrolFactory, request, make_kite) -> None:
    """While storage is down, queries fail with 'storage unavailable'; afterwards live kites are back."""
    if kontrols.kind == "etcd":
        server = request.getfixturevalue("private_etcd_server")
        kontrols.storage_settings = {"endpoint": server.endpoint, "prefix": "/outage", "timeout": 2.0}
    else:
        server = request.getfixturevalue("private_postgres_server")
        kontrols.storage_settings = {"dsn": server.dsn, "timeout": 2.0, "sweep_interval": 0.2}
    kontrol = await kontrols.start()
    math = await make_kite(kontrol, "math")
    caller = await make_kite(kontrol, "caller", register=False)
    server.stop()
    with pytest.raises(GenericError, match="storage unavailable"):
        await caller.get_kites(username="alice", name="math")
    server.start()
    deadline = time.monotonic() + 20
    found = []
    while not found:
        assert time.monotonic() < deadline, "Kontrol did not recover after storage came back"
        try:
            found = await caller.get_kites(username="alice", name="math")
        except GenericError:
            found = []
        if not found:
            await asyncio.sleep(0.2)
    assert [client.identity.id for client in found] == [math.id]


async def test_running_kontrol_picks_up_rotation(kontrols: KontrolFactory, monkeypatch) -> None:
    """A rotation made by another process (kitectl kontrol keys rotate) reaches a running Kontrol."""
    import kontrol.server as server_module
    from kontrol.keys import KeyRing

    monkeypatch.setattr(server_module, "KEY_RELOAD_INTERVAL", 0.1)
    running = await kontrols.start()
    old_id = running.keys.current.id
    other = kontrols.open_storage()
    await other.start()
    try:
        ring = KeyRing(other)
        await ring.load()
        new, _old = await ring.rotate()
    finally:
        await other.close()
    deadline = time.monotonic() + 10
    # The other process creates the new pair before it retires the old one, so wait for both.
    while running.keys.current.id == old_id or not running.keys.get(old_id).deleted:
        assert time.monotonic() < deadline, "the running Kontrol did not load the new key pair"
        await asyncio.sleep(0.05)
    assert running.keys.current.id == new.id
    assert running.kite.config.kontrol_key == new.public_pem
    assert running.keys.get(old_id).deleted
