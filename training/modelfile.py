"""One self-describing file per trained model: what inference needs and nothing it must guess.

The file is a ``torch.save`` of plain containers (loadable with ``weights_only=True``, so
opening a model file never runs pickled code): a format tag, the ``ModelMeta`` as a dict and
the state dict. ``load_model_file`` rebuilds the network from the recorded name and keyword
arguments through the model registry, loads the weights and returns both.

A file that cannot be used is refused in one line naming it as the user gave it (``--model
PATH``), saying what is wrong and what to do; the library's own detail (torch's unpickling
error, the state-dict key lists) stays on the exception chain, which ``--debug`` shows.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
from collections.abc import Callable, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import nn

from core.digest import chunks_sha256, file_sha256
from core.errors import ModelError
from core.shareable import portable_path, resolved_path
from core.storage import atomic_write
from core.version import code_version as _code_version
from training.calibration import temperature_of
from training.config import NORMS
from training.models import available_models, create_model, model_module

FORMAT = "isamap-model/1"
CHECKPOINT_FORMAT = "isamap-checkpoint/1"  # the trainer's checkpoint.pt (training.trainer)
_GIVE = "give the model.pt that isamap-train wrote in its --out folder"
#: The local paths a model file records, as (section of ``extra``, key): the dataset it was
#: trained on (int8 calibration, ``isamap-map``, fine-tuning find it again), the run's data
#: and output folders, the model a pruned one came from. Model files are shared, so they are
#: written relative to the file's folder (:func:`core.shareable.portable_path`)
#: and read back as paths from here (older files' absolute paths as they are).
RECORDED_PATHS = (("dataset", "root"), ("config", "data"), ("config", "out_dir"),
                  ("pruning", "from"))


@dataclass(frozen=True)
class ModelMeta:
    """Everything needed to rebuild and feed a trained model.

    Attributes:
        name: registry name of the architecture (``create_model`` name). The network is
            rebuilt from that name's builder with ``model_kwargs``, and fed by ``norm``, as
            recorded, never from the name's recipe of today: a ``unet-s2`` file written
            when that name standardised each window records ``input_norm: patch``.
        in_channels / num_classes: constructor sizes.
        model_kwargs: other constructor arguments (JSON-like values only).
        bands: input band names, in the order the model expects (the manifest's order).
        norm_mean / norm_std: per-band normalisation computed on the training split;
            inputs are ``(x - mean) / std`` with NaN replaced by 0 afterwards.
        class_scheme / class_names: label scheme and names of output classes.
        output_scale: output pixels per input pixel (1; k for super-resolution models).
        metrics: validation/test metrics recorded at save time.
        code_version: isamap version + git commit that trained the model.
        module: the module whose ``MODELS`` table defines the model; loading imports it, so
            a model defined outside ``training.models`` is rebuilt from its own module.
        extra: free-form JSON-like information (training config, dataset manifest id ...).
        pixel_size: metres per input pixel of the training grid (None: not recorded; files
            of older isamap versions record it only in ``extra["dataset"]["grid"]``).
        band_ranges: band name -> ``(p1, p50, p99)``, percentiles of its raw values in the
            training split; inputs are compared with them before a map is made
            (``inference.predict.expected_inputs.check_input``). Empty: not recorded.
        calibration: how the probabilities are calibrated (:func:`training.calibration.fit_record`:
            the temperature fitted on the validation split after training, with the NLL and
            ECE before and after). Empty (files of older isamap versions, or a training
            without a validation split): temperature 1, uncalibrated.
        window: the prediction tile, in pixels, that every map of the model is made with,
            for a network whose output depends on the window it is shown (one that
            standardises its input by the window's own statistics, ``unet-s2-window``'s
            ``input_norm: patch``): its maps on another tile are other maps, so prediction
            refuses another ``--tile``
            (:func:`inference.predict.blending.check_window`). None: any tile.
        norm: what its inputs are normalised by (``isamap-train --norm``): ``training``,
            ``norm_mean`` / ``norm_std``; ``scene``, the statistics of the stack each map is
            made from (the training statistics are recorded all the same, for reference):
            every prediction path computes them before the first tile
            (:func:`inference.predict.scene.scene_statistics`).
        learnt_classes: the classes the training split's labels hold (at least one pixel),
            in ``class_names`` order; a class outside it was never shown to the network
            (``isamap-predict --postprocess keep`` takes such classes from the product).
            None: not recorded (files of older isamap versions).
    """

    name: str
    in_channels: int
    num_classes: int
    bands: tuple[str, ...]
    norm_mean: tuple[float, ...]
    norm_std: tuple[float, ...]
    class_scheme: str = "isa"
    class_names: tuple[str, ...] = ("pervious", "impervious")
    output_scale: int = 1
    model_kwargs: Mapping = field(default_factory=dict)
    metrics: Mapping = field(default_factory=dict)
    code_version: str = ""
    module: str = ""
    extra: Mapping = field(default_factory=dict)
    pixel_size: float | None = None
    band_ranges: Mapping = field(default_factory=dict)
    calibration: Mapping = field(default_factory=dict)
    window: int | None = None
    norm: str = "training"
    learnt_classes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.bands)
        if self.norm not in NORMS:
            raise ModelError(f"norm must be {' or '.join(NORMS)}, got {self.norm!r}")
        if self.window is not None and (isinstance(self.window, bool)
                                        or not isinstance(self.window, int) or self.window < 16):
            raise ModelError(f"window must be a tile side in pixels (>= 16), got {self.window!r}")
        if n != self.in_channels or len(self.norm_mean) != n or len(self.norm_std) != n:
            raise ModelError(f"model meta is inconsistent: in_channels={self.in_channels}, "
                             f"{n} bands, {len(self.norm_mean)} means, {len(self.norm_std)} stds")
        if len(self.class_names) != self.num_classes:
            raise ModelError(f"{len(self.class_names)} class names for {self.num_classes} classes")
        if int(self.output_scale) < 1:
            raise ModelError(f"output_scale must be >= 1, got {self.output_scale}")
        if any(s <= 0 for s in self.norm_std):
            raise ModelError("normalisation std must be positive for every band")
        if self.learnt_classes is not None and not set(self.learnt_classes) <= set(
                self.class_names):
            raise ModelError("learnt_classes names classes the model does not map")
        if not set(self.band_ranges) <= set(self.bands):
            raise ModelError("band_ranges name bands the model does not take")
        try:
            temperature_of(self.calibration)
        except ValueError as exc:
            raise ModelError(f"the model's calibration is invalid: {exc}") from exc

    @property
    def temperature(self) -> float:
        """The temperature every prediction divides the logits by (1: uncalibrated)."""
        return temperature_of(self.calibration)

    @property
    def calibrated(self) -> bool:
        """Whether the file records a fitted calibration (older files and unfitted: no)."""
        return dict(self.calibration).get("method") == "temperature"

    def training_pixel_size(self) -> float | None:
        """Metres per pixel of the training grid: recorded, else the dataset's grid, else None."""
        if self.pixel_size:
            return float(self.pixel_size)
        grid = (dict(self.extra).get("dataset") or {}).get("grid") or {}
        resolution = grid.get("resolution") if isinstance(grid, Mapping) else None
        return float(resolution) if resolution else None

    def training_patch_size(self) -> int | None:
        """Side in pixels of the training patches (the dataset's grid), or None if unrecorded."""
        grid = (dict(self.extra).get("dataset") or {}).get("grid") or {}
        size = grid.get("patch_size") if isinstance(grid, Mapping) else None
        return int(size) if size else None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["model_kwargs"] = dict(self.model_kwargs)
        d["calibration"] = dict(self.calibration)
        d["band_ranges"] = {k: list(v) for k, v in dict(self.band_ranges).items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> ModelMeta:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ModelError(f"the model description has fields this isamap does not know "
                             f"({', '.join(sorted(unknown))}); it was written by a newer "
                             "isamap: upgrade isamap to read it")
        required = [f.name for f in fields(cls)
                    if f.default is MISSING and f.default_factory is MISSING]
        missing = [name for name in required if name not in d]
        if missing:
            raise ModelError(f"the model description lacks {', '.join(missing)}; the file is "
                             "damaged or was not written by isamap-train: copy it again or "
                             "train again")
        kw = dict(d)
        for key in ("bands", "norm_mean", "norm_std", "class_names"):
            if key in kw:
                kw[key] = tuple(kw[key])
        if kw.get("learnt_classes") is not None:
            kw["learnt_classes"] = tuple(kw["learnt_classes"])
        if "band_ranges" in kw:
            kw["band_ranges"] = {k: tuple(map(float, v)) for k, v in
                                 dict(kw["band_ranges"] or {}).items()}
        try:
            return cls(**kw)
        except (ModelError, TypeError, ValueError) as exc:
            raise ModelError(f"the model description does not hold together ({exc}); the "
                             "file is damaged or was edited: copy it again or train "
                             "again") from exc


def build_model(meta: ModelMeta) -> nn.Module:
    """A freshly initialised model of the architecture described by ``meta``."""
    return create_model(meta.name, meta.in_channels, meta.num_classes,
                        module=meta.module or None, **dict(meta.model_kwargs))


def save_model_file(path: str | os.PathLike, model: nn.Module, meta: ModelMeta) -> Path:
    """Write model + meta atomically (temp file in the same folder, then ``os.replace``)."""
    path = Path(path)
    model = getattr(model, "module", model)  # unwrap DDP
    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    if not meta.module:  # a built-in model's module; a hand-built one records none
        with contextlib.suppress(ModelError):
            meta = ModelMeta.from_dict({**meta.to_dict(), "module": model_module(meta.name)})
    if not meta.code_version:
        meta = ModelMeta.from_dict({**meta.to_dict(), "code_version": _code_version()})
    meta = _with_paths(meta, lambda recorded: portable_path(recorded, path.parent))
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    bad = non_finite_tensors(state)
    if bad:
        raise ModelError(f"the weights to save are not finite (NaN or inf in {len(bad)} "
                         f"tensor(s), e.g. {bad[0]}): training diverged; lower --lr and train "
                         "again")
    payload = {"format": FORMAT, "meta": meta.to_dict(), "state_dict": state,
               "weights_sha256": weights_digest(state)}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(payload, path)
    return path


MODEL_ID_LENGTH = 16
"""Hex characters of :func:`model_file_id` (64 bits: no two models of one user collide)."""


def model_file_id(path: str | os.PathLike) -> str:
    """The identity of a model file: the SHA-256 of its bytes, :data:`MODEL_ID_LENGTH` long.

    A model is identified by its content, never by its name: a prediction's checkpoint and COG
    tags, a map's tile names and a staged copy of the file on Cloud Storage all carry this id,
    so a resumed run never mixes two models' outputs, and a retrained ``model.pt`` at the same
    path is noticed. Persisted: changing it makes every existing output look foreign.
    """
    return file_sha256(path, MODEL_ID_LENGTH)


def weights_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's names, dtypes, shapes and bytes, in key order.

    Recorded in every model file at save time and recomputed at load, so damaged or edited
    weights are refused even where the file still unpickles (torch does not check the CRCs
    of a file's tensor data).
    """
    def chunks():
        for key in sorted(state):
            tensor = state[key]
            if not isinstance(tensor, torch.Tensor):
                continue
            tensor = tensor.detach().to("cpu").contiguous()
            yield f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode()
            if tensor.numel():
                yield tensor.view(-1).view(torch.uint8).numpy().tobytes()

    return chunks_sha256(chunks())


def non_finite_tensors(state: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors of a state dict holding NaN or inf."""
    return [k for k, v in state.items() if isinstance(v, torch.Tensor)
            and v.is_floating_point() and v.numel() and not bool(torch.isfinite(v).all())]


def atomic_torch_save(obj, path: Path) -> None:
    """``torch.save`` to a temp file beside ``path``, then rename: readers never see half a file."""
    atomic_write(path, lambda fh: torch.save(obj, fh))


def read_model_file(path: str | os.PathLike | io.BytesIO,
                    map_location: str | torch.device = "cpu",
                    flag: str = "--model") -> tuple[ModelMeta, dict]:
    """The meta and state dict of a model file, validated, without building the network.

    Weights that are not finite are refused here; the digest the file records is checked by
    :func:`load_model_file`, once the weights are known to fit the network (so a file cut
    short is told as such, not as a digest mismatch).

    Args:
        path: the model file.
        map_location: where the tensors are loaded.
        flag: how errors name the file, the flag the user typed (``--model``), or ``model
            file`` for a file isamap wrote itself.
    """
    meta, state, _ = _read(path, map_location, flag)
    return meta, state


def _read(path: str | os.PathLike | io.BytesIO, map_location: str | torch.device,
          flag: str) -> tuple[ModelMeta, dict, str | None]:
    """:func:`read_model_file`'s meta and state, and the weights digest the file records."""
    given = f"{flag} {path}"
    if isinstance(path, str | os.PathLike) and Path(path).is_dir():
        raise ModelError(f"{given} is a folder, not a model file; {_GIVE}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"{given} does not exist; {_GIVE}") from None
    except Exception as exc:  # corrupt / truncated / not a torch file; detail under --debug
        if isinstance(exc, pickle.UnpicklingError) and "Unsupported global" in str(exc):
            raise ModelError(f"{given} holds pickled Python objects (e.g. a whole "
                             "torch.save(model)), which isamap does not load because loading "
                             f"them would run their code; {_GIVE}") from exc
        raise ModelError(f"{given} cannot be read as a model file (it is truncated, damaged "
                         f"or not a torch file); copy it again, or {_GIVE}") from exc
    fmt = payload.get("format") if isinstance(payload, dict) else None
    if fmt == CHECKPOINT_FORMAT:
        raise ModelError(f"{given} is a training checkpoint, not a model file; give the "
                         "model.pt beside it in the same run folder")
    if isinstance(fmt, str) and fmt.startswith("isamap-model/") and fmt != FORMAT:
        raise ModelError(f"{given} is a model file of format {fmt}, which this isamap cannot "
                         f"read (it reads {FORMAT}); upgrade isamap to read it")
    if fmt != FORMAT:
        raise ModelError(f"{given} is not an isamap model file (a torch file without isamap's "
                         f"description, e.g. a bare state dict); {_GIVE}")
    if not isinstance(payload.get("meta"), dict) or not isinstance(payload.get("state_dict"), dict):
        raise ModelError(f"{given} lacks its description or weights; the file is damaged: "
                         "copy it again or train again")
    try:
        meta = ModelMeta.from_dict(payload["meta"])
    except ModelError as exc:
        raise ModelError(f"{given}: {exc}") from exc
    state = payload["state_dict"]
    bad = non_finite_tensors(state)
    if bad:
        raise ModelError(f"{given} has weights that are not finite (NaN or inf in {len(bad)} "
                         f"of {len(state)} tensors, e.g. {bad[0]}), so every map it made "
                         "would be empty or wrong; it comes from a training that diverged: "
                         "train again with a lower --lr, or give another model file")
    if isinstance(path, str | os.PathLike):  # the recorded paths, as paths from here
        text = os.fspath(path)
        folder = text.rsplit("/", 1)[0] if "://" in text else Path(text).parent
        meta = _with_paths(meta, lambda recorded: resolved_path(recorded, folder))
    return meta, state, payload.get("weights_sha256")


def _with_paths(meta: ModelMeta, convert: Callable[[str], str]) -> ModelMeta:
    """``meta`` with each of :data:`RECORDED_PATHS` that it holds (a string) converted."""
    extra = dict(meta.extra or {})
    changed = False
    for section, key in RECORDED_PATHS:
        part = extra.get(section)
        if isinstance(part, Mapping) and isinstance(part.get(key), str) and part[key]:
            extra[section] = {**part, key: convert(part[key])}
            changed = True
    return ModelMeta.from_dict({**meta.to_dict(), "extra": extra}) if changed else meta


def load_model_file(path: str | os.PathLike | io.BytesIO,
                    map_location: str | torch.device = "cpu",
                    flag: str = "--model") -> tuple[nn.Module, ModelMeta]:
    """Rebuild the model of a model file, load its weights, return ``(model.eval(), meta)``.

    ``flag`` names the file in errors, as in :func:`read_model_file`.
    """
    given = f"{flag} {path}"
    meta, state, recorded = _read(path, map_location, flag)
    try:
        model = build_model(meta)
    except ModelError as exc:
        known = available_models()
        what = (f"is a {meta.name!r} model, which this isamap does not know (it knows "
                f"{', '.join(known)})" if meta.name not in known and not meta.module else
                f"cannot be rebuilt by {meta.module} ({exc})" if meta.name not in known else
                f"records settings this isamap's {meta.name!r} network does not take "
                f"(model_kwargs: {', '.join(sorted(meta.model_kwargs)) or 'none'})")
        raise ModelError(f"{given} {what}; use the isamap version that trained it, or train "
                         "again with this one") from exc
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [k for k in expected if k in state and tuple(state[k].shape) !=
                tuple(expected[k].shape)]
    if missing or unexpected or reshaped:
        counts = ", ".join(f"{len(keys)} {what}" for keys, what in (
            (missing, "missing"), (unexpected, "unexpected"), (reshaped, "of another shape"))
            if keys)
        first = (missing or unexpected or reshaped)[0]
        raise ModelError(f"{given}: its weights do not fit the {meta.name!r} network its "
                         f"description records ({counts}, e.g. {first}); the file is damaged "
                         f"or was assembled from another model: {_GIVE}")
    if recorded is not None and recorded != weights_digest(state):
        raise ModelError(f"{given} fails its integrity check: its weights differ from the "
                         "digest recorded when it was saved (the file was damaged or edited); "
                         "copy it again or train again")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # a case the key and shape checks above do not foresee
        raise ModelError(f"{given}: its weights do not fit the {meta.name!r} network its "
                         f"description records; {_GIVE}") from exc
    return model.to(map_location).eval(), meta


@dataclass(frozen=True)
class LoadedModel:
    """A model file read once: the network, its description and the file's identity.

    What a run that uses one model many times (``isamap-map``'s dates, its pipeline runner)
    hands on, instead of each of them reading, checking and hashing the file again.

    Attributes:
        module: the network, weights loaded, in eval mode (runners work on copies).
        meta: the file's description.
        file_id: :func:`model_file_id` of the file (a map's tiles, tags and checkpoints).
        path: the file it was read from, for processes that read it themselves.
    """

    module: nn.Module
    meta: ModelMeta
    file_id: str
    path: str


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu",
               flag: str = "--model") -> LoadedModel:
    """Read, check and hash a model file once (errors as :func:`load_model_file`'s)."""
    module, meta = load_model_file(path, map_location, flag)
    return LoadedModel(module, meta, model_file_id(path), os.fspath(path))
