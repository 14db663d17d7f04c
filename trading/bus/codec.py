"""Encoding of the bus's messages: JSON (orjson) with a "kind" tag and a schema version.

`encode` and `decode` reject NaN, infinities, missing fields, unknown kinds and wrong types with
a `MessageError` naming the field.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from trading.bus.messages import (
    MESSAGE_TYPES,
    SCHEMA_VERSION,
    M,
    Message,
    MessageError,
    unfrozen_class,
)

# --------------------------------------------------------------------------------------------
# Encoding. Each message type gets a compiled list of (field name, checker) once; a checker
# takes (kind, field, value) and returns the value in its canonical Python type or raises.

_MISSING = dataclasses.MISSING


def _check_float(kind: str, name: str, v: Any) -> float:
    if type(v) is float:
        if v - v != 0.0:  # NaN or +/-inf, cheaper than math.isfinite
            raise MessageError(kind, name, f"must be finite, got {v!r}")
        return v
    if type(v) is int:
        try:
            return float(v)
        except OverflowError:
            raise MessageError(
                kind, name, f"must be finite, got an int of {v.bit_length()} bits"
            ) from None
    raise MessageError(kind, name, f"must be a number, got {type(v).__name__} {v!r}")


JSON_INT_RANGE = range(-(2**63), 2**64)
"""The integers a message carries (orjson writes and reads no others)."""


def _check_int(kind: str, name: str, v: Any) -> int:
    if type(v) is int:
        if v in JSON_INT_RANGE:
            return v
        raise MessageError(kind, name, f"is outside the 64-bit range, {v.bit_length()} bits")
    raise MessageError(kind, name, f"must be an integer, got {type(v).__name__} {v!r}")


def _check_str(kind: str, name: str, v: Any) -> str:
    if type(v) is str:
        return v
    raise MessageError(kind, name, f"must be a string, got {type(v).__name__} {v!r}")


def _check_bool(kind: str, name: str, v: Any) -> bool:
    if type(v) is bool:
        return v
    raise MessageError(kind, name, f"must be true or false, got {type(v).__name__} {v!r}")


def check_json_value(kind: str, name: str, v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        raise MessageError(kind, name, f"must be finite, got {v!r}")
    if type(v) is int:
        _check_int(kind, name, v)
    if isinstance(v, dict):
        for k, item in v.items():
            if not isinstance(k, str):
                raise MessageError(kind, f"{name}.{k}", "keys must be strings")
            check_json_value(kind, f"{name}.{k}", item)
    elif isinstance(v, list | tuple):
        for i, item in enumerate(v):
            check_json_value(kind, f"{name}[{i}]", item)
    elif v is not None and not isinstance(v, str | int | float | bool):
        raise MessageError(kind, name, f"is not JSON: {type(v).__name__}")
    return v


def _check_dict(kind: str, name: str, v: Any) -> dict:
    if not isinstance(v, dict):
        raise MessageError(kind, name, f"must be an object, got {type(v).__name__}")
    check_json_value(kind, name, v)
    return v


def _enum_checker(enum: type[StrEnum]) -> Callable[[str, str, Any], Any]:
    values = {m.value: m for m in enum}

    def check(kind: str, name: str, v: Any) -> StrEnum:
        try:
            return values[v]
        except (KeyError, TypeError):
            raise MessageError(kind, name, f"must be one of {sorted(values)}, got {v!r}") from None

    return check


def _optional(inner: Callable[[str, str, Any], Any]) -> Callable[[str, str, Any], Any]:
    def check(kind: str, name: str, v: Any) -> Any:
        return None if v is None else inner(kind, name, v)

    return check


def _tuple_of(inner: Callable[[str, str, Any], Any]) -> Callable[[str, str, Any], Any]:
    def check(kind: str, name: str, v: Any) -> tuple:
        if not isinstance(v, list | tuple):
            raise MessageError(kind, name, f"must be a list, got {type(v).__name__}")
        return tuple(inner(kind, f"{name}[{i}]", item) for i, item in enumerate(v))

    return check


def _nested(cls: type[Message]) -> Callable[[str, str, Any], Any]:
    """Encoding: an instance becomes a validated dict. Decoding: a dict becomes an instance."""

    def check(kind: str, name: str, v: Any) -> Any:
        if isinstance(v, cls):
            return _to_dict(v, kind, f"{name}.")
        if not isinstance(v, dict):
            raise MessageError(kind, name, f"must be an object, got {type(v).__name__}")
        return _from_dict(cls, v, kind, f"{name}.")

    return check


def _checker_for(tp: Any) -> Callable[[str, str, Any], Any]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"unsupported union {tp}")
        return _optional(_checker_for(args[0]))
    if origin is tuple:
        return _tuple_of(_checker_for(typing.get_args(tp)[0]))
    if origin is dict or tp is dict:
        return _check_dict
    if isinstance(tp, type) and issubclass(tp, StrEnum):
        return _enum_checker(tp)
    if isinstance(tp, type) and issubclass(tp, Message):
        return _nested(tp)
    simple = {float: _check_float, int: _check_int, str: _check_str, bool: _check_bool}
    if tp in simple:
        return simple[tp]
    raise TypeError(f"unsupported field type {tp}")


@dataclass(frozen=True, slots=True)
class _Spec:
    names: tuple[str, ...]
    checkers: tuple[Callable[[str, str, Any], Any], ...]
    required: frozenset[str]
    defaults: dict[str, Any]


_SPECS: dict[type, _Spec] = {}


def _spec(cls: type[Message]) -> _Spec:
    spec = _SPECS.get(cls)
    if spec is None:
        hints = typing.get_type_hints(cls)
        fields = dataclasses.fields(cls)
        defaults = {}
        for f in fields:
            if f.default is not _MISSING:
                defaults[f.name] = f.default
            elif f.default_factory is not _MISSING:
                defaults[f.name] = f.default_factory
        spec = _Spec(
            names=tuple(f.name for f in fields),
            checkers=tuple(_checker_for(hints[f.name]) for f in fields),
            required=frozenset(f.name for f in fields if f.name not in defaults),
            defaults=defaults,
        )
        _SPECS[cls] = spec
    return spec


def _to_dict(msg: Message, kind: str | None = None, prefix: str = "") -> dict[str, Any]:
    spec = _spec(type(msg))
    kind = kind or type(msg).KIND
    return {
        name: check(kind, prefix + name, getattr(msg, name))
        for name, check in zip(spec.names, spec.checkers, strict=True)
    }


def _from_dict(cls: type[M], data: dict[str, Any], kind: str | None = None, prefix: str = "") -> M:
    spec = _spec(cls)
    kind = kind or cls.KIND
    values = {}
    for name, check in zip(spec.names, spec.checkers, strict=True):
        if name in data:
            values[name] = check(kind, prefix + name, data[name])
        elif name in spec.required:
            raise MessageError(kind, prefix + name, "is missing")
        else:
            d = spec.defaults[name]
            values[name] = d() if callable(d) else d
    return cls(**values)


# Top-level encode/decode run per tick, so each message type gets a generated pair of functions.
# Their fast path tests all plain fields (float, int, str, bool, or one of them | None) in one
# condition: the exact types of the non-optional ones as one tuple, and the finiteness of all
# their floats at once, as x - x == 0.0 of their sum (a NaN or an infinity makes the sum NaN or
# infinite). Any other case (an int where a float is expected, a wrong or missing field, a sum of
# large values that overflowed) takes the generic path above, which coerces or raises for the
# first bad field in order.

_PLAIN = (float, int, str, bool)


def _optional_plain(tp: Any) -> type | None:
    """X for a field typed `X | None` with X plain, else None."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0] if args[0] in _PLAIN else None
    return None


