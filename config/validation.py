"""The validation engine: TOML text -> a tree of frozen dataclasses, with errors that name the key
and its line.

The conversion is generic: `build` walks the dataclass fields of the class it is given (and of its
sections) and converts each TOML value by the field's type hint and metadata (the keys are listed
in config/model.py's docstring). Nothing here knows the settings model or its sections, so the
model can use this module without the two importing each other.
"""

import json
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from types import NoneType, UnionType
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from doorbell.config.errors import ConfigError

Tree = TypeVar("Tree")  # a dataclass instance whose fields are settings or sections

_MAX_DIGITS = 4300  # sys.get_int_max_str_digits(): int() refuses longer decimal numbers
_DIGITS = re.compile(r"[0-9_]+")


def parse_settings(text: str, source: str | None, base: Tree) -> Tree:
    """`base` (e.g. a `Settings`) with the keys present in the TOML `text` replaced."""
    data = parse_toml(text, source)
    try:
        return build(type(base), data, base)
    except ConfigError as exc:
        raise exc.located(source, find_line(text, exc.key)) from None


def parse_toml(text: str, source: str | None) -> dict[str, Any]:
    """The TOML `text` as a dict, or a ConfigError locating the syntax error."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(str(exc), text, source) from None
    except RecursionError:  # arrays or inline tables nested past Python's stack
        raise ConfigError("the file nests arrays or inline tables too deeply to be read.",
                          source=source) from None
    except ValueError:  # int() refuses a decimal number of more than 4300 digits
        huge = next((m for m in _DIGITS.finditer(text) if len(m[0]) > _MAX_DIGITS), None)
        line = text.count("\n", 0, huge.start()) + 1 if huge else None
        raise ConfigError("the file holds a number too long to be read (more than "
                          f"{_MAX_DIGITS} digits).", source=source, line=line) from None


def apply_overrides(base: Tree, values: Mapping[str, Any], source: str | None) -> Tree:
    """`base` with dotted keys ("viewer.bind") replaced by Python values, validated as in TOML."""
    tables: dict[str, Any] = {}
    for key, value in values.items():
        section, _, name = key.partition(".")
        if not name:
            raise ConfigError(f'"{key}" is not a setting name like "section.key".', key=key,
                              source=source)
        tables.setdefault(section, {})[name] = value
    try:
        return build(type(base), tables, base)
    except ConfigError as exc:
        raise exc.located(source, None) from None


def build(cls: type, table: Mapping[str, Any], base: Any, prefix: str = "") -> Any:
    """An instance of dataclass `cls` from a TOML table; keys the table lacks come from `base`."""
    names = [f.name for f in fields(cls)]
    for name, value in table.items():
        if name not in names:
            raise unknown_key(prefix, name, value, names)
    hints = get_type_hints(cls)
    values = {}
    for f in fields(cls):
        key, hint = prefix + f.name, hints[f.name]
        if f.name not in table:
            values[f.name] = getattr(base, f.name)
        elif is_dataclass(hint):
            if not isinstance(table[f.name], dict):
                shown = show_value(table[f.name])
                raise ConfigError(f'"{key}" must be a section [{key}], got {shown}.', key=key)
            values[f.name] = build(hint, table[f.name], getattr(base, f.name), key + ".")
        else:
            values[f.name] = _convert(table[f.name], hint, f.metadata, key)
    return cls(**values)


def unknown_key(prefix: str, name: str, value: Any, names: list[str]) -> ConfigError:
    known = ", ".join(names)
    if prefix:
        section = prefix.rstrip(".")
        return ConfigError(f'unknown key "{prefix}{name}" (known keys in [{section}]: {known}).',
                           key=prefix + name)
    if isinstance(value, dict):
        return ConfigError(f"unknown section [{name}] (known sections: {known}).", key=name)
    return ConfigError(f'unknown key "{name}" outside any section (known sections: {known}).',
                       key=name)


def _convert(raw: Any, hint: Any, meta: Mapping[str, Any], key: str) -> Any:
    if get_origin(hint) in (Union, UnionType):
        # `X | None`: TOML has no null, so None only ever comes from leaving the key out.
        (hint,) = (a for a in get_args(hint) if a is not NoneType)
    if get_origin(hint) is tuple:
        if not isinstance(raw, list | tuple):
            raise ConfigError(f'"{key}" must be a list, got {show_value(raw)}.', key=key)
        if "max_items" in meta and len(raw) > meta["max_items"]:
            raise ConfigError(f'"{key}" must be a list of at most {meta["max_items"]} entries, '
                              f"got {len(raw)}.", key=key)
        item = get_args(hint)[0]
        return tuple(_convert_one(x, item, meta, f"{key}[{i}]") for i, x in enumerate(raw))
    return _convert_one(raw, hint, meta, key)


def _convert_one(raw: Any, hint: Any, meta: Mapping[str, Any], key: str) -> Any:
    try:
        value = meta["parse"](raw) if "parse" in meta else _typed(raw, hint)
        _check_limits(value, meta)
        if "check" in meta:
            meta["check"](value)
    except ValueError as exc:
        requirement = str(exc) or _requirement(hint, meta)
        raise ConfigError(f'"{key}" must be {requirement}, got {show_value(raw)}.',
                          key=key) from None
    return value


def _typed(raw: Any, hint: Any) -> Any:
    """`raw` as a `hint`, or ValueError(). bool is an int in Python but never a number here."""
    if hint is bool and isinstance(raw, bool):
        return raw
    if hint is int and isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    number = isinstance(raw, int | float) and not isinstance(raw, bool)
    # nan would pass any range comparison; an int past 1e308 (0x followed by 300 digits) has no
    # float at all
    if hint is float and number and (isinstance(raw, float) or raw.bit_length() <= 1023) \
            and math.isfinite(raw):
        return float(raw)
    if hint is str and isinstance(raw, str):
        return raw
    if hint not in (bool, int, float, str):
        raise TypeError(f"settings of type {hint!r} are not supported")
    raise ValueError()


def _check_limits(value: Any, meta: Mapping[str, Any]) -> None:
    if "min" in meta and value < meta["min"] or "max" in meta and value > meta["max"]:
        raise ValueError()
    if "min_len" in meta and len(value) < meta["min_len"]:
        raise ValueError()
    if "max_len" in meta and len(value) > meta["max_len"]:
        raise ValueError()
    if "choices" in meta and value not in meta["choices"]:
        raise ValueError()


def _requirement(hint: Any, meta: Mapping[str, Any]) -> str:
    """What a valid value looks like, to complete '"key" must be ...'."""
    if "choices" in meta:
        return "one of " + ", ".join(show_value(c) for c in meta["choices"])
    if hint is bool:
        return "true or false"
    if hint is str:
        low, high = meta.get("min_len", 0), meta.get("max_len")
        if high is not None:
            return f"text of {low} to {high} characters"
        return "non-empty text" if low == 1 else "text"
    noun = "a whole number" if hint is int else "a number"
    low, high = meta.get("min"), meta.get("max")
    if low is not None and high is not None:
        return f"{noun} between {show_value(low)} and {show_value(high)}"
    if low is not None:
        return f"{noun} of at least {show_value(low)}"
    return noun if high is None else f"{noun} of at most {show_value(high)}"


def show_value(value: Any, limit: int = 60) -> str:
    """A value as it would be written in TOML, shortened for a one-line message.

    Only what fits in `limit` is rendered: a list nested thousands deep, or one of a million
    items, costs no more than a short one."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value[:limit], ensure_ascii=False) + ("..." if len(value) > limit else "")
    elif isinstance(value, int) and value.bit_length() > 4 * limit:
        text = f"a whole number of more than {limit} digits"  # str() refuses past 4300 digits
    elif isinstance(value, float) and value.is_integer():
        text = str(int(value))
    elif isinstance(value, list | tuple):
        text = "[" + _show_items(value, limit, lambda v, room: show_value(v, room)) + "]"
    elif isinstance(value, dict):
        text = "{" + _show_items(value.items(), limit,
                                 lambda kv, room: f"{kv[0]} = {show_value(kv[1], room)}") + "}"
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show_items(items, limit: int, show) -> str:
    """Items joined by ", " until `limit` characters are reached; each nesting level has less
    room, so the recursion ends within `limit` levels."""
    parts, used = [], 0
    for item in items:
        room = limit - used - 1
        if room <= 0:
            parts.append("...")
            break
        parts.append(show(item, room))
        used += len(parts[-1]) + 2
    return ", ".join(parts)


