"""The value of a runtime choice: the setting a run uses, why, and what a map records of it.

Kept apart from the measuring (:mod:`engine.autotune`) because every output writer reads it
(COG tags, ``metrics.json``, checkpoints, model files) and a map's bytes must depend only on
what :meth:`Choice.tags` returns: the setting and whether it was asked for or chosen, never
this machine's timings, device or caches (:meth:`Choice.measurements`).

May import: ``engine.setting``, ``core``; nothing else of the project.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from core.shareable import shareable_text
from engine.setting import Dtype, Mode, Setting

#: Agreement with fp32: mean |p - p_fp32| of the class probabilities, per pixel.
TOLERANCE = 0.02
Source = Literal["explicit", "measured", "cache", "checkpoint", "short-job"]


#: int8 record fields that depend on the machine or on a warm cache, not on the map
_MEASURED_INT8 = frozenset({"quantize_seconds", "compile_seconds", "reused"})


@dataclass(frozen=True)
class Choice:
    """How a run executes its model, and why (recorded in the run's outputs).

    Attributes:
        setting: the configuration used.
        source: ``explicit`` (all given by the user), ``measured`` (now), ``cache``,
            ``checkpoint`` (a resumed training run keeps its first choice), ``short-job``
            (too few samples for measuring to pay, ``engine.autotune.MEASURE_SHARE``: the
            first candidate, unmeasured).
        mode: ``inference`` or ``training`` (what was timed).
        shape: the input batch shape the choice is for.
        device: the device, in words (CPU model and threads, or GPU name).
        ms_per_sample: best measured time per sample of every timed candidate, by label.
        errors: each candidate's disagreement with fp32 (mean |p - p_fp32|), by label.
        rejected: labels of candidates over the tolerance or that failed (never timed).
        skipped: labels of candidates the budget could not check or time (the ``-v`` log
            says which).
        tolerance: the agreement bound used.
        measured_batch: samples per timed call (the batch is shrunk to fit the budget).
        measured_size: tile size of the timed calls (the real one: tiles are never cropped).
        seconds: wall time spent measuring.
        key: the cache key.
        compile_seconds: how long compiling took (``--compile``; 0: not compiled).
        int8: how an int8 model was made and how it agrees with fp32
            (:meth:`engine.quantize.Int8Model.record`); empty for other precisions.
    """

    setting: Setting
    source: Source = "explicit"
    mode: Mode = "inference"
    shape: tuple[int, ...] = ()
    device: str = ""
    ms_per_sample: Mapping[str, float] = field(default_factory=dict)
    errors: Mapping[str, float] = field(default_factory=dict)
    rejected: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    tolerance: float = TOLERANCE
    measured_batch: int = 0
    measured_size: tuple[int, ...] = ()
    seconds: float = 0.0
    key: str = ""
    compile_seconds: float = 0.0
    int8: Mapping[str, Any] = field(default_factory=dict)

    @property
    def precision(self) -> Dtype:
        return self.setting.precision

    @property
    def channels_last(self) -> bool:
        return self.setting.channels_last

    @property
    def label(self) -> str:
        return self.setting.label

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        d["rejected"] = list(self.rejected)
        d["skipped"] = list(self.skipped)
        d["measured_size"] = list(self.measured_size)
        d["ms_per_sample"] = dict(self.ms_per_sample)
        d["errors"] = dict(self.errors)
        d["label"] = self.label
        d["int8"] = dict(self.int8)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Choice:
        known = {f for f in Setting.__dataclass_fields__}
        setting = Setting(**{k: v for k, v in dict(d["setting"]).items() if k in known})
        return cls(setting=setting, source=d.get("source", "explicit"),
                   mode=d.get("mode", "inference"), shape=tuple(d.get("shape", ())),
                   device=d.get("device", ""), ms_per_sample=dict(d.get("ms_per_sample", {})),
                   errors=dict(d.get("errors", {})), rejected=tuple(d.get("rejected", ())),
                   skipped=tuple(d.get("skipped", ())),
                   measured_size=tuple(d.get("measured_size", ())),
                   tolerance=float(d.get("tolerance", TOLERANCE)),
                   measured_batch=int(d.get("measured_batch", 0)),
                   seconds=float(d.get("seconds", 0.0)), key=d.get("key", ""),
                   compile_seconds=float(d.get("compile_seconds", 0.0)),
                   int8=dict(d.get("int8") or {}))

    def tags(self) -> dict[str, str]:
        """Flat string metadata (GeoTIFF tags) of what the choice makes a map's pixels.

        The precision and layout (``runtime``), whether they were asked for or chosen by
        ``auto``, the agreement tolerance and the int8 check's figures: never timings, the
        machine or its thread count, nor whether a remembered choice or a cached kernel was
        used, so the same command writes the same bytes on any machine, warm or cold.
        Those go to :meth:`measurements` (the run's record and ``-v`` log).
        """
        tags = {"runtime": self.label,
                "runtime_source": "explicit" if self.source == "explicit" else "auto",
                "runtime_tolerance": f"{self.tolerance:g}"}
        tags.update({f"runtime_int8_{k}": json.dumps(v) if isinstance(v, list)
                     else shareable_text(f"{v}")
                     for k, v in self.int8.items() if k not in _MEASURED_INT8})
        return tags

    def measurements(self) -> dict[str, str]:
        """What this machine measured for the choice: device, timings, caches."""
        out = {"device": self.device, "source": self.source,
               "ms_per_tile": ",".join(f"{k}={v:.4g}" for k, v in self.ms_per_sample.items())}
        if self.compile_seconds:
            out["compile_s"] = f"{self.compile_seconds:.1f}"
        out.update({f"int8_{k}": f"{self.int8[k]}" for k in _MEASURED_INT8 if k in self.int8})
        return out

    def summary(self) -> str:
        if not self.ms_per_sample:
            return f"{self.label} ({self.source})"
        timed = ", ".join(f"{k} {v:.3g} ms" for k, v in sorted(
            self.ms_per_sample.items(), key=lambda kv: kv[1]))
        return f"{self.label} ({self.source}; per sample: {timed})"


__all__ = ["TOLERANCE", "Choice", "Source"]
