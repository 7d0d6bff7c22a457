"""Changing config.toml from a program (the viewer's settings pages): validated, comments kept.

    change = edit_config(path.read_text("utf-8-sig"), {"motion.sensitivity": 0.7})
    change.text       # the new file: only the edited values differ, every comment is kept
    change.settings   # exactly what load_settings() will return once the text is written
    change.changes    # {"motion.sensitivity": (0.5, 0.7)}

The document is edited with tomlkit, so comments, blank lines, key order and the keys nobody
touched stay byte for byte; then the whole new text is validated the way the file is read at
start (config.validation.parse_settings over the shipped defaults), so the browser and a text
editor meet the same rules and the same messages. Writing the text to disk is the caller's job.
"""

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, get_type_hints

import tomlkit
from tomlkit.container import OutOfOrderTableProxy
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import Comment, InlineTable, Table

from doorbell.config.errors import ConfigError
from doorbell.config.loader import shipped_settings
from doorbell.config.model import Settings, parse_polygon
from doorbell.config.validation import (
    find_line,
    parse_settings,
    parse_toml,
    show_value,
    unknown_key,
)

POLYGON_DECIMALS = 4  # 1/10000 of the frame: finer than a pixel at 3840x2160


@dataclass(frozen=True)
class ConfigChange:
    text: str  # the new file content
    settings: Settings  # validated: what load_settings returns once `text` is the file
    # dotted key -> (before, after) for each edited key whose effective value changed;
    # JSON-friendly values (lists, not tuples; None for an optional key left out)
    changes: dict[str, tuple[Any, Any]]


def edit_config(current_text: str, values: Mapping[str, Any], base: Settings | None = None,
                source: str = "config.toml") -> ConfigChange:
    """`current_text` (may be empty) with each dotted key in `values` set, validated whole.

    A value is what the TOML would hold: a number, a bool, a string, a list (a polygon is a list
    of [x, y] lists; coordinates are rounded to 4 decimals). None removes the key from the file,
    so the shipped default applies again. A value equal to the current effective one leaves the
    file's text for that key untouched. A key whose section is missing gets a [section] table at
    the end; a section written with dotted keys or as an inline table is edited where it is.

    `base` is what the file is read over: the shipped defaults unless given (as load_settings).
    Raises ConfigError naming the key (.key) in one sentence (.message): an unknown key, a value
    the model refuses, or any other invalid value in the resulting file.
    """
    base = shipped_settings() if base is None else base
    current_text = current_text.removeprefix("\ufeff")  # a BOM, as load_settings tolerates
    parse_toml(current_text, source)  # a syntax error, located as when the file is loaded
    try:
        before = parse_settings(current_text, source, base)
    except ConfigError:
        # An invalid file can still be edited (perhaps the edit fixes it), but only into a
        # valid one: the new text is validated whole below. Report changes against `base`.
        before = None
    try:
        document = tomlkit.parse(current_text)
    except TOMLKitError as exc:
        raise ConfigError(f"the file cannot be edited: {exc}.", source=source) from None

    changes: dict[str, tuple[Any, Any]] = {}
    for key, raw in values.items():
        section, name, hint, meta = _field(key)
        value = None if raw is None else _normalised(key, raw, hint, meta)
        old = setting_value(base if before is None else before, key)
        if before is not None and (value is None and not _has_key(document, section, name)
                                   or value is not None and _same(old, value)):
            continue  # unchanged: leave the file's own spelling of it alone
        _set(document, section, name, value, key, source)
        changes[key] = (old, None)

    text = document.as_string()
    settings = parse_settings(text, source, base)
    changes = {key: (old, new) for key, (old, _) in changes.items()
               if not _same(old, new := setting_value(settings, key))}
    return ConfigChange(text, settings, changes)


def setting_value(settings: Settings, key: str) -> Any:
    """The value of a dotted key ("motion.sensitivity") in `settings`, JSON-friendly."""
    section, name, _, _ = _field(key)
    return _plain(getattr(getattr(settings, section), name))


# -- keys ----------------------------------------------------------------------------------------


def _field(key: str) -> tuple[str, str, Any, Mapping[str, Any]]:
    """(section, name, type hint, metadata) of a dotted key, or ConfigError naming it."""
    section, _, name = key.partition(".") if isinstance(key, str) else ("", "", "")
    if not section or not name:
        raise ConfigError(f'"{key}" is not a setting name like "section.key".', key=str(key))
    sections = {f.name: f for f in fields(Settings)}
    if section not in sections or not is_dataclass(sections[section].type):
        known = ", ".join(sections)
        raise ConfigError(f'unknown setting "{key}": there is no section [{section}] (known '
                          f"sections: {known}).", key=key)
    cls = get_type_hints(Settings)[section]
    keys = {f.name: f for f in fields(cls)}
    if name not in keys:
        raise unknown_key(section + ".", name, None, list(keys))
    return section, name, get_type_hints(cls)[name], keys[name].metadata