_TOML_POSITION = re.compile(r"\s*\((?:at line (\d+), column (\d+)|at end of document)\)$")


def _syntax_error(detail: str, text: str, source: str | None) -> ConfigError:
    match = _TOML_POSITION.search(detail)
    line = column = None
    if match:
        detail = detail[: match.start()]
        line = int(match[1]) if match[1] else max(1, len(text.splitlines()))
        column = int(match[2]) if match[2] else None
    detail = detail[:1].lower() + detail[1:]
    at = f" at column {column}" if column else " at the end of the file"
    return ConfigError(f"the file is not valid TOML: {detail}{at}.", source=source, line=line)


# A table header: [name] or [[name]] and an optional comment. Its name must start with a letter,
# underscore or quote so that a line inside a multi-line array ("[0.1, 0.2],") is not taken for one.
# No two neighbouring parts can match the same character (the name's trailing spaces are
# stripped afterwards), so a line that is not a header fails in linear time: with a lazy name
# followed by \s*, 80,000 spaces in a multi-line string took 12 s.
_HEADER = re.compile(r"""\s*\[\[?\s*([A-Za-z_"'][\w."' -]*)\]\]?\s*(?:#.*)?""")


def find_line(text: str, key: str | None) -> int | None:
    """Best-effort line of a dotted key ("motion.sensitivity", "privacy.masks[1]") in TOML text.

    tomllib reports no positions, so look for the [section] header and then the `key =` line
    inside it; failing that, a dotted key or inline table at the top. None if nothing matches.
    """
    if not key:
        return None
    section, _, name = re.sub(r"\[\d+\]", "", key).partition(".")
    in_section = _key_pattern(name) if name else None
    dotted = _key_pattern(section, name) if name else None
    top_table = re.compile(rf"""\s*["']?{re.escape(section)}["']?\s*[.=]""")
    current, fallback = "", None
    for number, line in enumerate(text.splitlines(), 1):
        header = _HEADER.fullmatch(line)
        if header:
            current = re.sub(r"""["'\s]""", "", header[1])
            if current == section and not name:
                return number
        elif current == section and in_section and in_section.match(line):
            return number
        elif current == "":
            if dotted and dotted.match(line):
                return number
            if fallback is None and top_table.match(line):
                fallback = number  # `section = { ... }` or another dotted key: near enough
    return fallback


def _key_pattern(*parts: str) -> re.Pattern[str]:
    """Matches `a.b =` at a line start, each part bare or quoted, spaces allowed around dots."""
    quoted = (rf"""(?:{re.escape(p)}|"{re.escape(p)}"|'{re.escape(p)}')""" for p in parts)
    return re.compile(r"\s*" + r"\s*\.\s*".join(quoted) + r"\s*=")
