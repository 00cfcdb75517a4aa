"""Filter pruning via geometric median (FPGM, He et al. 2019), as the land-cover paper uses it.

Section 3.4 and Algorithm 1: starting from the trained model, every epoch of fine-tuning is
followed by zeroing, in every prunable convolution, the ``rate`` (40 %) of filters nearest
the geometric median of that layer's filters -- those with the smallest sum of Euclidean
distances to all the others, i.e. the ones the others can best stand in for. A zeroed filter
may grow back during the next epoch and the choice is made again (soft pruning). At the end
the zeroed filters are *removed*: the compact network has fewer channels, not masks.

Which convolutions (``HRNet.prunable_layers``): the paper prunes "all the convolutional
layers of the model, except for the latest layers before the multi-resolution fusion block"
(section 3.4). So every convolution is pruned -- stem, inner block convolutions,
intermediate fusion downsamplers, the head's 1x1, the residual output of every stage-1
bottleneck and of every block followed by another block of its branch, the transitions
that start each stage's branches and the first bottleneck's projection shortcut -- except
the layers before the fusion (the residual output of the last block of each branch in every
multi-resolution module, the last layer of each fusion path) and the classifier. A pruned
residual output is narrower than the branch it is added into (the branch keeps its width:
its other blocks and the fusion read every channel), so the compact block adds it into the
kept channels only; a pruned transition or shortcut writes its filters into the kept
channels of its stream, the others 0 (``training.models.compact``).

A filter is zeroed together with its normalisation's scale and shift, so its channel is
exactly 0 after the norm (and ReLU), and adds exactly 0 to a residual stream; deleting it and
the matching input slice of its consumers then changes nothing (tested: the compact model's
outputs equal the masked model's to float rounding, batch norms folded or not).

``isamap-prune --model run/model.pt --data DATASET --out pruned/`` fine-tunes with the
trained model's own recipe (loss, optimizer, crops from its recorded configuration; flags
override), and writes ``<out>/model.pt`` (the masked model, from the trainer),
``<out>/pruned.pt`` (the compact model, a normal model file ``isamap-predict`` loads) and
``<out>/pruning.json`` (channels, parameters and FLOPs before and after).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from core.commands import check_range
from core.errors import ConfigError, ModelError
from core.shareable import portable_path
from core.storage import atomic_write
from engine.seeding import seed_everything
from training.band_ranges import check_patch_values
from training.calibration.record import check_model_data
from training.config import OPTIONS, TrainConfig, apply_recipe, as_recorded, config_from_mapping
from training.data import NormStats
from training.losses import build_loss
from training.model_meta import ModelMeta
from training.modelfile import load_model, load_model_file, save_model_file
from training.models import create_model
from training.models.compact import PrunableLayer, conv_named
from training.prune_run import PRUNED_MODEL, SUMMARY, check_earlier_run, finished_summary
from training.run.folder import BEST_MODEL
from training.run.inputs import patch_splits
from training.run.trainer import Trainer

log = logging.getLogger(__name__)

DEFAULT_RATE = 0.4
# smallest input side of the FLOP count: smaller inputs vanish in HRNet's 1/32 branch
MIN_FLOPS_SIZE = 32
#: Which convolutions are pruned, as a version: 3 since the transitions, the projection
#: shortcut and the last stage-1 bottleneck's residual output are pruned too (only what a
#: fusion reads and the classifier stay whole); 2 pruned the residual outputs of the blocks
#: no fusion or transition reads; 1 kept every residual output whole. Results measured with a
#: pruned network record it, so that a change of rule is seen (``experiments.landcover`` keys
#: its finished runs on it).
PRUNING_RULE = 3


# ------------------------------------------------------------------ FPGM
def prunable_layers(model: nn.Module) -> tuple[PrunableLayer, ...]:
    """The model's prunable convolutions (models describe them; only ``hrnet`` does so)."""
    describe = getattr(model, "prunable_layers", None)
    if describe is None:
        raise ModelError(f"{type(model).__name__} does not say which of its convolutions can be "
                         "pruned; FPGM pruning is implemented for hrnet")
    return describe()


def n_pruned(filters: int, rate: float) -> int:
    """Filters to remove from a layer of ``filters``: ``floor(rate * filters)``, keeping one."""
    return min(int(rate * filters), filters - 1)


