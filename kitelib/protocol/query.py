"""Kontrol queries: which fields a query may set and which kites it selects.

A query has the seven identity fields; an empty field means "any". Kontrol
with etcd storage requires ``username`` and accepts only an unbroken prefix
of non-empty fields in identity order. A ``version`` that does not parse as
a version is a version constraint in the syntax of hashicorp/go-version
(``>= 1.0, < 1.4``, ``~> 1.2``), and then region, hostname and id match as a
plain string prefix of ``/region/hostname/id``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Callable, Mapping

from .identity import FIELDS, Identity, IdentityError, string_fields

__all__ = [
    "Query",
    "Version",
    "VersionConstraint",
    "VersionConstraintError",
    "parse_version",
    "parse_constraint",
]


class VersionConstraintError(ValueError):
    """A query version that is neither a version nor a valid version constraint."""


# The version grammar of hashicorp/go-version at revision 23480c06 (the one
# Go Kontrol pins): numeric segments, an optional pre-release after an
# optional "-", and optional build metadata after "+".
_VERSION_PATTERN = (
    r"v?(?P<segments>[0-9]+(?:\.[0-9]+)*?)"
    r"(?:-?(?P<prerelease>[0-9A-Za-z\-~]+(?:\.[0-9A-Za-z\-~]+)*))?"
    r"(?:\+(?P<metadata>[0-9A-Za-z\-~]+(?:\.[0-9A-Za-z\-~]+)*))??"
)
_VERSION_RE = re.compile(rf"^{_VERSION_PATTERN}$")
_CONSTRAINT_RE = re.compile(rf"^\s*(?P<operator>~>|!=|>=|<=|=|>|<)?\s*(?P<version>{_VERSION_PATTERN})\s*$")

# go-version stores segments as int64 and rejects larger numbers.
_MAX_SEGMENT = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Version:
    """A parsed version with go-version ordering.

    ``segments`` is padded with zeros to at least three entries, and
    ``given_segments`` counts the segments actually written, which the
    pessimistic operator ``~>`` needs.
    """

    segments: tuple[int, ...]
    given_segments: int
    prerelease: str
    metadata: str
    original: str

    def compare(self, other: "Version") -> int:
        """Return -1, 0 or 1 as this version sorts before, equal to or after ``other``.

        Build metadata is ignored. With equal segment lists, a version without
        a pre-release sorts after one with it. Segment lists of different
        lengths compare with zero padding and, as in go-version, their
        pre-releases are then ignored, so 1.2-beta equals 1.2.0.0.
        """
        if self.segments == other.segments:
            return _compare_prereleases(self.prerelease, other.prerelease)
        length = max(len(self.segments), len(other.segments))
        mine = self.segments + (0,) * (length - len(self.segments))
        theirs = other.segments + (0,) * (length - len(other.segments))
        if mine == theirs:
            return 0
        return -1 if mine < theirs else 1

    def __str__(self) -> str:
        return self.original


def _parse_int64(text: str) -> int | None:
    # Mirrors Go's strconv.ParseInt: an optional sign, decimal digits, 64 bits.
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        return None
    number = int(text)
    return number if -(2**63) <= number <= _MAX_SEGMENT else None


def _compare_prerelease_part(mine: str, theirs: str) -> int:
    if mine == theirs:
        return 0
    mine_number = _parse_int64(mine)
    theirs_number = _parse_int64(theirs)
    # A missing part sorts before a numeric part and after a textual one.
    if mine == "":
        return -1 if theirs_number is not None else 1
    if theirs == "":
        return 1 if mine_number is not None else -1
    if mine_number is not None and theirs_number is not None:
        return 1 if mine_number > theirs_number else -1
    if mine_number is not None:
        return -1
    if theirs_number is not None:
        return 1
    return 1 if mine > theirs else -1


def _compare_prereleases(mine: str, theirs: str) -> int:
    if mine == theirs:
        return 0
    if not mine:
        return 1
    if not theirs:
        return -1
    mine_parts = mine.split(".")
    theirs_parts = theirs.split(".")
    for index in range(max(len(mine_parts), len(theirs_parts))):
        mine_part = mine_parts[index] if index < len(mine_parts) else ""
        theirs_part = theirs_parts[index] if index < len(theirs_parts) else ""
        result = _compare_prerelease_part(mine_part, theirs_part)
        if result:
            return result
    return 0


def _version_from_match(match: re.Match[str], text: str) -> Version:
    numbers = []
    for part in match.group("segments").split("."):
        number = int(part)
        if number > _MAX_SEGMENT:
            raise VersionConstraintError(f"invalid version {text!r}: segment {part} is larger than 2^63-1")
        numbers.append(number)
    given = len(numbers)
    numbers += [0] * (3 - given)
    prerelease = match.group("prerelease") or ""
    return Version(tuple(numbers), given, prerelease, match.group("metadata") or "", text)


def parse_version(text: str) -> Version | None:
    """Parse ``text`` as a go-version version; return None when it is not one."""
    match = _VERSION_RE.match(text)
    if match is None:
        return None
    try:
        return _version_from_match(match, text)
    except VersionConstraintError:
        return None


def _prerelease_allowed(version: Version, bound: Version) -> bool:
    """Apply go-version's pre-release rule for the ordering operators.

    A pre-release version satisfies an ordering constraint only when the
    constraint names a pre-release of the same release.
    """
    if version.prerelease and bound.prerelease:
        return version.segments == bound.segments
    if version.prerelease:
        return False
    return True


def _satisfies_pessimistic(version: Version, bound: Version) -> bool:
    # "~> 1.2" allows 1.2 up to but excluding 2.0; "~> 1.2.3" allows 1.2.3 up
    # to but excluding 1.3.0. Every written segment but the last stays fixed.
    if not _prerelease_allowed(version, bound):
        return False
    if bound.prerelease and not version.prerelease:
        return False
    if version.compare(bound) < 0:
        return False
    if len(bound.segments) > len(version.segments):
        return False
    for index in range(bound.given_segments - 1):
        if version.segments[index] != bound.segments[index]:
            return False
    last = len(bound.segments) - 1
    return version.segments[last] >= bound.segments[last]


_OPERATORS: dict[str, Callable[[Version, Version], bool]] = {
    "": lambda version, bound: version.compare(bound) == 0,
    "=": lambda version, bound: version.compare(bound) == 0,
    "!=": lambda version, bound: version.compare(bound) != 0,
    ">": lambda version, bound: _prerelease_allowed(version, bound) and version.compare(bound) > 0,
    "<": lambda version, bound: _prerelease_allowed(version, bound) and version.compare(bound) < 0,
    ">=": lambda version, bound: _prerelease_allowed(version, bound) and version.compare(bound) >= 0,
    "<=": lambda version, bound: _prerelease_allowed(version, bound) and version.compare(bound) <= 0,
    "~>": _satisfies_pessimistic,
}


@dataclass(frozen=True, slots=True)
class VersionConstraint:
    """A comma-separated AND of ``operator version`` terms, as go-version reads them."""

    terms: tuple[tuple[str, Version], ...]
    original: str

    def allows(self, version: str | Version) -> bool:
        """Return whether ``version`` satisfies every term; an unparsable version never does."""
        parsed = parse_version(version) if isinstance(version, str) else version
        if parsed is None:
            return False
        return all(_OPERATORS[operator](parsed, bound) for operator, bound in self.terms)

    def __str__(self) -> str:
        return self.original


@functools.lru_cache(maxsize=256)
def parse_constraint(text: str) -> VersionConstraint:
    """Parse a go-version constraint such as ``>= 1.0, < 1.4``.

    Raises VersionConstraintError naming the term that does not parse.
    """
    terms = []
    for term in text.split(","):
        match = _CONSTRAINT_RE.match(term)
        if match is None:
            raise VersionConstraintError(
                f"invalid version constraint {text!r}: {term.strip()!r} is not a version or "
                "an operator (=, !=, >, <, >=, <=, ~>) followed by a version, e.g. '>= 1.0, < 1.4'"
            )
        version_text = match.group("version")
        version = _version_from_match(_VERSION_RE.match(version_text), version_text)
        terms.append((match.group("operator") or "", version))
    return VersionConstraint(tuple(terms), text)


def _location(region: str, hostname: str, kite_id: str) -> str:
    return f"/{region}/{hostname}/{kite_id}".rstrip("/")


@dataclass(frozen=True, slots=True)
class Query:
    """A Kontrol query (``KontrolQuery`` on the wire). An empty field matches any value."""

    username: str = ""
    environment: str = ""
    name: str = ""
    version: str = ""
    region: str = ""
    hostname: str = ""
    id: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "Query":
        """Build a query from a wire object, rejecting non-string fields.

        Unknown keys are ignored and missing or null keys become empty.
        """
        if data is None:
            return cls()
        return cls(*string_fields(data, "query"))

    @classmethod
    def from_identity(cls, identity: Identity) -> "Query":
        return cls(**identity.to_dict())

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    def values(self) -> tuple[str, ...]:
        return tuple(getattr(self, field.name) for field in fields(self))

    def is_empty(self) -> bool:
        return not any(self.values())

    def version_constraint(self) -> VersionConstraint | None:
        """Return the parsed constraint when ``version`` is set but is not a plain version.

        Raises VersionConstraintError when it is neither.
        """
        if not self.version or parse_version(self.version) is not None:
            return None
        return parse_constraint(self.version)

    def validate_prefix(self) -> None:
        """Raise IdentityError unless the non-empty fields form an unbroken prefix.

        The messages are the ones Go Kontrol returns with etcd storage. The
        field named in the gap message is the last empty field before the
        first non-empty field that follows the gap.
        """
        if not self.username:
            raise IdentityError("Empty username field")
        empty_field = ""
        for key, value in zip(FIELDS, self.values()):
            if not value:
                empty_field = key
            elif empty_field:
                raise IdentityError(f"Invalid query. Query option is not set: {empty_field}")

    def longest_prefix(self) -> "Query":
        """Return the query cut at its first empty field, the part Go Kontrol accepts."""
        kept: dict[str, str] = {}
        for key, value in zip(FIELDS, self.values()):
            if not value:
                break
            kept[key] = value
        return Query(**kept)

    def storage_prefix(self) -> "Query":
        """Return the gap-free prefix to look up in storage before filtering with ``matches``.

        With a version constraint only username, environment and name can be
        looked up exactly, so the prefix stops before ``version``.
        Raises VersionConstraintError for an invalid constraint.
        """
        prefix = self.longest_prefix()
        if self.version_constraint() is not None:
            prefix = replace(prefix, version="", region="", hostname="", id="")
        return prefix

    def matches(self, identity: Identity) -> bool:
        """Return whether ``identity`` satisfies every non-empty field of the query.

        With a version constraint, region, hostname and id compare as a plain
        string prefix of ``/region/hostname/id`` (trailing '/' trimmed), so a
        region of "us" also matches "usa" as in Go Kontrol. Raises
        VersionConstraintError for an invalid constraint.
        """
        constraint = self.version_constraint()
        if constraint is None:
            return all(not want or want == have for want, have in zip(self.values(), _identity_values(identity)))

        for key in ("username", "environment", "name"):
            want = getattr(self, key)
            if want and want != getattr(identity, key):
                return False
        if not constraint.allows(identity.version):
            return False
        wanted_location = _location(self.region, self.hostname, self.id)
        return _location(identity.region, identity.hostname, identity.id).startswith(wanted_location)

    def audience(self) -> str:
        """Return the token audience Kontrol derives from this query.

        It is ``/username/environment/name`` cut after the last of those set,
        so an id-only query gives ``/``.
        """
        if self.name:
            return f"/{self.username}/{self.environment}/{self.name}"
        if self.environment:
            return f"/{self.username}/{self.environment}"
        return f"/{self.username}"


def _identity_values(identity: Identity) -> tuple[str, ...]:
    return tuple(getattr(identity, key) for key in FIELDS)
