"""One self-describing file per trained model: what inference needs and nothing it must guess.

The file is a ``torch.save`` of plain containers (loadable with ``weights_only=True``, so
opening a model file never runs pickled code): a format tag, the ``ModelMeta`` as a dict and
the state dict. ``load_model_file`` rebuilds the network from the recorded name and keyword
arguments through the model registry, loads the weights and returns both. What the
description holds is :class:`training.model_meta.ModelMeta`. The file records the SHA-256 of its
weights and of its description, both checked at load: an edit to either is refused.

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
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from core.digest import chunks_sha256, json_digest
from core.errors import ModelError
from core.shareable import portable_path, resolved_path
from core.storage import atomic_write, files
from core.version import code_version as _code_version
from training.model_meta import ModelMeta
from training.models import available_models, create_model, model_module
from training.run_paths import converted_paths

FORMAT = "isamap-model/1"
CHECKPOINT_FORMAT = "isamap-checkpoint/1"  # the trainer's checkpoint.pt (training.run.trainer)
_GIVE = "give the model.pt that isamap-train wrote in its --out folder"
#: The local paths a model file records, as (section of ``extra``, key): the dataset it was
#: trained on (int8 calibration, ``isamap-map``, fine-tuning find it again), the model a pruned
#: one came from and the dataset it was fine-tuned on; and those of the run's options in ``config``
#: (:func:`training.run_paths.converted_paths`: data and output folders, the encoder's file).
#: Model files are shared, so they are written relative to the file's folder
#: (:func:`core.shareable.portable_path`) and read back as paths from here (older files'
#: absolute paths as they are).
RECORDED_PATHS = (("dataset", "root"), ("pruning", "from"), ("pruning", "data"))


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
    meta = portable_meta(meta, path.parent)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    bad = non_finite_tensors(state)
    if bad:
        raise ModelError(f"the weights to save are not finite (NaN or inf in {len(bad)} "
                         f"tensor(s), e.g. {bad[0]}): training diverged; lower --lr and train "
                         "again")
    description = meta.to_dict()
    payload = {"format": FORMAT, "meta": description, "state_dict": state,
               "weights_sha256": weights_digest(state),
               "description_sha256": description_digest(description)}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(payload, path)
    return path


MODEL_ID_LENGTH = 16
"""Hex characters of :func:`model_file_id` (64 bits: no two models of one user collide)."""


def model_file_id(data: bytes) -> str:
    """The identity of a model file: the SHA-256 of its bytes, :data:`MODEL_ID_LENGTH` long.

    A model is identified by its content, never by its name: a prediction's checkpoint and COG
    tags, a map's tile names and a staged copy of the file on Cloud Storage all carry this id,
    so a resumed run never mixes two models' outputs, and a retrained ``model.pt`` at the same
    path is noticed. Persisted: changing it makes every existing output look foreign.
    """
    return chunks_sha256([data], MODEL_ID_LENGTH)


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


def description_digest(description: Mapping) -> str:
    """SHA-256 of a model file's description as stored (canonical JSON of its dict).

    Recorded beside the weights digest and checked at load: the description decides how every
    map is made (bands, normalisation, calibration temperature, thresholds), so an edit to it
    is refused like an edit to the weights. Files written before it was recorded have none
    and are read as before.
    """
    return json_digest(dict(description))


def non_finite_tensors(state: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors of a state dict holding NaN or inf."""
    return [k for k, v in state.items() if isinstance(v, torch.Tensor)
            and v.is_floating_point() and v.numel() and not bool(torch.isfinite(v).all())]


def atomic_torch_save(obj, path: Path) -> None:
    """``torch.save`` to a temp file beside ``path``, then rename: readers never see half a file."""
    atomic_write(path, lambda fh: torch.save(obj, fh))


def read_model_file(path: str | os.PathLike, flag: str = "--model") -> tuple[ModelMeta, dict]:
    """The meta and state dict of a model file on the CPU, validated, without building the network.

    Weights that are not finite are refused here; the digest the file records is checked by
    :func:`load_model_file`, once the weights are known to fit the network (so a file cut
    short is told as such, not as a digest mismatch).

    Args:
        path: the model file.
        flag: how errors name the file, the flag the user typed (``--model``), or ``model
            file`` for a file isamap wrote itself.
    """
    return _read(path, "cpu", flag)[:2]


def _read(path: str | os.PathLike, map_location: str | torch.device,
          flag: str) -> tuple[ModelMeta, dict, str | None, str]:
    """One read of a model file: its meta, state, recorded weights digest and file id."""
    given = f"{flag} {path}"
    if Path(path).is_dir():
        raise ModelError(f"{given} is a folder, not a model file; {_GIVE}")
    try:
        if files.is_gcs(path):  # a Dataflow worker's model file, read from Cloud Storage
            if not files.exists(path):
                raise FileNotFoundError(path)
            store, name = files.store_of(path)
            data = store.read_bytes(name)
        else:
            with open(path, "rb") as handle:  # loaded and hashed from these bytes
                data = handle.read()
        payload = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
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
    recorded = payload.get("description_sha256")
    try:
        described = description_digest(payload["meta"]) if recorded is not None else None
    except TypeError:  # a value no isamap writes (an edit): no canonical form, no match
        described = ""
    if recorded is not None and recorded != described:
        raise ModelError(f"{given} fails its integrity check: its description (bands, "
                         "normalisation, calibration) differs from the digest recorded when it "
                         "was saved (the file was edited or damaged); copy it again or train "
                         "again")
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
    text = os.fspath(path)  # the recorded paths, as paths from here
    folder = text.rsplit("/", 1)[0] if "://" in text else Path(text).parent
    meta = _with_paths(meta, lambda recorded: resolved_path(recorded, folder))
    return meta, state, payload.get("weights_sha256"), model_file_id(data)


def portable_meta(meta: ModelMeta, folder: str | os.PathLike) -> ModelMeta:
    """``meta`` as a file in ``folder`` records it: its local paths relative to ``folder``.

    The one conversion of a description's paths for the files that hold one (model files,
    the trainer's checkpoint): :data:`RECORDED_PATHS` and the run's options, through
    :func:`core.shareable.portable_path`; :func:`read_model_file` reads them back.
    """
    return _with_paths(meta, lambda recorded: portable_path(recorded, folder))


def _with_paths(meta: ModelMeta, convert: Callable[[str], str]) -> ModelMeta:
    """``meta`` with each of :data:`RECORDED_PATHS` and its run's paths that it holds converted."""
    extra = dict(meta.extra or {})
    changed = False
    for section, key in RECORDED_PATHS:
        part = extra.get(section)
        if isinstance(part, Mapping) and isinstance(part.get(key), str) and part[key]:
            extra[section] = {**part, key: convert(part[key])}
            changed = True
    if isinstance(extra.get("config"), Mapping):
        extra["config"] = converted_paths(extra["config"], convert)
        changed = True
    return ModelMeta.from_dict({**meta.to_dict(), "extra": extra}) if changed else meta


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
    """Read a model file once, rebuild its network with its weights and hash the bytes read.

    ``flag`` names the file in errors, as in :func:`read_model_file`.
    """
    given = f"{flag} {path}"
    meta, state, recorded, file_id = _read(path, map_location, flag)
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
    return LoadedModel(model.to(map_location).eval(), meta, file_id, os.fspath(path))


def load_model_file(path: str | os.PathLike, flag: str = "--model") -> tuple[nn.Module, ModelMeta]:
    """:func:`load_model`'s ``(model.eval(), meta)`` on the CPU, for who needs not the file's id."""
    loaded = load_model(path, flag=flag)
    return loaded.module, loaded.meta
