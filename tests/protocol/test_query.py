"""Query rules: prefix validation, version constraints and matching."""

import pytest

from kitelib.protocol.identity import Identity, IdentityError
from kitelib.protocol.query import (
    Query,
    VersionConstraintError,
    parse_constraint,
    parse_version,
)

KITE = Identity("alice", "production", "math", "1.2.3", "us-east", "host1", "6f1c-aa")


@pytest.mark.parametrize(
    "fields, message",
    [
        ({}, "Empty username field"),
        ({"name": "math"}, "Empty username field"),
        ({"username": "a", "name": "math"}, "Invalid query. Query option is not set: environment"),
        ({"username": "a", "version": "1.0.0"}, "Invalid query. Query option is not set: name"),
        ({"username": "a", "environment": "e", "id": "x"}, "Invalid query. Query option is not set: hostname"),
        ({"username": "a", "environment": "e", "name": "n", "region": "r"}, "Invalid query. Query option is not set: version"),
    ],
)
def test_validate_prefix_rejects(fields, message):
    with pytest.raises(IdentityError) as error:
        Query(**fields).validate_prefix()
    assert str(error.value) == message


@pytest.mark.parametrize(
    "fields",
    [
        {"username": "a"},
        {"username": "a", "environment": "e", "name": "n"},
        {"username": "a", "environment": "e", "name": "n", "version": ">= 1.0", "region": "r"},
        KITE.to_dict(),
    ],
)
def test_validate_prefix_accepts(fields):
    Query(**fields).validate_prefix()


def test_longest_prefix_stops_at_first_gap():
    query = Query(username="a", environment="e", version="1.0.0", id="x")
    assert query.longest_prefix() == Query(username="a", environment="e")
    assert Query(name="math").longest_prefix() == Query()


def test_storage_prefix_drops_constraint():
    query = Query(username="a", environment="e", name="n", version=">=1.0", region="r")
    assert query.storage_prefix() == Query(username="a", environment="e", name="n")
    exact = Query(username="a", environment="e", name="n", version="1.0.0", region="r")
    assert exact.storage_prefix() == exact


def test_from_dict_rejects_non_strings():
    with pytest.raises(IdentityError, match="'name' must be a string, got int"):
        Query.from_dict({"username": "a", "name": 5})
    with pytest.raises(IdentityError, match="must be a JSON object"):
        Query.from_dict(["a"])


def test_from_dict_ignores_unknown_and_null():
    query = Query.from_dict({"username": "a", "region": None, "extra": 1})
    assert query == Query(username="a")


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"username": "alice"}, True),
        ({"username": "bob"}, False),
        ({"username": "alice", "name": "math"}, True),
        ({"name": "math", "hostname": "host1"}, True),
        ({"name": "math", "hostname": "host2"}, False),
        ({"version": "1.2.3"}, True),
        ({"version": "1.2"}, False),
        ({"id": "6f1c-aa"}, True),
        ({"id": "6f1c"}, False),
        ({"username": "alice", "version": ">= 1.0, < 1.4"}, True),
        ({"username": "alice", "version": ">= 1.0, < 1.2"}, False),
        ({"username": "alice", "version": "~> 1.2"}, True),
        ({"username": "alice", "version": "~> 1.3"}, False),
        ({"username": "alice", "version": "!= 1.2.3"}, False),
        ({"username": "alice", "version": ">1.0", "region": "us"}, True),
        ({"username": "alice", "version": ">1.0", "region": "us-east", "hostname": "host"}, True),
        ({"username": "alice", "version": ">1.0", "region": "us-west"}, False),
        ({"username": "alice", "version": ">1.0", "hostname": "host1"}, False),
        ({"username": "alice", "version": ">1.0", "region": "us-east", "hostname": "host1", "id": "6f1c"}, True),
        ({"username": "alice", "name": "other", "version": ">1.0"}, False),
    ],
)
def test_query_matches(fields, expected):
    assert Query(**fields).matches(KITE) is expected


