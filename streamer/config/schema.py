"""The typed-section engine: frozen dataclasses checked against their type hints and bounds.

A few dozen lines here instead of pydantic, whose import and schema cost ~16 MB of resident memory:
a tenth of the Raspberry Pi budget, for a flat YAML file. Every field is a ``setting`` with its
default, the comment config.yaml shows, and its bounds; unknown keys and bad values are reported by
their dotted YAML path."""

from __future__ import annotations

import dataclasses
import re
import reprlib
import typing
from typing import Any, Dict, Iterable, List, Literal, Mapping, Optional, Tuple

_SHORT = reprlib.Repr()  # bad values are quoted this short in messages (an alias bomb is billions long)
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxstring, _SHORT.maxother = 2, 6, 60, 60


class _BadValue(ValueError):
    """A value that breaks its field's type or bounds; ``key`` is its dotted path."""

    def __init__(self, key: str, message: str, got: Any) -> None:
        super().__init__(message)
        self.key, self.message, self.got = key, message, got


class _UnknownKey(ValueError):
    """A key the schema does not have; ``key`` is its dotted path, ``section`` the path of the
    mapping it is in ("" at the top level)."""

    def __init__(self, key: str, section: str) -> None:
        super().__init__(f"unknown config key '{key}'; check the spelling against config.yaml"
                         + (f" (section '{section}')" if section else ""))
        self.key, self.section = key, section


def setting(default: Any, *, description: str, ge: Optional[float] = None, gt: Optional[float] = None,
            le: Optional[float] = None, lt: Optional[float] = None, min_length: Optional[int] = None) -> Any:
    """A config field: its default, the comment config.yaml shows, and its bounds."""
    metadata = {"description": description, "ge": ge, "gt": gt, "le": le, "lt": lt, "min_length": min_length}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(arg) for arg in typing.get_args(hint))
    if origin is typing.Union:
        return " or ".join("null" if arg is type(None) else _type_name(arg) for arg in typing.get_args(hint))
    if origin in (list, List):
        return f"a list of {_type_name(typing.get_args(hint)[0])}"
    if origin in (tuple, Tuple):
        return "[" + ", ".join(_type_name(arg) for arg in typing.get_args(hint)) + "]"
    if origin in (dict, Dict):
        return "a mapping of names to settings"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))


def _convert(hint: Any, value: Any) -> Any:
    """``value`` checked against ``hint`` (lists and pairs rebuilt); ValueError when it does not fit."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        if value in typing.get_args(hint) and not isinstance(value, bool):
            return value
    elif origin is typing.Union:
        for arg in typing.get_args(hint):
            if arg is type(None) and value is None:
                return None
            if arg is not type(None):
                try:
                    return _convert(arg, value)
                except ValueError:
                    pass
    elif origin in (list, List):
        if isinstance(value, (list, tuple)):
            return [_convert(typing.get_args(hint)[0], item) for item in value]
    elif origin in (tuple, Tuple):
        args = typing.get_args(hint)
        if isinstance(value, (list, tuple)) and len(value) == len(args):
            return tuple(_convert(arg, item) for arg, item in zip(args, value))
    elif hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    raise ValueError(f"expected {_type_name(hint)}")


def _check_bounds(meta: Mapping[str, Any], value: Any) -> None:
    if value is None:
        return
    if meta.get("min_length") is not None and len(value) < meta["min_length"]:
        raise ValueError(f"needs at least {meta['min_length']} item(s)")
    bounds = [(word, holds, meta[bound]) for bound, holds, word in (
        ("ge", float.__ge__, ">="), ("gt", float.__gt__, ">"), ("le", float.__le__, "<="), ("lt", float.__lt__, "<"))
        if meta.get(bound) is not None]
    for word, holds, limit in bounds:
        if not holds(float(value), float(limit)):
            if len(bounds) == 1:
                raise ValueError(f"must be {word} {limit:g}")
            raise ValueError("out of range: must be " + " and ".join(f"{w} {lim:g}" for w, _, lim in bounds))


_HINTS: Dict[type, Dict[str, Any]] = {}


def _type_hints(cls: type) -> Dict[str, Any]:
    """The resolved field types of a section class (resolved once per class)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


