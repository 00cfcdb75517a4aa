"""A model compiled for inference: ``torch.compile`` (inductor) with frozen weights.

In eager PyTorch every layer is its own pass over memory, and on a CPU whose matrix units make
the convolutions cheap the passes between them (normalisation, activations, sums,
interpolation, layout conversions) take most of the time. Inductor compiles the forward into
one program: with ``freezing`` the weights become constants, so a batch norm after a
convolution is folded into it, weights are pre-packed once in oneDNN's blocked layout, and the
element-wise work around each convolution is fused into a few loops. Whether this pays on a
given model, shape and machine is measured, not assumed (:mod:`engine.autotune` offers
it as a candidate; ``benchmarks/bench_models.py`` prints compiled next to eager).

Compiling costs seconds to minutes (a C++ compiler builds the kernels); inductor caches what
it built in ``TORCHINDUCTOR_CACHE_DIR``, which :func:`inductor_cache_dir` points at isamap's
cache directory (``$XDG_CACHE_HOME/isamap/inductor``) unless the user set it, so a second
process compiling the same model and shape finds most of the work done.

The compiled graph is specialised to one input shape (``dynamic=False``): a call with another
shape (the short last batch of a row of tiles) runs the eager model instead of compiling
again. Failure to compile (no C++ compiler, an operator inductor cannot lower) raises
:class:`CompileError` from :func:`compile_for_inference`; a :class:`CompiledForInference`
that compiles lazily on its first call logs the failure once and runs eagerly.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import shutil
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.commands import DETAIL
from core.errors import IsamapError
from core.user_cache import user_cache_dir

log = logging.getLogger(__name__)

#: inductor's cache directory variable (read by torch each time it needs the directory)
CACHE_DIR_ENV = "TORCHINDUCTOR_CACHE_DIR"
#: Dynamo's graphs per function while compiling. Every compiled copy of a model adds one to
#: its class's ``forward`` (and ``nn.Sequential.forward`` is shared by every sequence), so a
#: process that measures several settings passes Dynamo's default of 8; beyond this limit
#: compiling fails (:class:`CompileError`) instead of silently running part of the model
#: eagerly.
RECOMPILE_LIMIT = 64
#: torch's loggers of tracing a model: graph breaks (a branch on a tensor's value, a
#: ``.item()``: the pretrained encoders' code) and failed guards, each warning with the code
#: or the whole graph: nothing a user of the map can act on (the broken parts run eagerly; a
#: failure is one line). Silent while compiling and exporting (:func:`quiet_export`).
TRACE_LOGGERS = ("torch._dynamo", "torch.fx", "torch.export", "torch._export")


#: graphs compiled in this process, by the eager module they were compiled from and what the
#: graph depends on (:func:`_graph_key`): ``auto`` compiles while it measures, and the run then
#: applies the same choice to the same model without compiling twice
_GRAPHS: weakref.WeakKeyDictionary[nn.Module, dict[tuple[Any, ...], Callable[..., Any]]] = (
    weakref.WeakKeyDictionary())


class CompileError(IsamapError, RuntimeError):
    """The model could not be compiled (the message says why); run it eagerly instead.

    Where the caller asked for compilation (``--compile`` with fixed settings, ``int8``), the
    command ends with this line (exit 1: the machine's compiler or cache, not the input).
    """

    exit_code = 1


@contextlib.contextmanager
def quiet_loggers(*names: str, level: int = logging.ERROR) -> Iterator[None]:
    """The loggers ``names`` silent below ``level`` for the block (shown under ``--debug``)."""
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    noisy = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in noisy]
    for lg in noisy:
        lg.setLevel(level)
    try:
        yield
    finally:
        for lg, level in zip(noisy, levels, strict=True):
            lg.setLevel(level)


@contextlib.contextmanager
def quiet_export() -> Iterator[None]:
    """``torch.export`` in the block without its noise; a failure is the caller's one line.

    The trace loggers (a failure it classifies is also logged as an error), its warnings,
    and the partial graph a failure prints to stderr itself: logged at DEBUG instead.
    """
    said = io.StringIO()
    try:
        with quiet_loggers(*TRACE_LOGGERS, level=logging.CRITICAL), \
                warnings.catch_warnings(), contextlib.redirect_stderr(said):
            warnings.simplefilter("ignore")
            yield
    finally:
        if said.getvalue().strip():
            log.debug("torch.export printed:\n%s", said.getvalue())


def discard_cache() -> Path | None:
    """Move isamap's inductor cache aside and delete it; returns its path.

    A killed compilation can leave a truncated kernel there that every later compilation
    loads and fails on. None when the cache is the user's own (``TORCHINDUCTOR_CACHE_DIR`` set
    outside isamap) or absent.
    """
    path = inductor_cache_dir()
    if path != user_cache_dir() / "inductor" or not path.is_dir():
        return None
    aside = path.with_name(f"{path.name}.damaged-{os.getpid()}-{time.time_ns()}")
    path.rename(aside)  # atomic: a concurrent run sees the old folder or none
    shutil.rmtree(aside, ignore_errors=True)
    return path


def inductor_cache_dir() -> Path:
    """Where inductor keeps compiled kernels and graphs; set for this process on first use.

    ``TORCHINDUCTOR_CACHE_DIR`` when the user set it, else ``isamap/inductor`` under
    ``$XDG_CACHE_HOME`` (or ``~/.cache``), beside the autotune cache, instead of torch's
    default under ``/tmp`` (cleared on reboot, shared by every user of the machine). Torch
    writes its default into the variable itself once anything imported inductor's config (the
    first optimiser step does): that value is torch's, not the user's choice.
    """
    env = os.environ.get(CACHE_DIR_ENV)
    if env and Path(env) != _torch_default_cache_dir():
        return Path(env)
    path = user_cache_dir() / "inductor"
    os.environ[CACHE_DIR_ENV] = str(path)
    return path


def _torch_default_cache_dir() -> Path | None:
    """The folder torch puts in ``TORCHINDUCTOR_CACHE_DIR`` when nobody set it, if known."""
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:  # a torch that keeps it elsewhere: every value counts as the user's
        return None
    return Path(os.path.abspath(default_cache_dir()))


class CompiledForInference(nn.Module):
    """``model`` compiled for one input shape in inference; eager for any other shape.

    Args:
        model: the module to compile, in eval mode and in the memory format it will be
            called with. A private copy is compiled (its weights frozen into the graph), so
            later changes to ``model`` (another memory format) cannot trigger a recompile.
        backend: ``torch.compile``'s backend (``"inductor"``; a callable is accepted too).
        freezing: fold the weights into the graph as constants (inductor only).

    Attributes:
        eager: the module run for shapes other than the compiled one (and after a failure).
        shape: the input shape compiled for (None until the first call or :meth:`compile`).
        compile_seconds: wall time of the compiling call (0 until compiled).
        error: why compiling failed (None when it did not).
    """

    def __init__(self, model: nn.Module, *, backend: str | Callable[..., Any] = "inductor",
                 freezing: bool = True) -> None:
        super().__init__()
        self.eager = model
        self.backend, self.freezing = backend, freezing
        self.shape: tuple[int, ...] | None = None
        self.compile_seconds = 0.0
        self.error: str | None = None
        self._graph: Callable[..., Any] | None = None

    @property
    def compiled(self) -> bool:
        return self._graph is not None

    def compile(self, example: torch.Tensor,  # type: ignore[override]
                retry: bool = True) -> float:
        """Compile for ``example``'s shape now, under the caller's autocast; returns seconds.

        A failure is retried once with isamap's inductor cache emptied (:func:`discard_cache`),
        so a damaged cache entry is rebuilt instead of failing every later run.

        Raises:
            CompileError: compiling (or running the compiled graph once) failed.
        """
        key = _graph_key(self.eager, example, self.backend, self.freezing)
        known = _GRAPHS.get(self.eager, {}).get(key)
        if known is not None:
            self._graph, self.shape = known, tuple(example.shape)
            return 0.0
        inductor_cache_dir()
        frozen = copy.deepcopy(self.eager).eval()
        graph = torch.compile(frozen, backend=self.backend, dynamic=False)
        # freezing through inductor's config, read when the first call compiles (passed as
        # ``options=`` it is not applied to a quantized graph's weight prepacking)
        freezing = (_inductor_config().patch(freezing=True)
                    if self.freezing and self.backend == "inductor" else contextlib.nullcontext())
        start = time.perf_counter()
        try:
            with torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT,
                                            fail_on_recompile_limit_hit=True), \
                    freezing, torch.inference_mode(), quiet_loggers(*TRACE_LOGGERS):
                graph(example)  # compiles; a failure surfaces here
        except Exception as exc:  # inductor raises many types (no compiler, lowering, ...)
            if retry and discard_cache() is not None:
                log.warning("torch.compile failed (%s); compiling again with isamap's inductor "
                            "cache emptied (a killed compilation may have damaged it)",
                            _first_line(exc))
                torch._dynamo.reset()
                return self.compile(example, retry=False)
            self.error = _first_line(exc)
            raise CompileError(f"torch.compile failed: {self.error}") from exc
        self.compile_seconds = time.perf_counter() - start
        self._graph, self.shape = graph, tuple(example.shape)
        _GRAPHS.setdefault(self.eager, {})[key] = graph
        return self.compile_seconds

    def forward(self, x: torch.Tensor) -> Any:
        if self._graph is None and self.error is None:
            try:
                seconds = self.compile(x)
                log.log(DETAIL, "model compiled for input %s (%s)", "x".join(map(str, x.shape)),
                        f"{seconds:.1f} s" if seconds else "the graph measured by auto")
            except CompileError as exc:
                log.warning("%s; running the model eagerly", exc)
        if self._graph is not None and tuple(x.shape) == self.shape:
            return self._graph(x)
        return self.eager(x)


def compile_for_inference(model: nn.Module, example: torch.Tensor, *,
                          autocast: torch.dtype | None = None,
                          backend: str | Callable[..., Any] = "inductor") -> CompiledForInference:
    """``model`` compiled now for ``example``'s shape, for calls under ``torch.inference_mode``.

    The weights are frozen into the graph as constants (conv + batch norm folded, weights
    pre-packed for oneDNN): the model's weights must not change afterwards.

    Args:
        model: an eval-mode module, already in the memory format (and on the device) of its
            calls; it is copied, not changed.
        example: an input of the shape the compiled graph is for, in that memory format.
        autocast: the autocast dtype the calls run under (None: none). Autocast is part of
            what is traced: call the result under the same autocast, or it compiles again.
        backend: ``torch.compile``'s backend; ``"inductor"`` unless a test or a caller with
            its own compiler says otherwise.

    Returns:
        The compiled module (eager for other input shapes); ``compile_seconds`` says how
        long compiling took.

    Raises:
        CompileError: the model could not be compiled (no C++ compiler, an unsupported
            operator); run it eagerly instead.
    """
    compiled = CompiledForInference(model, backend=backend)
    device_type = example.device.type
    amp = (torch.autocast(device_type, autocast) if autocast is not None
           else contextlib.nullcontext())
    with amp:
        compiled.compile(example)
    return compiled


def _graph_key(model: nn.Module, example: torch.Tensor, backend: object,
               freezing: bool) -> tuple[Any, ...]:
    """What a compiled graph of ``model`` depends on besides the module itself.

    The input's shape, strides (memory format), dtype and device, the autocast dtype of the
    call, the thread count (inductor's CPU kernels are built for it), the backend, freezing,
    and the weights' version counters (an in-place update, an optimizer step, changes them:
    a frozen graph of older weights is not reused).
    """
    device_type = example.device.type
    amp = (torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type)
           else None)
    versions = sum(p._version for p in model.parameters())
    return (tuple(example.shape), tuple(example.stride()), example.dtype, str(example.device),
            amp, torch.get_num_threads(), repr(backend), freezing, versions)


def _inductor_config() -> Any:
    from torch._inductor import config  # imported on first use: it is slow to import

    return config


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
