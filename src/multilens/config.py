"""Strict configuration loading: TOML/dicts into frozen dataclasses, and stable config hashes.

Unknown keys and wrong types are errors that name the key (equinox/scikit-learn style), so a
typo in a config file can never be silently ignored. A config's hash is the SHA-256 of its
canonical JSON (sorted keys, no whitespace), so it is stable across processes and machines.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from multilens.errors import ConfigError

T = TypeVar("T")


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the input of every config hash."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def config_hash(obj: Any) -> str:
    """Stable 16-hex-digit hash of a config dataclass or JSON-able mapping."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:16]


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert lists to tuples."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for a in args:
            if a is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"`{where}` has the wrong type: expected {tp}; got {value!r}.")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"`{where}` must be one of {', '.join(map(repr, args))}; got {value!r}.")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"`{where}` must be a list; got {value!r}.")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if origin is tuple and args:
            if len(args) != len(value):
                raise ConfigError(f"`{where}` must have {len(args)} items; got {len(value)}.")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(args, value)))
        inner = args[0] if args else Any
        return tuple(_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"`{where}` must be a table; got {value!r}.")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"`{where}` must be a table; got {value!r}.")
        return from_dict(tp, value, where=where)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"`{where}` must be a number; got {value!r}.")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"`{where}` must be an int; got {value!r}.")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"`{where}` must be true or false; got {value!r}.")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"`{where}` must be a string; got {value!r}.")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"`{where}` must be {_type_name(tp)}; got {value!r}.")
    return value


def _part_type(tp: Any) -> tuple[Any, bool]:
    """(dataclass, optional) for a nested settings field typed ``Part`` or ``Part | None``."""
    if dataclasses.is_dataclass(tp):
        return tp, False
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and dataclasses.is_dataclass(args[0]) and type(None) in typing.get_args(tp):
            return args[0], True
    return None, False


def from_dict(cls: type[T], data: dict[str, Any], *, where: str = "", base: T | None = None) -> T:
    """Build the frozen dataclass ``cls`` from ``data``, strictly.

    Keys missing from ``data`` take their value from ``base`` (when given) or the field default.
    Unknown keys and wrong types raise :class:`ConfigError` naming the dotted key.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"`{where or cls.__name__}` must be a table; got {data!r}.")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"unknown config key `{prefix}{unknown[0]}`; valid keys are: {', '.join(sorted(fields))}.")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        key = f"{where}.{name}" if where else name
        if name in data:
            sub_base = getattr(base, name) if base is not None else None
            tp = hints[name]
            part, optional = _part_type(tp)
            value = data[name]
            if part is not None and isinstance(value, bool) and optional:
                # A part table may be switched off (`false`: the part is not run) or back on
                # (`true`: the profile's settings, or the part's defaults).
                kwargs[name] = (sub_base if sub_base is not None else part()) if value else None
            elif part is not None and isinstance(value, dict):
                kwargs[name] = from_dict(part, value, where=key, base=sub_base)
            elif part is not None:
                hint = " or true/false to switch the part on/off" if optional else ""
                raise ConfigError(f"`{key}` must be a table{hint}; got {value!r}.")
            else:
                kwargs[name] = _coerce(value, tp, key)
        elif base is not None:
            kwargs[name] = getattr(base, name)
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field was not given
        raise ConfigError(f"`{where or cls.__name__}`: {e}.") from None


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file, turning I/O and syntax errors into one-line ConfigErrors."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file `{p}` does not exist; pass the path of a TOML file.")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file `{p}` is not valid TOML ({e}); fix the syntax.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file `{p}` is not UTF-8 text; save it as UTF-8 TOML.") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse a ``--set key.sub=value`` override; the value is read as TOML (falls back to str)."""
    if "=" not in text:
        raise ConfigError(f"`--set {text}` must look like key=value (e.g. --set k=5).")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"`--set {text}` has an empty key; use key=value.")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        if "," in raw:
            value = [_scalar(v) for v in raw.split(",")]
        else:
            value = raw
    return key.split("."), value


def _scalar(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return raw.strip()


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with ``key.sub=value`` overrides applied."""
    out = json.loads(json.dumps(data))
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for p in path[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"`--set {text}`: `{p}` is not a table.")
        node[path[-1]] = value
    return out