def geometric_median_order(weight: torch.Tensor) -> torch.Tensor:
    """Filter indices sorted by their summed L2 distance to the layer's other filters.

    The first ones are nearest the geometric median (Equation 1): the most replaceable.
    Ties keep index order, so the choice is deterministic.
    """
    flat = weight.detach().flatten(1).double()
    scores = torch.cdist(flat, flat).sum(dim=1)
    return torch.sort(scores, stable=True).indices


def select_filters(model: nn.Module, rate: float = DEFAULT_RATE,
                   layers: Sequence[PrunableLayer] | None = None) -> dict[str, list[int]]:
    """The filters FPGM removes now: ``{conv name: sorted filter indices}``."""
    if not 0.0 <= rate < 1.0:
        raise ConfigError(f"the pruning rate must be in [0, 1), got {rate}")
    chosen = {}
    for layer in layers or prunable_layers(model):
        weight = conv_named(model, layer.conv).weight
        k = n_pruned(weight.shape[0], rate)
        chosen[layer.conv] = sorted(geometric_median_order(weight)[:k].tolist())
    return chosen


def _scale_and_shift(model: nn.Module, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The affine scale and shift of the norm ``name``, which FPGM zeroes with its filters.

    Raises:
        ModelError: the norm has none.
    """
    norm = model.get_submodule(name)
    scale, shift = getattr(norm, "weight", None), getattr(norm, "bias", None)
    if not isinstance(scale, torch.Tensor) or not isinstance(shift, torch.Tensor):
        raise ModelError(f"{name} has no affine scale to zero; FPGM needs one")
    return scale, shift


@torch.no_grad()
def zero_filters(model: nn.Module, chosen: Mapping[str, Sequence[int]],
                 layers: Sequence[PrunableLayer] | None = None) -> None:
    """Zero the chosen filters and their norm's scale and shift (their channel becomes 0)."""
    by_conv = {layer.conv: layer for layer in layers or prunable_layers(model)}
    for name, idx in chosen.items():
        if not idx:
            continue
        index = torch.as_tensor(list(idx), dtype=torch.long)
        conv = conv_named(model, name)
        conv.weight[index] = 0
        if conv.bias is not None:
            conv.bias[index] = 0
        scale, shift = _scale_and_shift(model, by_conv[name].norm)
        scale[index] = 0
        shift[index] = 0


def fpgm_step(model: nn.Module, rate: float = DEFAULT_RATE) -> dict[str, list[int]]:
    """One pruning pass of Algorithm 1 (lines 5-8): select and zero; returns the choice."""
    layers = prunable_layers(model)
    chosen = select_filters(model, rate, layers)
    zero_filters(model, chosen, layers)
    return chosen


def zeroed_filters(model: nn.Module) -> dict[str, list[int]]:
    """Filters of the prunable layers that are exactly zero now (what the compact model drops).

    A filter counts only when its weights and its norm's scale and shift are all zero.
    """
    found = {}
    for layer in prunable_layers(model):
        conv = conv_named(model, layer.conv)
        scale, shift = _scale_and_shift(model, layer.norm)
        dead = (conv.weight.detach().flatten(1) == 0).all(dim=1)
        dead &= (scale.detach() == 0) & (shift.detach() == 0)
        if conv.bias is not None:
            dead &= conv.bias.detach() == 0
        idx = torch.nonzero(dead).flatten().tolist()
        if len(idx) == dead.numel():
            idx = idx[1:]  # never remove a layer entirely
        found[layer.conv] = idx
    return found


# ------------------------------------------------------------------ the compact network
def compact_state(state: Mapping[str, torch.Tensor], layers: Sequence[PrunableLayer],
                  removed: Mapping[str, Sequence[int]]) -> dict[str, torch.Tensor]:
    """The state dict without the removed filters (and the consumers' matching inputs).

    For a residual-output or stream convolution the ``kept`` buffer of its block or stream
    records which channels of the stream the remaining filters write into (one pruned before
    keeps a subset of its earlier ``kept``).
    """
    out = dict(state)
    keep: dict[str, torch.Tensor] = {}
    for layer in layers:
        n = state[f"{layer.conv}.weight"].shape[0]
        gone = set(removed.get(layer.conv, ()))
        keep[layer.conv] = torch.tensor([i for i in range(n) if i not in gone], dtype=torch.long)
    for layer in layers:
        k = keep[layer.conv]
        for key in (f"{layer.conv}.weight", f"{layer.conv}.bias"):
            if key in out:
                out[key] = out[key][k]
        for suffix in ("weight", "bias", "running_mean", "running_var"):
            key = f"{layer.norm}.{suffix}"
            if key in out and out[key] is not None and out[key].ndim == 1:
                out[key] = out[key][k]
        for consumer in layer.consumers:
            out[f"{consumer}.weight"] = out[f"{consumer}.weight"][:, k]
        if layer.writes_into:
            key = f"{layer.writes_into}.kept"
            if key in state:  # pruned before: its stream channels, fewer of them
                out[key] = state[key][k]
            elif removed.get(layer.conv):  # a block or stream that loses none stays whole
                out[key] = k
    return {name: t.contiguous() for name, t in out.items()}


def compact_model(model: nn.Module, meta: ModelMeta) -> tuple[nn.Module, ModelMeta]:
    """A genuinely smaller network without the zeroed filters, and its model-file meta.

    The filters removed are those that are zero now (:func:`zeroed_filters`). The new
    meta records the kept widths in ``model_kwargs["channels"]``, so ``load_model_file``
    rebuilds the compact network through the registry.
    """
    layers = prunable_layers(model)
    removed = zeroed_filters(model)
    widths = {layer.conv: conv_named(model, layer.conv).out_channels
              - len(removed.get(layer.conv, ())) for layer in layers}
    previous = dict(meta.model_kwargs).get("channels") or {}
    channels = {**previous, **{k: v for k, v in widths.items()
                               if v != model.get_submodule(k).out_channels or k in previous}}
    kwargs = {**dict(meta.model_kwargs), "channels": channels}
    small = create_model(meta.name, meta.in_channels, meta.num_classes,
                         module=meta.module or None, **kwargs)
    small.load_state_dict(compact_state(model.state_dict(), layers, removed), strict=True)
    new_meta = ModelMeta.from_dict({**meta.to_dict(), "model_kwargs": kwargs,
                                    "code_version": ""})
    return small.eval(), new_meta


# ------------------------------------------------------------------ size and cost
def parameter_count(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def flop_count(model: nn.Module, in_channels: int, size: int = 256) -> int:
    """Forward FLOPs for one ``size x size`` input (``torch.utils.flop_counter``)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, in_channels, size, size))
    return int(counter.get_total_flops())


@dataclass(frozen=True)
class PruneResult:
    """What ``prune`` wrote."""

    masked_path: Path
    pruned_path: Path
    summary_path: Path
    summary: dict
    #: False where the run in ``out`` was finished and its files were kept as they were
    redone: bool = True


# ------------------------------------------------------------------ fine-tuning run
def fine_tune_config(meta: ModelMeta, data: str, out_dir: str | Path,
                     overrides: Mapping | None = None) -> TrainConfig:
    """The configuration a model file is fine-tuned with: its recorded one, ``overrides`` on top.

    The file's own network arguments and normalisation go in as recorded, never its model
    name's recipe of today: a ``unet-s2`` file written when that name standardised each
    window records ``input_norm: patch``, and its configuration may predate the recorded
    ``norm`` (``ModelMeta.norm``, ``training`` for such files, says it). The recipe fills
    only what neither records. A weight average (``ema``) is not carried over: the fine-tuning
    zeroes filters in the weights themselves, which an average would not keep.
    """
    recorded = dict((meta.extra or {}).get("config") or {})
    base = {k: v for k, v in recorded.items() if k in OPTIONS and k not in (
        "resume", "stop_after", "filter_noisy", "bands", "ema")}
    return apply_recipe(config_from_mapping({
        **base, **dict(overrides or {}), "data": str(data), "out_dir": str(out_dir),
        "model": meta.name, "model_kwargs": as_recorded(meta.name, meta.model_kwargs),
        "norm": meta.norm,
        "bands": list(meta.bands), "ema": 0.0}))


def prune(model_path: str | Path, data: str, out_dir: str | Path, rate: float = DEFAULT_RATE,
          overrides: Mapping | None = None, flops_size: int = 256) -> PruneResult:
    """Fine-tune a trained model with FPGM every epoch, then save the compact network.

    Args:
        model_path: trained model file (``isamap-train``'s ``model.pt``).
        data: the patch dataset to fine-tune on.
        out_dir: run folder (checkpoint, masked ``model.pt``, ``pruned.pt``, summary).
        rate: share of filters removed per prunable layer.
        overrides: ``TrainConfig`` fields replacing the trained model's recorded ones.
        flops_size: input side for the FLOP counts of the summary.
    """
    # the numbers first: a bad value is refused before the model is read or a patch loaded
    if not 0.0 < rate < 1.0:
        raise ConfigError(f"--rate must be between 0 and 1 (both excluded), got {rate}; it is "
                          f"the share of filters removed per layer, e.g. {DEFAULT_RATE}")
    check_range("--flops-size", flops_size, MIN_FLOPS_SIZE,
                hint="it is the input side (px) of the reported FLOP counts, e.g. 256")
    config_from_mapping(dict(overrides or {}))  # --epochs, --batch-size ... as typed
    loaded = load_model(model_path)
    model, meta = loaded.module, loaded.meta
    check_model_data(meta, data)  # its classes and pixels, before any file is written
    source = {"rate": rate, "model_id": loaded.file_id}
    finished = check_earlier_run(Path(out_dir), source)
    prunable_layers(model)  # refuse models that cannot be pruned before any work
    cfg = fine_tune_config(meta, data, out_dir, overrides)
    norm = NormStats(tuple(meta.bands), tuple(meta.norm_mean), tuple(meta.norm_std))
    train_set, val_set = patch_splits(cfg, tuple(meta.bands), norm)
    # fine-tuned on other units, the model would learn them and map its own units wrongly;
    # validated on them, it would keep the wrong epoch. A finished run is checked too (a
    # sample of <= 64 patches a split): its exit 0 would vouch for this dataset's values
    check_patch_values(lambda i: train_set.read_raw(i)[0], len(train_set), tuple(meta.bands),
                       meta.band_ranges, f"the train split of the dataset {data}")
    check_patch_values(lambda i: val_set.read_raw(i)[0], len(val_set), tuple(meta.bands),
                       meta.band_ranges, f"the val split of the dataset {data}")
    seed_everything(cfg.loop.seed)
    if cfg.model.loss is None:
        raise RuntimeError("apply_recipe left the loss unset")
    loss = build_loss(cfg.model.loss, class_names=meta.class_names, **dict(cfg.model.loss_kwargs))
    # the dataset the network was trained on (its statistics normalise the inputs) stays
    # recorded; the options and the dataset of the fine-tuning are this run's
    run_meta = ModelMeta.from_dict({**meta.to_dict(), "extra": {
        **dict(meta.extra or {}), "config": cfg.run_record(),
        "pruning": {**source, "from": str(model_path), "data": str(data)}}})
    out = Path(out_dir)
    done = finished_summary(out, finished, rate, flops_size)  # nothing to write: nothing redone
    before = {"parameters": parameter_count(model),
              "flops": flop_count(model, meta.in_channels, flops_size)} if done is None else {}
    layers = prunable_layers(model)

    def prune_step(module: nn.Module, epoch: int) -> None:
        fpgm_step(module, rate)  # after every epoch, as FPGM prunes

    trainer = Trainer(cfg, model, loss, train_set, val_set, run_meta, epoch_end=prune_step)
    result = trainer.fit()  # the same options as the run found in out, or refused
    if done is not None:
        return PruneResult(out / BEST_MODEL, out / PRUNED_MODEL, out / SUMMARY, done, False)
    masked, masked_meta = load_model_file(result.model_path, flag="model file")
    small, small_meta = compact_model(masked, masked_meta)
    pruned_path = save_model_file(out / PRUNED_MODEL, small, small_meta)
    after = {"parameters": parameter_count(small),
             "flops": flop_count(small, meta.in_channels, flops_size)}
    summary = {"rate": rate, "from": portable_path(model_path, out), "flops_input": flops_size,
               "before": before, "after": after,
               "layers": {layer.conv: [masked.get_submodule(layer.conv).out_channels,
                                       small.get_submodule(layer.conv).out_channels]
                          for layer in layers},
               "best_epoch": result.best_epoch, "best_val_miou": result.best_miou}
    text = json.dumps(summary, indent=1, allow_nan=True)
    atomic_write(out / SUMMARY, lambda fh: fh.write(text.encode()))
    return PruneResult(out / BEST_MODEL, pruned_path, out / SUMMARY, summary)
