"""How a dataset's recorded parameters differ from a run's, in one readable line.

:func:`contract.dataset.check_compatible` refuses a run whose parameters differ from those
its ``--out`` dataset records; this names what differs, short enough to read: each differing
value (long ones cut), the keys only one side records by name, and who made the dataset where
another producer did (the demo's patches, an Earth Engine export).

May import: ``core``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.jsonsafe import dumps

#: who writes a dataset of each ``backend`` (its manifest's)
PRODUCERS = {"ee": "the Earth Engine export", "local": "the local export",
             "synthetic": "isamap-demo", "imported": "isamap-import-patches"}
_LONGEST = 40  # characters of one value shown


def canonical(value: Any) -> str:
    """``value`` as compared: JSON with sorted keys (a tuple equals the same list)."""
    return dumps(value, sort_keys=True)


def differences(old: Any, new: Any, name: str = "") -> list[str]:
    """``key: <old> there, <new> now`` for each differing leaf (``split.block``), values cut.

    Keys that only one side's mapping records are named, not shown: ``recipe: scene, seed
    recorded only there; enl, kernel only now`` (a recipe of another shape is another recipe);
    a single such key below the top with a plain value is shown as a leaf, so the option it
    stands for can be read: ``recipe.imported.s1_unit: linear there, unset now``.
    """
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        both = [k for k in new if k in old] if not name else sorted({*old} & {*new}, key=str)
        out = [line for k in both if canonical(old[k]) != canonical(new[k])
               for line in differences(old[k], new[k], f"{name}.{k}" if name else k)]
        there = sorted({*old} - {*new}, key=str)
        now = sorted({*new} - {*old}, key=str)
        one = {k: v for k, v in [*((k, old[k]) for k in there), *((k, new[k]) for k in now)]
               if not isinstance(v, Mapping)} if len(there) + len(now) == 1 and name else {}
        for k, v in one.items():
            was, now_is = (short(v), "unset") if there else ("unset", short(v))
            out.append(f"{name}.{k}: {was} there, {now_is} now")
        if (there or now) and not one:
            sides = ([f"{', '.join(map(str, there))} recorded only there"] if there else []) + (
                [f"{', '.join(map(str, now))} only now"] if now else [])
            out.append(f"{name or 'parameters'}: {'; '.join(sides)}")
        return out
    if isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)) and max(
            len(_text(old)), len(_text(new))) > _LONGEST:  # long lists: the items that differ
        there = [v for v in old if v not in new]
        now = [v for v in new if v not in old]
        if there or now:
            return [f"{name}: " + ", ".join(
                f"{short(items)} only {side}" for items, side in ((there, "there"), (now, "now"))
                if items)]
    return [f"{name}: {short(old)} there, {short(new)} now"]


def short(value: Any) -> str:
    """``value`` as a person reads it: none for None, lists without quotes, cut at 40 chars."""
    if value is None:
        return "none"
    if isinstance(value, Mapping):
        return f"{{{len(value)} keys}}"
    text = _text(value)
    return text if len(text) <= _LONGEST else text[:_LONGEST - 4] + " ..."


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return f"[{', '.join(str(v) for v in value)}]"
    return str(value)


def producer_note(existing: Mapping[str, Any], backend: str) -> str:
    """`` (made by isamap-demo, not by the local export)`` where another producer made it."""
    there = str(existing.get("backend") or "")
    if not there or there == backend:
        return ""
    return f" (made by {PRODUCERS.get(there, there)}, not by {PRODUCERS.get(backend, backend)})"


def out_problem(out: str) -> str:
    """A dry run's PROBLEM line for ``--out``'s refusal, which its error line then gives."""
    return f"--out {out} holds a dataset this run would not add to (the error below says why)"
