"""Collect Earth Online: the plot files a project is made from, and its sample export read back.

Plot files: ``PLOTID,LON,LAT,STRATA_ID,DESIGN_ID`` (the point ids' numbers, in the
interpreter's order; ``STRATA_ID`` and ``DESIGN_ID``, extra plot columns, name the strata and
the design that drew the points and come back in the export as ``pl_strata_id`` and
``pl_design_id``, so a CEO export labelled away from its design folder is still checked
against the scorer's strata and design like any sample file). CEO's
project wizard takes at most :data:`CEO_PLOT_LIMIT` plots, so a larger design is written as
several files of at most that many plots, one CEO project each; the plot ids run on across
the files, so the exports of every project score together.

The sample export ("Download Sample Data") has one row per sample: ``plotid``, ``sampleid``,
``lon``, ``lat`` (the sample's centre), ``email``, ``flagged``, ``collection_time``,
``analysis_duration``, ``imagery_title``, ``imagery_attributions``, ``sample_geom``, the plot
file's extra columns as ``pl_<name>`` and the sample file's as ``smpl_<name>``, then one
column per survey question named after the question's text, holding the answer's text. Older
exports name the first two ``plot_id`` and ``sample_id``.

A plot's reference is its samples' answer: with the "Center" sample design a plot has one
sample; with several samples (gridded, random) the answer most of them got, a tie decided by
the samples nearest the plot's centre (the mean of their positions), ring by ring of equal
distance; a tie that holds in every ring (a 2 x 2 grid split 2-2) is refused, since only the
order of the rows could decide it (:func:`plot_answer`). That is the class
covering most of the pixel when the plot is the map's pixel, the rule
:mod:`inference.assess.point_files` documents for every other way of labelling.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.csv_text import csv_text
from core.errors import InputDataError

CEO_PLOT_LIMIT = 5000  # plots per project that CEO's project wizard accepts
CEO_COLUMNS = ("PLOTID", "LON", "LAT", "STRATA_ID", "DESIGN_ID")
ID_PREFIX = "p"


def point_id(number: int) -> str:
    """The id of the ``number``-th point (1-based) in the interpreter's order: ``p00001``."""
    return f"{ID_PREFIX}{number:05d}"


