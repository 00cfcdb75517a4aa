"""What each zone of a ``--zones`` file is called in the area tables and charts.

A zone is named by its own properties: ``--zones-name FIELD``, else ``name``, ``NAME`` or the
highest-numbered ``NAME_<n>`` (GADM's level: ``NAME_2`` of a district file). Every zone named
by ``NAME_<n>`` is named at one level: a file whose features mix levels (a province's row
beside its districts', ``NAME_1`` beside ``NAME_2``) is refused, naming the mix. A file that names
none of its features gets ``feature_<i>``; one that names some of them is refused at the first
feature without a name, as a missing ``--zones-name`` field is: its zone would appear under a
made-up name beside the named ones. A name that repeats is told apart by its feature index, so
two zones never add up under one name.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from core.errors import ConfigError, InputDataError

DEFAULT_FIELDS = "'name', 'NAME' or 'NAME_<n>'"
"""The properties that name a zone when no ``--zones-name`` is given, as messages say them."""


def add_zone_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--zones`` and ``--zones-name``: the zones of the area tables (isamap-predict, -map)."""
    parser.add_argument("--zones", help="GeoJSON polygons of the per-zone area table (default: "
                                        "the whole map)")
    parser.add_argument("--zones-name", metavar="FIELD",
                        help="with --zones: the property that names each zone in the tables and "
                             "the chart (default: name, NAME, or the highest NAME_<n> a feature "
                             "has, as GADM's NAME_2 of districts)")


def check_zones_name(zones: object, zones_name: str | None) -> None:
    """Refuse ``--zones-name`` without ``--zones`` (isamap-predict, -map).

    Raises:
        ConfigError: ``zones_name`` given and ``zones`` not.
    """
    if zones_name and not zones:
        raise ConfigError("--zones-name names the zones of --zones: give --zones FILE too")


def zone_name(properties: Mapping[str, Any], name_field: str | None = None) -> str | None:
    """A zone's name from its properties: ``name_field``, else ``name``, ``NAME``, ``NAME_<n>``.

    Of GADM's ``NAME_0`` (country) ... ``NAME_<n>``, the highest ``n`` is the feature's own
    level. None where none of them holds a value.
    """
    key = name_key(properties, name_field)
    return None if key is None else str(properties[key])


def name_key(properties: Mapping[str, Any], name_field: str | None = None) -> str | None:
    """The property that names a zone (:func:`zone_name`), or None where none holds a value."""
    levels = sorted((int(k[5:]), k) for k in properties
                    if k.startswith("NAME_") and k[5:].isdigit())
    for key in ([name_field] if name_field else ["name", "NAME", *[k for _, k in levels[::-1]]]):
        if properties.get(key) not in (None, ""):
            return key
    return None


def _check_one_level(keys: Sequence[str | None], given: str) -> None:
    """Refuse features named at different GADM levels (``NAME_1`` beside ``NAME_2``).

    A province's row among its districts' (or a district lacking its ``NAME_2`` named after
    its province) would add a zone of another kind under a name the table does not tell apart.
    """
    at: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        if key is not None and key.startswith("NAME_"):
            at.setdefault(key, []).append(i)
    if len(at) < 2:
        return
    mix = " and ".join(f"{key} (feature{'s' if len(ids) > 1 else ''} "
                       f"{', '.join(map(str, ids[:3]))}{', ...' if len(ids) > 3 else ''})"
                       for key, ids in sorted(at.items(), key=lambda kv: int(kv[0][5:])))
    raise InputDataError(f"the features of {given} are named at different levels: {mix}, "
                         "and one table would mix them; give a file of one level, or "
                         "--zones-name a property naming every feature at one level")


def zone_names(properties: Sequence[Mapping[str, Any]], name_field: str | None,
               given: str) -> list[str]:
    """The name of each feature's zone, in the features' order (the module docstring).

    Args:
        properties: each feature's properties.
        name_field: ``--zones-name`` (None: the default fields).
        given: the file as messages name it (``--zones districts.geojson``).

    Raises:
        InputDataError: a feature has no name where ``name_field`` is given or other
            features have one; the message names the properties it has.
    """
    keys = [name_key(p, name_field) for p in properties]
    named = name_field is not None or any(keys)
    if name_field is None:
        _check_one_level(keys, given)
    names: list[str] = []
    for i, (props, key) in enumerate(zip(properties, keys, strict=True)):
        name = None if key is None else str(props[key])
        if name is None and named:
            has = ", ".join(map(repr, props)) or "none"
            raise InputDataError(
                f"feature {i} of {given} has no property {name_field!r} (it has {has}); give "
                "--zones-name one of those" if name_field else
                f"feature {i} of {given} has no name ({DEFAULT_FIELDS}) and other features "
                f"have one (it has {has}); name it, or give --zones-name a property every "
                "feature has")
        name = name or f"feature_{i}"
        names.append(f"{name} (feature {i})" if name in names else name)
    return names