def _compile(cls: type[Message]) -> tuple[Callable[[Any], bytes], Callable[[dict], Any]]:
    spec = _spec(cls)
    hints = typing.get_type_hints(cls)
    env: dict[str, Any] = {
        "K": cls.KIND, "cls": cls, "_dumps": orjson.dumps, "_to_dict": _to_dict,
        "_from_dict": _from_dict, "_new": object.__new__, "Unfrozen": unfrozen_class(cls),
    }  # fmt: skip
    plain, tests, floats, checks = [], [], [], []
    for i, name in enumerate(spec.names):
        tp, v = hints[name], f"v{i}"
        optional = _optional_plain(tp)
        if tp in _PLAIN:
            plain.append(i)
            if tp is float:
                floats.append(v)
        elif optional is not None:
            finite = f" and {v} - {v} == 0.0" if optional is float else ""
            tests.append(f"({v} is None or type({v}) is {optional.__name__}{finite})")
        else:
            env[f"chk{i}"] = spec.checkers[i]
            checks.append(f"        {v} = chk{i}(K, {name!r}, {v})")
    env["_types"] = tuple(hints[spec.names[i]] for i in plain)
    tests.insert(0, f"({''.join(f'type(v{i}), ' for i in plain)}) == _types")
    if floats:
        tests.append(f"(s := {' + '.join(floats)}) - s == 0.0")
    fast = " and ".join(tests)
    items = ", ".join(f"{n!r}: v{i}" for i, n in enumerate(spec.names))
    tail = f"'kind': K, 'v': {SCHEMA_VERSION}"

    enc = ["def encode(msg):"]
    enc += [f"    v{i} = msg.{n}" for i, n in enumerate(spec.names)]
    enc += [f"    if {fast}:", *checks, f"        return _dumps({{{items}, {tail}}})"]
    enc += [f"    return _dumps({{**_to_dict(msg), {tail}}})"]

    dec = ["def decode(data):", "    try:"]
    for i, name in enumerate(spec.names):
        if name in spec.required:
            dec.append(f"        v{i} = data[{name!r}]")
        else:
            env[f"d{i}"] = spec.defaults[name]
            default = f"d{i}()" if callable(spec.defaults[name]) else f"d{i}"
            dec.append(f"        v{i} = data[{name!r}] if {name!r} in data else {default}")
    dec += ["    except KeyError:", "        return _from_dict(cls, data)"]
    dec += [f"    if {fast}:", *checks, "        o = _new(Unfrozen)"]
    dec += [f"        o.{n} = v{i}" for i, n in enumerate(spec.names)]
    dec += ["        o.__class__ = cls", "        return o", "    return _from_dict(cls, data)"]
    exec("\n".join(enc + dec), env)
    return env["encode"], env["decode"]


