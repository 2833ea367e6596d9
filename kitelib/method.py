"""Methods a kite serves: the handler, its argument checks, throttling, and the Request it receives."""

from __future__ import annotations

import inspect
import time
import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from .protocol.errors import ArgumentError, RequestLimitError
from .protocol.identity import Identity

if TYPE_CHECKING:
    from .auth.authenticators import AuthResult
    from .connection import Connection
    from .kite import Kite

Handler = Callable[..., Any]


@dataclass
class Request:
    """One incoming call, as passed to a handler.

    ``kite`` is the caller's identity (fixed by the first request on the
    connection), ``username`` the authenticated username (the claimed one when
    the method needs no authentication), ``authentication`` what the caller
    sent, and ``connection`` the session to call the caller back on.
    """

    id: str
    method: str
    args: list[Any]
    kite: Identity
    username: str
    authentication: Any
    connection: "Connection"
    local_kite: "Kite"
    auth: "AuthResult | None" = None
    # Free space for pre-handlers to pass values to the handler.
    context: dict[str, Any] = field(default_factory=dict)

    async def tell(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        """Call a method on the caller's kite over the same connection."""
        return await self.connection.tell(method, *args, timeout=timeout)


class TokenBucket:
    """A token bucket that starts full and gains one token per ``fill_interval`` seconds."""

    def __init__(self, fill_interval: float, capacity: int, clock: Callable[[], float] = time.monotonic):
        if fill_interval <= 0 or capacity < 1:
            raise ValueError(
                f"throttle needs fill_interval > 0 and capacity >= 1, got {fill_interval!r} and {capacity!r}"
            )
        self.fill_interval = fill_interval
        self.capacity = capacity
        self._clock = clock
        self._tokens = float(capacity)
        self._updated = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) / self.fill_interval)
        self._updated = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


# JSON types a handler annotation may ask for, with the words used in error messages.
_JSON_TYPES: dict[Any, tuple[tuple[type, ...], str]] = {
    int: ((int,), "an integer"),
    float: ((int, float), "a number"),
    str: ((str,), "a string"),
    bool: ((bool,), "a boolean"),
    list: ((list,), "an array"),
    dict: ((dict,), "an object"),
}


def _json_type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "function" if callable(value) else type(value).__name__


class Method:
    """A named method: its handler, whether it needs authentication, and its pre/post handlers."""

    def __init__(self, name: str, handler: Handler, *, auth: bool | None = None,
                 throttle: tuple[float, int] | None = None, spread_args: bool = True):
        self.name = name
        self.handler = handler
        # With spread_args the handler is called as handler(request, *args); without, as
        # handler(request) and it reads request.args itself.
        self.spread_args = spread_args
        # None means "follow the kite": authentication on unless the kite disables it.
        self.auth = auth
        self.pre_handlers: list[Handler] = []
        self.post_handlers: list[Handler] = []
        self.bucket = TokenBucket(*throttle) if throttle else None
        self.is_async = inspect.iscoroutinefunction(handler)
        self._signature = inspect.signature(handler)
        self._checks = self._argument_checks(handler)
        self._fixed_arity = self._plain_arity()

    def _plain_arity(self) -> int | None:
        """Return the argument count when the handler takes only plain positional parameters, else None."""
        parameters = list(self._signature.parameters.values())[1:]
        plain = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        if all(p.kind in plain and p.default is inspect.Parameter.empty for p in parameters):
            return len(parameters)
        return None

    def throttle(self, fill_interval: float, capacity: int) -> "Method":
        """Limit calls from all connections together to a token bucket; excess calls get requestLimitError."""
        self.bucket = TokenBucket(fill_interval, capacity)
        return self

    def check_rate(self, request_id: str) -> None:
        if self.bucket is not None and not self.bucket.take():
            raise RequestLimitError("The maximum request rate is exceeded.", id=request_id)

    def bind_arguments(self, request: Request) -> None:
        """Check the call's arguments against the handler's signature and simple type annotations."""
        if not self.spread_args:
            return
        if len(request.args) == self._fixed_arity and not self._checks:
            # Fast path: Signature.bind costs several microseconds per call.
            return
        try:
            bound = self._signature.bind(request, *request.args)
        except TypeError:
            raise ArgumentError(self._arity_message(len(request.args)), id=request.id) from None
        for name, value in bound.arguments.items():
            check = self._checks.get(name)
            if check is None:
                continue
            allowed, words, optional = check
            if value is None and optional:
                continue
            if isinstance(value, bool) and bool not in allowed:
                ok = False
            else:
                ok = isinstance(value, allowed)
            if not ok:
                raise ArgumentError(
                    f"argument {name!r} of {self.name} must be {words}, got {_json_type_name(value)} {value!r:.60}",
                    id=request.id,
                )

    def _arity_message(self, given: int) -> str:
        parameters = list(self._signature.parameters.values())[1:]
        if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
            return f"{self.name} got {given} arguments, which its handler does not accept"
        required = [p.name for p in parameters if p.default is inspect.Parameter.empty
                    and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        names = ", ".join(p.name for p in parameters)
        if len(required) != len(parameters):
            return f"{self.name} takes {len(required)} to {len(parameters)} arguments ({names}), got {given}"
        noun = "argument" if len(parameters) == 1 else "arguments"
        return f"{self.name} takes {len(parameters)} {noun} ({names}), got {given}"

    @staticmethod
    def _argument_checks(handler: Handler) -> dict[str, tuple[tuple[type, ...], str, bool]]:
        try:
            hints = typing.get_type_hints(handler)
        except Exception:
            # Annotations that cannot be resolved are not checked.
            return {}
        checks = {}
        for name, hint in hints.items():
            if name == "return":
                continue
            optional = False
            args = typing.get_args(hint)
            if args and type(None) in args and len(args) == 2:
                optional = True
                hint = next(arg for arg in args if arg is not type(None))
            origin = typing.get_origin(hint) or hint
            if origin in _JSON_TYPES:
                allowed, words = _JSON_TYPES[origin]
                checks[name] = (allowed, words, optional)
        return checks