class _Section:
    """Base of the frozen config sections: every field is checked at construction."""

    def __post_init__(self) -> None:
        hints = _type_hints(type(self))
        for spec in dataclasses.fields(self):  # type: ignore[arg-type]  # every section is a dataclass
            value, hint = getattr(self, spec.name), hints[spec.name]
            if isinstance(hint, type) and issubclass(hint, _Section):
                if isinstance(value, dict):
                    object.__setattr__(self, spec.name, _build(hint, value, spec.name + "."))
                elif not isinstance(value, hint):
                    raise _BadValue(spec.name, f"expected a mapping of {spec.name} settings", value)
                continue
            if typing.get_origin(hint) in (dict, Dict):
                item_cls = typing.get_args(hint)[1]
                if isinstance(item_cls, type) and issubclass(item_cls, _Section):
                    object.__setattr__(self, spec.name, _named_sections(spec.name, item_cls, value))
                elif not isinstance(value, dict):
                    # A plain mapping (a camera's section overrides): checked where it is merged.
                    raise _BadValue(spec.name, "expected a mapping of settings", value)
                continue
            try:
                converted = _convert(hint, value)
                _check_bounds(spec.metadata, converted)
            except ValueError as error:
                raise _BadValue(spec.name, str(error), value) from None
            object.__setattr__(self, spec.name, converted)
        self._check()

    def _check(self) -> None:
        """Rules across fields; raise _BadValue."""

    def to_dict(self) -> Dict[str, Any]:
        """Plain data (tuples as lists), as YAML or JSON would hold it."""
        def plain(value: Any) -> Any:
            if isinstance(value, _Section):
                return value.to_dict()
            if isinstance(value, (list, tuple)):
                return [plain(item) for item in value]
            if isinstance(value, dict):
                return {name: plain(item) for name, item in value.items()}
            return value
        return {spec.name: plain(getattr(self, spec.name))
                for spec in dataclasses.fields(self)}  # type: ignore[arg-type]  # every section is a dataclass


def _build(cls: type, data: Dict[str, Any], prefix: str = "") -> Any:
    """``cls(**data)`` with unknown keys and bad values reported by their dotted path."""
    names = {spec.name for spec in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise _UnknownKey(f"{prefix}{key}", prefix.rstrip("."))
    try:
        return cls(**data)
    except _BadValue as error:
        key = prefix + error.key
        raise _BadValue(key, error.message, error.got) from None
    except _UnknownKey as error:  # in a mapping of named sections (audience.zones.<name>)
        raise _UnknownKey(prefix + error.key, prefix + error.section) from None


# A name of a named section (a zone, a line): it becomes an MQTT topic level, a Prometheus label and a
# Home Assistant id, so only characters all three take as they are.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,40}")


def _named_sections(field: str, cls: type, value: Any) -> Dict[str, Any]:
    """A mapping of names to ``cls`` sections (``zones: {shelf: {...}}``), each checked with its
    own path (``zones.shelf.polygon``)."""
    if not isinstance(value, dict):
        raise _BadValue(field, "expected a mapping of names to settings", value)
    out = {}
    for name, item in value.items():
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise _BadValue(f"{field}.{name}", "a name needs 1-40 letters, digits, '_' or '-'", name)
        if isinstance(item, cls):
            out[name] = item
        elif isinstance(item, dict):
            out[name] = _build(cls, item, f"{field}.{name}.")
        else:
            raise _BadValue(f"{field}.{name}", f"expected a mapping of {field} settings", item)
    return out


section = dataclasses.dataclass(frozen=True)


def check_choice(field: str, name: Optional[str], choices: Iterable[str]) -> None:
    """Raise _BadValue unless ``name`` is null or one of ``choices`` (a registry: the names of the
    detectors or classifiers live there, so adding one needs no change to the schema)."""
    if name is not None and name not in choices:
        raise _BadValue(field, "expected one of " + ", ".join(repr(known) for known in choices), name)
