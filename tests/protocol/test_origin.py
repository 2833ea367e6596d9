"""The origin rule on its own: no sockets, just headers in and a decision out."""

from __future__ import annotations

import pytest

from kitelib.protocol.origin import OriginError, OriginPolicy, normalize_origin


@pytest.mark.parametrize(("text", "expected"), [
    ("https://App.Example.test", "https://app.example.test"),
    ("https://app.example.test:443", "https://app.example.test"),
    ("http://app.example.test:80/", "http://app.example.test"),
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ("http://[::1]:3000", "http://[::1]:3000"),
    ("null", "null"),
])
def test_normalize_origin(text: str, expected: str) -> None:
    assert normalize_origin(text) == expected


@pytest.mark.parametrize("text", ["app.example.test", "https://app.example.test/path", "https://a.test?x=1",
                                  "http://a.test:99999"])
def test_normalize_rejects_non_origins(text: str) -> None:
    with pytest.raises(ValueError, match="is not an origin"):
        normalize_origin(text)


def test_empty_or_star_list_accepts_everything() -> None:
    for policy in (OriginPolicy(), OriginPolicy(["*"]), OriginPolicy(["", " "])):
        assert policy.accepts_all
        assert policy.allows("https://anyone.example.test", "kite.example.test")
        assert policy.allows("null")


def test_allow_list_decisions() -> None:
    policy = OriginPolicy(["https://app.example.test", "https://*.pages.example.test"])

    assert policy.allows(None, "kite.example.test")  # not a browser
    assert policy.allows("https://app.example.test:443")
    assert policy.allows("https://docs.pages.example.test")
    assert policy.allows("http://kite.example.test:6000", "kite.example.test:6000")  # the kite's own page
    assert policy.allows("https://kite.example.test", "kite.example.test:443", scheme="https")
    assert not policy.allows("http://app.example.test")  # another scheme is another origin
    assert not policy.allows("https://pages.example.test")
    assert not policy.allows("https://evil.example.test", "kite.example.test")
    assert not policy.allows("http://kite.example.test:6001", "kite.example.test:6000")
    assert not policy.allows("null", "kite.example.test")
    assert not policy.allows("not an origin", "kite.example.test")


def test_bad_entry_names_itself() -> None:
    with pytest.raises(OriginError, match=r"invalid allowed origin: 'app\.example\.test' is not an origin"):
        OriginPolicy(["app.example.test"])