# -- values --------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, list | tuple) else value


def _normalised(key: str, raw: Any, hint: Any, meta: Mapping[str, Any]) -> Any:
    """`raw` as it will be written: plain lists, ints as floats for a float setting, polygon
    coordinates rounded. A value TOML cannot hold here (a dict, None in a list) is refused."""

    def plain(value: Any) -> Any:
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        if isinstance(value, bool | int | float | str):
            return value
        raise TypeError(type(value).__name__)

    try:
        value = plain(raw)
    except TypeError as exc:
        raise ConfigError(f'"{key}" must be a number, true or false, text, or a list of those, '
                          f"got a {exc}.", key=key) from None
    if meta.get("parse") is parse_polygon and isinstance(value, list):
        value = [_rounded_polygon(p) for p in value]
    elif hint is float or hint == float | None:
        value = _as_float(value)
    return value


def _rounded_polygon(polygon: Any) -> Any:
    if not isinstance(polygon, list):
        return polygon
    return [[_round(c) for c in point] if isinstance(point, list) else point
            for point in polygon]


def _round(coordinate: Any) -> Any:
    number = isinstance(coordinate, int | float) and not isinstance(coordinate, bool)
    if not number or not math.isfinite(coordinate):
        return coordinate  # left for the model to refuse
    return round(float(coordinate), POLYGON_DECIMALS) + 0.0  # + 0.0: no "-0.0" in the file


def _as_float(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**53:
        return float(value)  # written as 5.0, like the shipped defaults
    return value


def _same(a: Any, b: Any) -> bool:
    """Equal as settings values, types included: 1 is not true, and 15.0 is not the whole
    number 15 (so an int setting given 15.0 is written, and refused, whatever it was before)."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _toml(value: Any) -> Any:
    """A tomlkit item: lists (polygons too) as one compact inline array."""
    if isinstance(value, list):
        array = tomlkit.array()
        array.extend(_toml(v) for v in value)
        return array
    return tomlkit.item(value)


# -- the document --------------------------------------------------------------------------------


def _has_key(document: tomlkit.TOMLDocument, section: str, name: str) -> bool:
    table = document.get(section)
    return isinstance(table, Table | InlineTable | OutOfOrderTableProxy) and name in table


def _set(document: tomlkit.TOMLDocument, section: str, name: str, value: Any, key: str,
         source: str) -> None:
    """Set (or with None remove) `section.name`, keeping everything else where it is."""
    if section not in document:
        if value is not None:
            table = tomlkit.table()
            table.add(name, _toml(value))
            if document.as_string().strip():
                if not document.as_string().endswith("\n"):
                    document.add(tomlkit.nl())
                if not document.as_string().endswith("\n\n"):
                    document.add(tomlkit.nl())
            document.add(section, table)
        return
    table = document[section]
    if not isinstance(table, Table | InlineTable | OutOfOrderTableProxy):
        shown = show_value(table.unwrap())
        raise ConfigError(f'"{section}" must be a section [{section}], got {shown}, so "{key}" '
                          "cannot be set: correct the file first.", key=section, source=source,
                          line=find_line(document.as_string(), section))
    if value is None:
        if name in table:
            del table[name]
        return
    if name in table or not isinstance(table, Table) or table.is_super_table():
        table[name] = _toml(value)  # in place; dotted keys and inline tables grow where they are
        return
    # A new key in a [section]: under its commented-out example ("# button_pin = 17", as
    # default.toml documents optional keys), else right after the section's last key rather than
    # after the comments that close the section (those usually introduce what follows).
    # Container._insert_at/_insert_after are tomlkit's own insertion, not (yet) public API.
    body = table.value.body
    example = re.compile(rf"#\s*{re.escape(name)}\s*=")
    commented = [i for i, (k, item) in enumerate(body)
                 if k is None and isinstance(item, Comment) and example.match(item.as_string())]
    keys = [k for k, _ in body if k is not None]
    try:
        if commented:
            table.value._insert_at(commented[0] + 1, name, _toml(value))
        elif keys:
            table.value._insert_after(keys[-1], name, _toml(value))
        else:
            table[name] = _toml(value)
    except AttributeError:  # a tomlkit without them: appended at the end of the section
        table[name] = _toml(value)