@pytest.mark.parametrize(
    "constraint, version, expected",
    [
        ("1.2.3", "1.2.3", True),
        ("=1.2", "1.2.0", True),
        ("= 1.2", "1.2.1", False),
        ("!= 1.2", "1.2.1", True),
        ("> 1.2", "1.2.0", False),
        ("> 1.2", "1.10", True),
        ("< 1.10", "1.9.9", True),
        (">= 1.0, < 1.4", "1.0.0", True),
        (">= 1.0, < 1.4", "1.4.0", False),
        (">=1.0,<1.4", "1.3.99", True),
        ("<= 2", "2.0.0", True),
        ("<= 2", "2.0.1", False),
        ("~> 1.2", "1.2.0", True),
        ("~> 1.2", "1.9.7", True),
        ("~> 1.2", "2.0.0", False),
        ("~> 1.2", "1.1.9", False),
        ("~> 1.2.3", "1.2.3", True),
        ("~> 1.2.3", "1.2.9", True),
        ("~> 1.2.3", "1.3.0", False),
        ("~> 1", "7.0.0", True),
        ("~>1.2", "v1.5", True),
        # Pre-releases: an ordering constraint only admits a pre-release of the same release.
        ("> 1.0", "1.1.0-beta", False),
        ("> 1.1.0-alpha", "1.1.0-beta", True),
        ("> 1.1.0-alpha", "1.2.0-beta", False),
        ("< 1.1.0", "1.1.0-beta", False),
        ("> 1.0.0-alpha", "1.0.0", True),
        ("= 1.0.0-beta", "1.0.0-beta", True),
        ("~> 1.0.0-beta", "1.0.0", False),
        ("~> 1.0.0-beta", "1.0.0-rc", True),
        # Build metadata does not take part in comparison.
        ("= 1.0.0", "1.0.0+build.7", True),
        # A kite version that is not a version never satisfies a constraint.
        (">= 0", "latest", False),
    ],
)
def test_constraint_allows(constraint, version, expected):
    assert parse_constraint(constraint).allows(version) is expected


@pytest.mark.parametrize(
    "older, newer",
    [
        ("1.0.0-alpha", "1.0.0"),
        ("1.0.0-alpha", "1.0.0-alpha.1"),
        ("1.0.0-alpha.1", "1.0.0-alpha.beta"),
        ("1.0.0-alpha.beta", "1.0.0-beta"),
        ("1.0.0-beta.2", "1.0.0-beta.11"),
        ("1.0.0-rc.1", "1.0.0"),
        ("1.2", "1.2.0.1"),
        ("1.9", "1.10"),
    ],
)
def test_version_ordering(older, newer):
    assert parse_version(older).compare(parse_version(newer)) == -1
    assert parse_version(newer).compare(parse_version(older)) == 1


def test_version_padding_equal():
    assert parse_version("1.2").compare(parse_version("1.2.0.0")) == 0


@pytest.mark.parametrize("text", ["1.0.0", "v1.2", "1.0.0-beta.1+meta", "1.2.3.4", "1.0.0beta"])
def test_parse_version_accepts(text):
    assert parse_version(text) is not None


@pytest.mark.parametrize("text", ["latest", ">1.0", "1.0.", "", "1..0", " 1.0"])
def test_parse_version_rejects(text):
    assert parse_version(text) is None


@pytest.mark.parametrize("text", ["latest", ">= 1.0,", "=> 1.0", "~ 1.2", ">= 1.0, banana"])
def test_bad_constraint_names_it(text):
    with pytest.raises(VersionConstraintError) as error:
        parse_constraint(text)
    assert repr(text) in str(error.value)


def test_bad_query_version_raises_on_match():
    with pytest.raises(VersionConstraintError, match="'latest'"):
        Query(username="alice", version="latest").matches(KITE)


@pytest.mark.parametrize(
    "fields, audience",
    [
        ({"username": "a", "environment": "e", "name": "n", "version": "1"}, "/a/e/n"),
        ({"username": "a", "environment": "e"}, "/a/e"),
        ({"username": "a"}, "/a"),
        ({"id": "x"}, "/"),
    ],
)
def test_query_audience(fields, audience):
    assert Query(**fields).audience() == audience
