"""kite.key location, reading, writing, self-check and its place in Config.load."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from kitelib.auth import (
    KiteKeyError,
    KiteKeyNotFoundError,
    check_kite_key,
    find_kite_key,
    kite_key_candidates,
    kite_key_path,
    load_kite_key,
    sign_kite_key,
    write_kite_key,
)
from kitelib.config import Config

from .helpers import b64url, forge, kite_key_claims, sign

posix_only = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")


@pytest.fixture
def homes(tmp_path, monkeypatch):
    """Point HOME and XDG_CONFIG_HOME at empty temporary directories and unset KITE_HOME."""
    home = tmp_path / "home"
    config_home = tmp_path / "xdg"
    home.mkdir()
    config_home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config_home))
    monkeypatch.delenv("KITE_HOME", raising=False)
    return {"home": home, "config": config_home / "kite" / "kite.key", "go": home / ".kite" / "kite.key"}


@pytest.fixture
def kite_key(kontrol_keys) -> str:
    return sign_kite_key(kontrol_keys.private_pem, username="alice", issuer="kontrol",
                         kontrol_url="http://127.0.0.1:4000/kite")


def put(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------
# Location


@pytest.mark.skipif(os.name != "posix" or os.uname().sysname != "Linux", reason="XDG paths are the Linux layout")
def test_candidates_without_kite_home(homes):
    assert kite_key_candidates() == [homes["config"], homes["go"]]
    assert kite_key_path() == homes["config"]


def test_candidates_with_kite_home(homes, tmp_path, monkeypatch):
    monkeypatch.setenv("KITE_HOME", str(tmp_path / "kh"))
    assert kite_key_candidates() == [tmp_path / "kh" / "kite.key"]
    assert kite_key_path() == tmp_path / "kh" / "kite.key"


def test_find_none(homes):
    assert find_kite_key() is None


def test_find_go_location_fallback(homes, kite_key):
    put(homes["go"], kite_key)
    assert find_kite_key() == homes["go"]


def test_find_platform_location_first(homes, kite_key):
    put(homes["go"], kite_key)
    put(homes["config"], kite_key)
    assert find_kite_key() == homes["config"]


def test_find_kite_home_exclusive(homes, kite_key, tmp_path, monkeypatch):
    put(homes["go"], kite_key)
    put(homes["config"], kite_key)
    monkeypatch.setenv("KITE_HOME", str(tmp_path / "kh"))
    assert find_kite_key() is None
    put(tmp_path / "kh" / "kite.key", kite_key)
    assert find_kite_key() == tmp_path / "kh" / "kite.key"


# ---------------------------------------------------------------------------
# Reading


def test_load_not_found_message(homes):
    with pytest.raises(KiteKeyNotFoundError) as info:
        load_kite_key()
    message = str(info.value)
    assert str(homes["config"]) in message
    assert str(homes["go"]) in message
    assert "kitectl register" in message
    assert "KITE_HOME" in message


def test_load_explicit_path_not_found(tmp_path):
    with pytest.raises(KiteKeyNotFoundError, match="missing.key"):
        load_kite_key(tmp_path / "missing.key")


def test_load_trims_whitespace(homes, kite_key):
    put(homes["go"], f"\n  {kite_key}\r\n\n")
    key = load_kite_key()
    assert key.token == kite_key
    assert key.path == homes["go"]
    assert key.claims["sub"] == "alice"


def test_load_explicit_path(tmp_path, kite_key):
    path = put(tmp_path / "elsewhere.key", kite_key)
    assert load_kite_key(path).token == kite_key
    assert load_kite_key(str(path)).path == path


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "is empty"),
        ("  \n", "is empty"),
        ("not-a-jwt", "expected 3 dot-separated parts"),
        ("e30." + b64url(b"{broken json with secret-looking-text") + ".", "claims is not valid JSON"),
    ],
)
def test_load_malformed_names_file(tmp_path, content, expected):
    path = put(tmp_path / "kite.key", content)
    with pytest.raises(KiteKeyError) as info:
        load_kite_key(path)
    message = str(info.value)
    assert str(path) in message
    assert expected in message
    assert "secret-looking-text" not in message
    assert b64url(b"{broken json with secret-looking-text") not in message


def test_load_oversized_file(tmp_path):
    path = tmp_path / "kite.key"
    path.write_bytes(b"A" * (2 * 1024 * 1024))
    with pytest.raises(KiteKeyError, match="larger than 65536 bytes"):
        load_kite_key(path)


def test_load_binary_file(tmp_path):
    path = tmp_path / "kite.key"
    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(KiteKeyError, match="not ASCII text"):
        load_kite_key(path)


def test_load_directory(tmp_path):
    (tmp_path / "kite.key").mkdir()
    with pytest.raises(KiteKeyError, match="cannot read kite.key"):
        load_kite_key(tmp_path / "kite.key")


def test_load_logs_no_token(homes, kite_key, caplog):
    caplog.set_level(logging.DEBUG)
    put(homes["go"], kite_key)
    load_kite_key()
    for part in kite_key.split("."):
        assert part not in caplog.text


# ---------------------------------------------------------------------------
# Writing


@posix_only
def test_write_modes(homes, kite_key):
    path = write_kite_key(kite_key)
    assert path == homes["config"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_text() == kite_key


@posix_only
def test_write_modes_with_strict_umask(tmp_path, kite_key):
    previous = os.umask(0o077)
    try:
        path = write_kite_key(kite_key, tmp_path / "a" / "b" / "kite.key")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_write_to_kite_home(homes, kite_key, tmp_path, monkeypatch):
    monkeypatch.setenv("KITE_HOME", str(tmp_path / "kh"))
    path = write_kite_key(kite_key)
    assert path == tmp_path / "kh" / "kite.key"
    assert load_kite_key().token == kite_key


@posix_only
def test_write_replaces_existing(tmp_path, kite_key, kontrol_keys):
    path = put(tmp_path / "kite.key", "old content")
    path.chmod(0o644)
    newer = sign(kite_key_claims(kontrol_keys.public_pem), kontrol_keys)
    write_kite_key(newer, path)
    assert path.read_text() == newer
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(item.name for item in tmp_path.iterdir()) == ["kite.key"]


def test_write_strips_whitespace(tmp_path, kite_key):
    path = write_kite_key(f"  {kite_key}\n", tmp_path / "kite.key")
    assert path.read_text() == kite_key


def test_write_invalid_keeps_old(tmp_path, kite_key):
    path = put(tmp_path / "kite.key", kite_key)
    with pytest.raises(KiteKeyError):
        write_kite_key("garbage", path)
    assert path.read_text() == kite_key
    assert sorted(item.name for item in tmp_path.iterdir()) == ["kite.key"]


def test_write_then_load_round_trip(homes, kite_key):
    write_kite_key(kite_key)
    key = load_kite_key()
    assert key.token == kite_key
    assert key.claims["kontrolURL"] == "http://127.0.0.1:4000/kite"


# ---------------------------------------------------------------------------
# Self-check


def test_check_valid(kite_key):
    check = check_kite_key(kite_key)
    assert check.signature_ok
    assert check.error is None
    assert check.header == {"alg": "RS256", "typ": "JWT"}
    assert check.claims["sub"] == "alice"


def test_check_forged(kontrol_keys, attacker_keys):
    check = check_kite_key(sign(kite_key_claims(kontrol_keys.public_pem), attacker_keys))
    assert not check.signature_ok
    assert check.error == "signature does not verify with the key in the kontrolKey claim"
    assert check.claims["sub"] == "bob"


def test_check_missing_kontrol_key(kontrol_keys):
    check = check_kite_key(sign(kite_key_claims(kontrol_keys.public_pem, kontrolKey=None), kontrol_keys))
    assert not check.signature_ok
    assert "kontrolKey claim is missing" in check.error


def test_check_bad_kontrol_key(kontrol_keys):
    check = check_kite_key(sign(kite_key_claims("not a pem"), kontrol_keys))
    assert not check.signature_ok
    assert "kontrolKey claim is not usable" in check.error


def test_check_alg_none(kontrol_keys):
    check = check_kite_key(forge({"alg": "none"}, kite_key_claims(kontrol_keys.public_pem)))
    assert not check.signature_ok
    assert "unexpected signing method" in check.error


def test_check_malformed_raises():
    with pytest.raises(KiteKeyError):
        check_kite_key("a.b")


# ---------------------------------------------------------------------------
# Config.load: defaults < kite.key < KITE_* variables


def test_config_defaults_without_key(homes):
    config = Config.load(environ={})
    assert config.username == "unknown"
    assert config.kite_key == ""
    assert config.kontrol_url == ""


def test_config_key_over_defaults(homes, kite_key, kontrol_keys):
    put(homes["go"], kite_key)
    config = Config.load(environ={})
    assert config.username == "alice"
    assert config.kontrol_user == "kontrol"
    assert config.kontrol_url == "http://127.0.0.1:4000/kite"
    assert config.kontrol_key == kontrol_keys.public_pem
    assert config.kite_key == kite_key
    assert config.id


def test_config_environment_over_key(homes, kite_key):
    put(homes["config"], kite_key)
    config = Config.load(environ={"KITE_USERNAME": "bob", "KITE_KONTROL_URL": "http://127.0.0.1:5000/kite"})
    assert config.username == "bob"
    assert config.kontrol_url == "http://127.0.0.1:5000/kite"
    assert config.kontrol_user == "kontrol"


def test_config_kite_home_key(homes, kite_key, tmp_path, monkeypatch):
    put(homes["go"], "garbage that would fail if read")
    put(tmp_path / "kh" / "kite.key", kite_key)
    monkeypatch.setenv("KITE_HOME", str(tmp_path / "kh"))
    assert Config.load(environ={}).username == "alice"


def test_config_explicit_missing_key_raises(tmp_path):
    with pytest.raises(KiteKeyNotFoundError):
        Config.load(kite_key_path=tmp_path / "none.key", environ={})


def test_config_malformed_key_raises(homes):
    put(homes["config"], "garbage")
    with pytest.raises(KiteKeyError):
        Config.load(environ={})