class _Codecs(dict[type, tuple[Callable[[Any], bytes], Callable[[dict], Any]]]):
    """Message class -> its generated (encode, decode), compiled on first use."""

    def __missing__(self, cls: type[Message]) -> tuple[Callable[[Any], bytes], Callable]:
        codec = self[cls] = _compile(cls)
        return codec


_CODECS = _Codecs()


def to_dict(msg: Message) -> dict[str, Any]:
    """The message as a validated plain dict (what the dashboard's JSON API returns)."""
    return _to_dict(msg)


def encode(msg: Message) -> bytes:
    """Validate and serialise a message to JSON bytes with its kind and schema version."""
    try:
        return _CODECS[type(msg)][0](msg)
    except orjson.JSONEncodeError as exc:  # an int field's fast path does not check its range
        _to_dict(msg)  # raises the MessageError that names the field
        raise MessageError(msg.KIND, "(json)", f"cannot be encoded: {exc}") from None


def decode(raw: bytes | str, expect: type[M] | None = None) -> M:
    """Parse and validate JSON bytes into the message type named by its "kind"."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MessageError(expect.KIND if expect else "?", "(json)", f"malformed: {exc}") from None
    if type(data) is not dict:
        raise MessageError("?", "(json)", f"must be an object, got {type(data).__name__}")
    kind = data.get("kind")
    cls = expect if expect is not None and kind == expect.KIND else _class_of(kind, expect)
    return _CODECS[cls][1](data)


def _class_of(kind: Any, expect: type[Message] | None) -> type[Message]:
    """The message class `kind` names, or a MessageError: unknown, or not the one expected."""
    cls = MESSAGE_TYPES.get(kind) if type(kind) is str else None
    if cls is None:
        raise MessageError(str(kind), "kind", f"unknown message kind {kind!r}")
    if expect is not None and cls is not expect:
        raise MessageError(cls.KIND, "kind", f"expected {expect.KIND!r}")
    return cls