def plot_file_parts(n: int, limit: int = CEO_PLOT_LIMIT) -> list[range]:
    """The 0-based positions of each plot file: one file, or files of at most ``limit``."""
    if n <= limit:
        return [range(n)]
    files = -(-n // limit)
    size = -(-n // files)  # even parts, each within the limit
    return [range(start, min(start + size, n)) for start in range(0, n, size)]


def ceo_plot_files(rows: Sequence[dict], out: Path, show_map_class: bool = False
                   ) -> dict[str, tuple[Path, str]]:
    """``ceo_plots.csv``, or ``ceo_plots_1.csv`` ... of at most 5,000 plots each (CEO's limit).

    ``rows``: the sample's rows (``id``, ``lon``, ``lat``, ``strata_id``, ``design_id``,
    ``map_class``) in the interpreter's order; the texts are returned by key (``ceo``, or
    ``ceo_1``...). ``show_map_class``: a design drawn with the map class shown (labels for
    training) adds ``MAP_CLASS``, which the export carries back as ``pl_map_class``.
    """
    columns = (*CEO_COLUMNS, "MAP_CLASS") if show_map_class else CEO_COLUMNS
    parts = plot_file_parts(len(rows))
    texts = {}
    for k, part in enumerate(parts, start=1):
        name = "ceo_plots.csv" if len(parts) == 1 else f"ceo_plots_{k}.csv"
        plots = [{"PLOTID": int(rows[i]["id"].removeprefix(ID_PREFIX)), "LON": rows[i]["lon"],
                  "LAT": rows[i]["lat"], "STRATA_ID": rows[i].get("strata_id", ""),
                  "DESIGN_ID": rows[i].get("design_id", ""),
                  "MAP_CLASS": rows[i].get("map_class", "")} for i in part]
        texts["ceo" if len(parts) == 1 else f"ceo_{k}"] = (
            out / name, csv_text(plots, columns, lineterminator="\n"))
    return texts


def is_ceo_export(columns: Sequence[str]) -> bool:
    """Whether a CSV's (lower-case) header is a CEO sample export's."""
    names = set(columns)
    return {"plotid", "sampleid"} <= names or {"plot_id", "sample_id"} <= names


@dataclass(frozen=True)
class _Sample:
    answer: str
    lon: float
    lat: float


def plot_records(records: Sequence[dict], column: str, source: str) -> list[dict]:
    """CEO sample rows (keys lower-case) as one record per plot.

    Each record has ``id``, ``lon``, ``lat``, ``reference`` (see module docstring),
    ``strata_id`` and ``design_id`` (the plot file's ``STRATA_ID`` and ``DESIGN_ID``, empty for
    a plot file without them), and ``map_class`` where the export has ``pl_map_class`` (a
    design drawn with the map class shown); a plot
    with no answer keeps an empty reference. Nothing depends on the order of the rows.

    Raises:
        InputDataError: a plot id is not a number, a sample has no position, or a plot's
            answers tie at every distance from its centre (:func:`plot_answer`).
    """
    plot_key = "plotid" if "plotid" in records[0] else "plot_id"
    plots: dict[str, list[_Sample]] = {}
    drawn: dict[str, tuple[str, str]] = {}  # each plot's strata_id and design_id
    shown: dict[str, str] = {}  # each plot's map class, of a design drawn with it shown
    for row in records:
        plot = str(row.get(plot_key) or "").strip()
        if not plot.isdigit():
            raise InputDataError(f"{source}: a CEO export row has plot id {plot!r}; plot ids "
                                 "are the PLOTID numbers of the plot file isamap wrote")
        try:
            sample = _Sample(str(row.get(column) or "").strip(), float(row["lon"]),
                             float(row["lat"]))
        except (KeyError, TypeError, ValueError):
            raise InputDataError(f"{source}: plot {plot} has a sample without numeric lon/lat"
                                 ) from None
        plots.setdefault(plot, []).append(sample)
        drawn[plot] = (str(row.get("pl_strata_id") or "").strip(),
                        str(row.get("pl_design_id") or "").strip())
        if "pl_map_class" in row:
            shown[plot] = str(row["pl_map_class"] or "").strip()
    out, tied = [], []
    for plot, samples in plots.items():
        lon = float(np.mean([s.lon for s in samples]))
        lat = float(np.mean([s.lat for s in samples]))
        answer = plot_answer(samples, lon, lat)
        if answer is None:
            tied.append((int(plot), samples))
            answer = ""
        out.append({"id": point_id(int(plot)), "lon": lon, "lat": lat, "reference": answer,
                    "strata_id": drawn[plot][0], "design_id": drawn[plot][1],
                    **({"map_class": shown[plot]} if plot in shown else {})})
    if tied:
        tied.sort(key=lambda t: t[0])
        counts = Counter(s.answer.lower() for s in tied[0][1] if s.answer)
        split = ", ".join(f"{a} {n}" for a, n in sorted(counts.items()))
        raise InputDataError(
            f"{source}: {len(tied)} of {len(plots)} plots (first: plot {tied[0][0]}, {split}) "
            "have their samples split evenly between answers at every distance from the "
            "plot's centre, so no answer covers most of the plot (and the order of the rows "
            "must not decide); review those plots in Collect Earth Online so one answer has "
            "more samples, or use the 'Center' sample design (one sample per plot)")
    return out


#: distances from a plot's centre within this share of the largest count as equal (CEO
#: rounds sample positions; a gridded plot's samples lie on rings of equal distance)
RING_TOLERANCE = 1e-3


def plot_answer(samples: Sequence[_Sample], lon: float, lat: float) -> str | None:
    """The answer most samples got; a tie decided ring by ring from the plot's centre.

    Among the answers tied for most samples, the samples are grouped into rings of equal
    distance from the centre (metres on the ground: longitude scaled by cos(latitude)), nearest
    first; the first ring where one tied answer has more samples than the others decides.

    Returns:
        The answer (lower case), ``""`` when no sample was answered, None when the tie holds
        in every ring (a 2 x 2 grid split 2-2: every sample equally near).
    """
    answered = [s for s in samples if s.answer]
    if not answered:
        return ""
    counts = Counter(s.answer.lower() for s in answered).most_common()
    best = {a for a, c in counts if c == counts[0][1]}
    if len(best) == 1:
        return next(iter(best))
    scale = math.cos(math.radians(lat))
    near = sorted((math.hypot((s.lon - lon) * scale, s.lat - lat), s.answer.lower())
                  for s in answered if s.answer.lower() in best)
    tolerance = RING_TOLERANCE * max(near[-1][0], 1e-12)
    start = 0
    while start < len(near):
        end = start
        while end < len(near) and near[end][0] - near[start][0] <= tolerance:
            end += 1
        ring = Counter(answer for _, answer in near[start:end]).most_common()
        if len(ring) == 1 or ring[0][1] > ring[1][1]:
            return ring[0][0]
        start = end
    return None
