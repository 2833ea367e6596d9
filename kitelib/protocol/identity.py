"""Kite identity: the seven fields that name one running kite.

The string form is ``/username/environment/name/version/region/hostname/id``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Any, Mapping

# Field order of the string form and of Kontrol's query prefix rule.
FIELDS: tuple[str, ...] = ("username", "environment", "name", "version", "region", "hostname", "id")


class IdentityError(ValueError):
    """An identity or query that does not follow the seven-field rules."""


def new_kite_id() -> str:
    """Return a fresh UUID4 string, the id of one kite process."""
    return str(uuid.uuid4())


def string_fields(data: Any, what: str) -> list[str]:
    """Return the seven fields of a wire object in FIELDS order; missing or null ones become "".

    Raises IdentityError naming ``what`` when ``data`` is not an object or a field is not a string.
    """
    if type(data) is not dict and not isinstance(data, Mapping):
        raise IdentityError(f"{what} must be a JSON object, got {type(data).__name__}")
    get = data.get
    values = [get(key) for key in FIELDS]
    for index, value in enumerate(values):
        if type(value) is not str:
            if value is not None:
                raise IdentityError(f"{what} field {FIELDS[index]!r} must be a string, got {type(value).__name__}")
            values[index] = ""
    return values


@dataclass(frozen=True, slots=True)
class Identity:
    """The seven fields that name a kite. Any field may be empty until validated."""

    username: str = ""
    environment: str = ""
    name: str = ""
    version: str = ""
    region: str = ""
    hostname: str = ""
    id: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "Identity":
        """Build an identity from a wire object, rejecting non-string fields.

        Unknown keys are ignored and missing keys become empty, as the Go and
        JavaScript decoders do.
        """
        if data is None:
            return cls()
        return cls(*string_fields(data, "kite identity"))

    @classmethod
    def parse(cls, text: str) -> "Identity":
        """Parse the string form. The id is the rest after six slashes, so it may contain '/'."""
        if not text.startswith("/"):
            raise IdentityError(
                f"invalid kite identity {text!r}: it must start with '/' as in "
                "/username/environment/name/version/region/hostname/id"
            )
        parts = text[1:].split("/", 6)
        parts += [""] * (7 - len(parts))
        return cls(*parts)

    def to_dict(self) -> dict[str, str]:
        # Built by hand: dataclasses.asdict deep-copies and showed up in client profiles.
        return {"username": self.username, "environment": self.environment, "name": self.name,
                "version": self.version, "region": self.region, "hostname": self.hostname, "id": self.id}

    def __str__(self) -> str:
        return "/" + "/".join(getattr(self, key) for key in FIELDS)

    def replace(self, **changes: str) -> "Identity":
        return replace(self, **changes)

    def validate(self) -> None:
        """Raise IdentityError unless every field is non-empty and free of '/'.

        The messages are the ones Kontrol sends back on ``register``.
        """
        for key in FIELDS:
            value = getattr(self, key)
            if not value:
                raise IdentityError(f"Empty Kite field: {key}")
            if "/" in value:
                raise IdentityError(f"Field \"{key}\" must not contain '/'")

