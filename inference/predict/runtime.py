"""Run a model on batches of tiles: normalisation, device, precision and memory format.

``TilePredictor`` is the only place that touches torch during inference. It accepts any
``torch.nn.Module`` that follows the model-file contract (input ``(N, C, H, W)`` in the model's
band order, logits ``(N, K, H*s, W*s)`` or a dict with ``"out"``), so the streaming engine can
be tested with small plain-torch models and used with every registered architecture.

Batch norms that directly follow a convolution are folded into it before anything runs
(``training.models.blocks.fold_batchnorm``): in eval mode a batch norm is an affine map per
channel, so the outputs are the same to float rounding with one pass over each feature map
instead of two (``benchmarks/bench_pruning.py`` measures the gain). The caller's model is
left as it is (folding works on a copy).

Tiles are normalised into the model's batch by :mod:`inference.predict.normalise`.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from core.errors import ModelError
from engine import autotune, quantize
from engine import choice as engine_choice
from engine.compiled import CompiledForInference
from engine.devices import InferencePrecision, Layout, layout_flag, resolve_device
from engine.execution import calling_thread_only
from inference.predict.calibration import input_patches
from inference.predict.normalise import BatchNormaliser, Tiles, normalise_into
from training.calibration.temperature import check_temperature, probabilities, scaled
from training.models.blocks import fold_batchnorm

if TYPE_CHECKING:
    from training.data import NormStats
    from training.modelfile import ModelMeta

log = logging.getLogger(__name__)

Activation = Literal["auto", "softmax", "sigmoid"]

@dataclass(frozen=True)
class RuntimeOptions:
    """How to run the model.

    Attributes:
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:1"``...
        precision: ``"auto"``: decided on the first batch (:func:`engine.choice.decide`:
            the fastest of fp32/bf16 (fp16 on CUDA) whose output agrees with fp32); or an
            explicit ``fp32``, ``bf16``, ``fp16``, never
            overridden; or ``int8`` (CPU): a model quantized on the first batch
            (:mod:`engine.quantize`), refused when its map disagrees with fp32.
        channels_last: NHWC memory format: ``"auto"`` (measured), ``"on"``/``"off"`` (or a
            bool).
        compile: run the chosen setting compiled (:mod:`engine.compiled`: inductor,
            frozen weights); never measured, never chosen by ``auto``.
        autotune_cache: reuse/store measured choices in the user cache (None: unless
            ``ISAMAP_AUTOTUNE_CACHE=off``).
        autotune_budget_s: seconds the measurement may take.
        held: what ``auto`` settled to earlier for this work (a series is mapped at one
            runtime, :mod:`inference.mapping.dates`): taken for what precision and layout
            leave at ``auto``, nothing measured, and compared like an explicit option with
            what a map or its strips record; the outputs still say ``auto``.
    """

    device: str = "auto"
    precision: InferencePrecision = "auto"
    channels_last: Layout | bool = "auto"
    compile: bool = False
    autotune_cache: bool | None = None
    autotune_budget_s: float = autotune.DEFAULT_BUDGET_S
    held: autotune.Choice | None = None


class TilePredictor:
    """Normalise raw band values, run the model, return class probabilities as numpy.

    Args:
        model: any module following the model-file contract.
        mean: per-band mean of the training split, in the model's band order.
        std: per-band standard deviation, same order.
        scale: output scale factor s (output tiles are s times the input tile size).
        activation: ``"softmax"`` over K >= 2 classes, ``"sigmoid"`` for one logit (returning
            ``[1 - p, p]``); ``"auto"`` chooses by K.
        options: device, precision, memory format, compilation.
        int8_patches: what an int8 model is calibrated and checked on, or a function reading
            them when int8 is built (None, or a function returning None: windows spread over
            the input, :attr:`int8_input`; without one, the first batch, half and half).
        isa_class: index of the impervious class (the int8 check's F1; None: the last class).
        temperature: the logits are divided by it before the activation (the model file's
            calibration, :mod:`training.calibration.temperature`; 1: as the model gives them). One
            positive number keeps the logits' order: the class map is the same at any.
        logit_shift: added to each class's logits after the temperature (the model
            file's calibration; None: nothing).
    """

    def __init__(
        self, model: torch.nn.Module, mean: Sequence[float] | np.ndarray,
        std: Sequence[float] | np.ndarray, *, scale: int = 1,
        activation: Activation = "auto", options: RuntimeOptions | None = None,
        int8_patches: quantize.Int8Patches | Callable[[], quantize.Int8Patches | None]
        | None = None, isa_class: int | None = None, temperature: float = 1.0,
        logit_shift: tuple[float, ...] | None = None,
    ) -> None:
        options = options or RuntimeOptions()
        try:
            self.temperature = check_temperature(temperature)
        except ValueError as exc:
            raise ModelError(f"{exc}; the model file's calibration is damaged") from None
        self.logit_shift = logit_shift
        mean = np.asarray(mean, dtype=np.float32).reshape(-1)
        std = np.asarray(std, dtype=np.float32).reshape(-1)
        if mean.shape != std.shape:
            raise ModelError(f"normalisation mean {mean.shape} and std {std.shape} differ in size")
        if np.any(~np.isfinite(std)) or np.any(std <= 0):
            raise ModelError("normalisation std must be finite and > 0; re-export the model file")
        if not isinstance(scale, int) or scale < 1:
            raise ModelError(f"output scale must be a positive integer, got {scale!r}")
        self.device = resolve_device(options.device)
        self.options = options
        self.scale = scale
        self.activation = activation
        self.channels = int(mean.size)
        # (x - mean) / std as x * (1/std) + (-mean/std), rounded as normalise_into does; on the
        # CPU by the normaliser (into a reused batch), on a GPU there
        shift, inv_std = -mean / std, 1.0 / std
        self.normaliser = BatchNormaliser(shift, inv_std) if self.device.type == "cpu" else None
        self._scale = torch.from_numpy(inv_std).view(1, -1, 1, 1).to(self.device)
        self._shift = torch.from_numpy(shift).view(1, -1, 1, 1).to(self.device)
        self._module = fold_batchnorm(model.eval()).to(self.device)
        self.model: Callable[..., Any] = self._module
        #: how the model runs: known now when precision and layout are explicit, measured on
        #: the first batch otherwise (then recorded in the outputs, e.g. the COG tags)
        self.choice: autotune.Choice | None = None
        #: told the choice the first batch settles (recorded beside the checkpoint strips)
        self.on_choice: Callable[[autotune.Choice], None] | None = None
        self.int8_patches, self.isa_class = int8_patches, isa_class
        self.int8: quantize.Int8Model | None = None
        #: the input being mapped, ``(open source, 1-based band indexes, the lock its reads
        #: hold)``, set by the job that maps it: int8 without given patches is calibrated and
        #: checked on windows spread over it (:func:`inference.predict.calibration.input_patches`)
        self.int8_input: tuple[Any, Sequence[int], Any] | None = None
        #: side of the model's training patches: the size of those windows (None: default)
        self.training_patch: int | None = None
        #: whether the last batch's tiles held no NaN and no infinity
        self.last_finite = True
        self.forward_seconds = 0.0  # time spent in the model alone (benchmarks compare to it)
        self.tune_seconds = 0.0  # time spent measuring 'auto' and building int8
        #: tiles the job will run, when known before the first batch (bounds ``auto``)
        self.expected_tiles: int | None = None
        # explicit precision and layout: settled now; int8: whether it can run, checked now
        decided = engine_choice.fixed(self._module, self.device, self._asked(False))
        if decided is not None:
            self._use(decided)
        elif options.held is not None:
            self.resume(options.held)

    @property
    def request(self) -> engine_choice.Request:
        """What the options ask of the engine's choice (``auto`` held: as held)."""
        return self._asked(True)

    def _asked(self, held: bool) -> engine_choice.Request:  # held: options.held counts
        o = self.options
        precision, layout = o.precision, layout_flag(o.channels_last)
        if held and o.held is not None:
            precision = o.held.precision if precision == "auto" else precision
            layout = ("on" if o.held.channels_last else "off") if layout == "auto" else layout
        return engine_choice.Request(precision, layout, o.compile, o.autotune_cache,
                                     o.autotune_budget_s)

    def _use(self, decided: engine_choice.Decided) -> None:
        self.choice, self.model = decided.choice, decided.model
        self.int8 = decided.int8 or self.int8
        self.tune_seconds += decided.seconds

    def resolve(self, tiles: Tiles) -> autotune.Choice:
        """Settle ``auto`` (or build int8) on a batch of raw tiles (the first call does this)."""
        if self.choice is None:
            x = self._normalise(tiles, torch.contiguous_format)
            self._use(engine_choice.decide(
                self._module, x, self.device, self._asked(False), samples=self.expected_tiles,
                patches=self._given_int8_patches, isa_class=self.isa_class))
            assert self.choice is not None
            if self.on_choice is not None:
                self.on_choice(self.choice)
        assert self.choice is not None
        return self.choice

    def resume(self, recorded: autotune.Choice) -> None:
        """Run at the runtime an earlier run recorded for this work, for what is ``auto``.

        Nothing is measured again; a recorded int8 is built on the first batch, as it was.
        """
        if self.choice is not None:
            return
        if recorded.precision == "int8":
            self.options = replace(self.options, precision="int8")
            return
        self._use(engine_choice.resumed(self._module, self.device, self._asked(False),
                                        recorded))

    def check_int8(self) -> None:
        """Quantize and check the model against fp32 now, on its given patches.

        For a pipeline's driver, before any tile is fetched: the workers' first batches would
        refuse the same model the same way (:class:`engine.quantize.Int8RefusedError`).
        Nothing is compiled; the accepted model is kept for this process's later calls.
        """
        patches = self._given_int8_patches()
        if patches is None or self.isa_class is None:
            raise ValueError("checking int8 before the first batch needs its patches and the "
                             "impervious class")
        engine_choice.check_int8(self.device)
        quantize.build_int8(self._module, patches, self.isa_class)

    def _given_int8_patches(self) -> quantize.Int8Patches | None:
        """int8's patches: the caller's (read once when a function), else the input's.

        The input's: windows spread over it, when the job mapping it set :attr:`int8_input`.
        """
        if callable(self.int8_patches):
            self.int8_patches = self.int8_patches()
        if self.int8_patches is None and self.int8_input is not None:
            src, indexes, lock = self.int8_input
            self.int8_patches = input_patches(
                src, indexes, lambda tiles: self._normalise(tiles, torch.contiguous_format),
                self.training_patch, lock)
        return self.int8_patches

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype (float32: no autocast); needs a settled choice."""
        if self.choice is None:
            raise RuntimeError("the runtime is measured on the first batch; call resolve()")
        return self.choice.setting.autocast_dtype or torch.float32

    @property
    def channels_last(self) -> bool:
        return self.choice is not None and self.choice.channels_last

    @property
    def description(self) -> str:
        if self.choice is None:
            return f"{self.device.type}/auto (measured on the first batch)"
        return f"{self.device.type}/{self.choice.label} ({self.choice.source})"

    def _normalise(self, tiles: Tiles, fmt: torch.memory_format,
                   finite: bool | None = None) -> torch.Tensor:
        """``(x - mean) / std`` in the model's layout, NaN and infinities as 0 (the mean).

        On the CPU by :class:`BatchNormaliser` (the tiles read
        where they lie, written once into a reused batch); on a GPU the tiles are stacked,
        moved and normalised there. ``finite`` as in :meth:`__call__`; sets
        :attr:`last_finite`.
        """
        shapes = {tuple(t.shape) for t in tiles}  # one (C, H, W) for a valid batch
        shape = shapes.pop() if len(shapes) == 1 else ()
        if len(shape) != 3 or shape[0] != self.channels:
            got = tiles.shape if isinstance(tiles, np.ndarray) else [t.shape for t in tiles]
            raise ModelError(
                f"tiles have shape {got}; the model expects (N, {self.channels}, H, W)")
        if self.normaliser is not None:  # the CPU
            x, self.last_finite = self.normaliser(tiles, fmt, finite)
            return x
        x = torch.empty((len(tiles), *shape), device=self.device, memory_format=fmt)
        raw = (np.ascontiguousarray(tiles, dtype=np.float32) if isinstance(tiles, np.ndarray)
               else np.stack([np.asarray(t, dtype=np.float32) for t in tiles]))
        normalise_into(torch.from_numpy(raw).to(self.device), self._shift, self._scale, x)
        self.last_finite = finite is not False
        if finite is False or (finite is None and not bool(torch.isfinite(x).all())):
            torch.nan_to_num_(x, nan=0.0, posinf=0.0, neginf=0.0)
            self.last_finite = False
        return x

    @torch.inference_mode()
    def __call__(self, tiles: Tiles, compact: bool = False, *,
                 finite: bool | None = None) -> np.ndarray:
        """Probabilities ``(N, K, H*s, W*s)`` float32 for raw tiles ``(N, C, H, W)``.

        ``tiles``: one array, or a sequence of ``(C, H, W)`` arrays (views into a larger
        block are read in place) or mosaics of them. NaN and infinite inputs (nodata) are
        replaced by the band mean, i.e. 0 after normalisation; the caller masks those pixels
        in the output anyway. ``finite``: None (each normalised tile is checked, and only
        those with any are replaced; :attr:`last_finite` says whether all were finite), True
        (the caller checked there are none: no pass) or False (replaced without checking).
        With ``compact``, a
        two-class model returns only ``P(class 1)`` as ``(N, 1, H*s, W*s)`` (the other is its
        complement): half the data to move and blend, which the streaming engine relies on
        for speed.
        """
        choice = self.resolve(tiles)
        cpu = self.device.type == "cpu"
        # the passes around the forward run on this thread alone (calling_thread_only)
        around = calling_thread_only if cpu else contextlib.nullcontext
        with around():
            x = self._normalise(tiles, choice.setting.memory_format, finite)
        start = time.perf_counter()
        with choice.setting.autocast(self.device.type):
            out = self.model(x)
        if isinstance(out, dict):
            if "out" not in out:
                raise ModelError(f"model returned a dict without 'out' (keys: {sorted(out)})")
            out = out["out"]
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.forward_seconds += time.perf_counter() - start
        if isinstance(self.model, CompiledForInference) and choice.setting.compile:
            self._record_compile(self.model)
        with around():
            return self._probabilities(out, x.shape, compact)

    @classmethod
    def for_model(cls, model: torch.nn.Module, meta: ModelMeta, scene: NormStats | None = None,
                  **kwargs) -> TilePredictor:
        """The predictor of a model file's network: its normalisation, scale and calibration.

        Every map made from a model file builds its predictor here, so none forgets the
        recorded temperature or how the inputs are normalised. ``scene``: the input stack's
        statistics (:func:`inference.predict.scene.scene_statistics`), which a model trained
        with ``--norm scene`` needs and any other ignores. ``kwargs``: the other arguments of
        the constructor.

        Raises:
            ModelError: a scene-normalised model without the scene's statistics.
        """
        mean, std = meta.norm_mean, meta.norm_std
        if meta.norm == "scene":
            if scene is None:
                raise ModelError(f"model {meta.name!r} normalises each map by its input "
                                 "stack's statistics (isamap-train --norm scene), which this "
                                 "way of mapping does not compute: map the stack with "
                                 "isamap-predict")
            if tuple(scene.bands) != tuple(meta.bands):
                raise ModelError(f"scene statistics are for bands {scene.bands}, the model "
                                 f"takes {meta.bands}")
            mean, std = scene.mean, scene.std
        predictor = cls(model, mean, std, scale=int(meta.output_scale),
                        temperature=meta.temperature, logit_shift=meta.logit_shift,
                        **kwargs)
        predictor.training_patch = meta.training_patch_size()
        return predictor

    def _record_compile(self, model: CompiledForInference) -> None:
        """The choice says what the first call did: compiled (and in how long) or not.

        A model that could not be compiled runs eagerly, and its outputs must not claim
        otherwise (the COG tags, the result's runtime).
        """
        choice = self.choice
        assert choice is not None  # settled by the call that compiled
        if model.error is not None:
            self.choice = replace(choice, setting=replace(choice.setting, compile=False))
        elif model.compiled and model.compile_seconds and not choice.compile_seconds:
            self.choice = replace(choice, compile_seconds=round(model.compile_seconds, 3))

    def _probabilities(self, logits: torch.Tensor, in_shape: tuple[int, ...],
                       compact: bool) -> np.ndarray:
        n, _, h, w = in_shape
        expected = (n, h * self.scale, w * self.scale)
        if logits.ndim != 4 or (logits.shape[0], *logits.shape[2:]) != expected:
            raise ModelError(
                f"model output {tuple(logits.shape)} does not match (N, K, H*s, W*s) = "
                f"({n}, K, {expected[1]}, {expected[2]}) for output scale s={self.scale}; "
                "check the model file's output scale")
        activation = self.activation
        if activation == "auto":
            activation = "sigmoid" if logits.shape[1] == 1 else "softmax"
        if activation == "sigmoid":
            if logits.shape[1] != 1:
                raise ModelError(f"sigmoid needs one logit per pixel, got {logits.shape[1]}")
            p = probabilities(logits, self.temperature, self.logit_shift)
            probs = p if compact else torch.cat([1.0 - p, p], dim=1)
        elif compact and logits.shape[1] == 2:
            # softmax of two logits is the sigmoid of their difference
            moved = self.logit_shift
            probs = scaled(_logit_difference(logits), self.temperature,
                           None if moved is None else (moved[1] - moved[0],)).sigmoid_()
        else:
            probs = probabilities(logits, self.temperature, self.logit_shift)
        return probs.contiguous().cpu().numpy()


def _logit_difference(logits: torch.Tensor) -> torch.Tensor:
    """``logits[:, 1:2] - logits[:, 0:1]`` in float32, exactly, ``(N, 1, H, W)``.

    A bf16 value's bits are the upper half of the float32 of the same value, so where the two
    bf16 logits of a pixel lie side by side (channels last, little-endian), the pair read as
    one 32-bit word holds class 1's logit as a float32 already (its low half cleared) and
    class 0's shifted up: two bit operations and a subtraction, against a conversion of each
    logit to float32 first (bit for bit the same, ``tests/inference/predict/test_runtime.py``).
    """
    pairs = logits.permute(0, 2, 3, 1)  # (N, H, W, 2): a view when channels are last
    if (logits.dtype != torch.bfloat16 or sys.byteorder != "little"
            or not pairs.is_contiguous()):
        return logits[:, 1:2].float() - logits[:, 0:1].float()
    words = pairs.view(torch.int32)  # (N, H, W, 1): class 0's bits low, class 1's high
    diff = torch.bitwise_and(words, -65536).view(torch.float32)
    diff -= torch.bitwise_left_shift(words, 16).view(torch.float32)
    return diff.permute(0, 3, 1, 2)
