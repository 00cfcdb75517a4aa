"""One self-describing file per trained model: what inference needs and nothing it must guess.

The file is a ``torch.save`` of plain containers (loadable with ``weights_only=True``, so
opening a model file never runs pickled code): a format tag, the ``ModelMeta`` as a dict and
the state dict. ``load_model_file`` rebuilds the network from the recorded name and keyword
arguments through the model registry, loads the weights and returns both.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import nn

from gee_export.core.errors import ModelError
from gee_export.core.storage import atomic_write
from gee_export.core.version import code_version as _code_version
from training.models import create_model, model_module

FORMAT = "isamap-model/1"


@dataclass(frozen=True)
class ModelMeta:
    """Everything needed to rebuild and feed a trained model.

    Attributes:
        name: registry name of the architecture (``create_model`` name).
        in_channels / num_classes: constructor sizes.
        model_kwargs: other constructor arguments (JSON-like values only).
        bands: input band names, in the order the model expects (the manifest's order).
        norm_mean / norm_std: per-band normalisation computed on the training split;
            inputs are ``(x - mean) / std`` with NaN replaced by 0 afterwards.
        class_scheme / class_names: label scheme and names of output classes.
        output_scale: output pixels per input pixel (1; k for super-resolution models).
        metrics: validation/test metrics recorded at save time.
        code_version: isamap version + git commit that trained the model.
        module: module defining the model (imported on load for models registered elsewhere).
        extra: free-form JSON-like information (training config, dataset manifest id ...).
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

    def __post_init__(self) -> None:
        n = len(self.bands)
        if n != self.in_channels or len(self.norm_mean) != n or len(self.norm_std) != n:
            raise ModelError(f"model meta is inconsistent: in_channels={self.in_channels}, "
                             f"{n} bands, {len(self.norm_mean)} means, {len(self.norm_std)} stds")
        if len(self.class_names) != self.num_classes:
            raise ModelError(f"{len(self.class_names)} class names for {self.num_classes} classes")
        if int(self.output_scale) < 1:
            raise ModelError(f"output_scale must be >= 1, got {self.output_scale}")
        if any(s <= 0 for s in self.norm_std):
            raise ModelError("normalisation std must be positive for every band")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["model_kwargs"] = dict(self.model_kwargs)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> ModelMeta:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ModelError(f"model file has unknown meta fields {sorted(unknown)}; it was "
                             "written by a newer isamap, upgrade to read it")
        kw = dict(d)
        for key in ("bands", "norm_mean", "norm_std", "class_names"):
            if key in kw:
                kw[key] = tuple(kw[key])
        try:
            return cls(**kw)
        except TypeError as exc:
            raise ModelError(f"model file meta is incomplete: {exc}") from None


def build_model(meta: ModelMeta) -> nn.Module:
    """A freshly initialised model of the architecture described by ``meta``."""
    return create_model(meta.name, meta.in_channels, meta.num_classes,
                        module=meta.module or None, **dict(meta.model_kwargs))


def save_model_file(path: str | os.PathLike, model: nn.Module, meta: ModelMeta) -> Path:
    """Write model + meta atomically (temp file in the same folder, then ``os.replace``)."""
    path = Path(path)
    model = getattr(model, "module", model)  # unwrap DDP
    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    if not meta.module:
        with contextlib.suppress(KeyError):
            meta = ModelMeta.from_dict({**meta.to_dict(), "module": model_module(meta.name)})
    if not meta.code_version:
        meta = ModelMeta.from_dict({**meta.to_dict(), "code_version": _code_version()})
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "meta": meta.to_dict(), "state_dict": state}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(payload, path)
    return path


def atomic_torch_save(obj, path: Path) -> None:
    """``torch.save`` to a temp file beside ``path``, then rename: readers never see half a file."""
    atomic_write(path, lambda fh: torch.save(obj, fh))


def read_model_file(path: str | os.PathLike | io.BytesIO,
                    map_location: str | torch.device = "cpu") -> tuple[ModelMeta, dict]:
    """The meta and state dict of a model file, validated, without building the network."""
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"model file {path} does not exist") from None
    except Exception as exc:  # corrupt / truncated / not a torch file
        raise ModelError(f"{path} is not a readable isamap model file ({exc.__class__.__name__}: "
                         f"{exc}); give a model.pt written by isamap-train, or train again "
                         "(Python: training.modelfile.save_model_file)") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        got = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ModelError(f"{path} is not an isamap model file (format {got!r}, expected "
                         f"{FORMAT!r}); a training checkpoint is not a model file either")
    if not isinstance(payload.get("meta"), dict) or not isinstance(payload.get("state_dict"), dict):
        raise ModelError(f"{path} lacks its meta or weights; the file is damaged")
    return ModelMeta.from_dict(payload["meta"]), payload["state_dict"]


def load_model_file(path: str | os.PathLike | io.BytesIO,
                    map_location: str | torch.device = "cpu") -> tuple[nn.Module, ModelMeta]:
    """Rebuild the model of a model file, load its weights, return ``(model.eval(), meta)``."""
    meta, state = read_model_file(path, map_location)
    model = build_model(meta)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"weights in {path} do not fit a {meta.name!r} model built from its "
                         f"meta: {str(exc).splitlines()[0]}") from None
    return model.to(map_location).eval(), meta
