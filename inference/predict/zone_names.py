"""What each zone of a ``--zones`` file is called in the area tables and charts.

A zone is named by its own properties: ``--zones-name FIELD``, else ``name``, ``NAME`` or the
highest-numbered ``NAME_<n>`` (GADM's level: ``NAME_2`` of a district file). A file that names
none of its features gets ``feature_<i>``; one that names some of them is refused at the first
feature without a name, as a missing ``--zones-name`` field is: its zone would appear under a
made-up name beside the named ones. A name that repeats is told apart by its feature index, so
two zones never add up under one name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.errors import InputDataError

DEFAULT_FIELDS = "'name', 'NAME' or 'NAME_<n>'"
"""The properties that name a zone when no ``--zones-name`` is given, as messages say them."""


def zone_name(properties: Mapping[str, Any], name_field: str | None = None) -> str | None:
    """A zone's name from its properties: ``name_field``, else ``name``, ``NAME``, ``NAME_<n>``.

    Of GADM's ``NAME_0`` (country) ... ``NAME_<n>``, the highest ``n`` is the feature's own
    level. None where none of them holds a value.
    """
    levels = sorted((int(k[5:]), k) for k in properties
                    if k.startswith("NAME_") and k[5:].isdigit())
    for key in ([name_field] if name_field else ["name", "NAME", *[k for _, k in levels[::-1]]]):
        value = properties.get(key)
        if value not in (None, ""):
            return str(value)
    return None


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
    named = name_field is not None or any(zone_name(p) for p in properties)
    names: list[str] = []
    for i, props in enumerate(properties):
        name = zone_name(props, name_field)
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
