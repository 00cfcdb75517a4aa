"""Demo step: train a small CroFuseNet on the (synthetic) demo patches and evaluate it.

Called by the project demo after the patches are written. The network is the paper's
three-branch architecture at reduced width (8..128 channels instead of 32..512) so that a
few epochs run in a few CPU minutes; everything else (loss, optimiser, schedule, early
stopping, model file, evaluation) is the full pipeline.

The demo scene's training split is small (49 patches of 128 px at the default 768 px scene,
3 at 384 px), so the paper's batch of 32 would make an epoch one optimiser step and the poly
schedule would end after as many steps as epochs, with batch-norm statistics that have not
settled: a model near chance. The demo takes small batches instead (:func:`demo_batch_size`:
4 patches, fewer where that would leave an epoch under ``DEMO_MIN_STEPS`` steps) and a
learning rate (3e-3) suited to a schedule of a few hundred steps, at the same cost per epoch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from contract.dataset import read_index
from engine.execution import process_threads_at
from inference.assess.evaluate import EvaluateConfig, evaluate
from training.config import TrainConfig
from training.run.patch_training import train

DEMO_WIDTHS = (8, 16, 32, 64, 128)
DEMO_BATCH = 4  # patches per step where the training split is large enough
DEMO_MIN_STEPS = 8  # optimiser steps per epoch the batch is shrunk (down to 1) to reach
DEMO_LR = 3e-3  # initial learning rate: higher than the paper's 1e-4 for a short schedule


def demo_batch_size(train_patches: int) -> int:
    """``DEMO_BATCH``, or fewer (down to 1) so an epoch makes ``DEMO_MIN_STEPS`` steps."""
    return max(1, min(DEMO_BATCH, train_patches // DEMO_MIN_STEPS))


@dataclass(frozen=True)
class DemoPaths:
    model: Path
    history: Path
    curves: Path
    metrics_json: Path
    metrics_table: Path
    confusion_png: Path


def run_demo_training(patch_root: str | os.PathLike, out_dir: str | os.PathLike, epochs: int = 15,
                      batch_size: int | None = None, max_batches: int | None = 40, seed: int = 0,
                      progress: bool = True, threads: int | None = None) -> DemoPaths:
    """Train and evaluate a small CroFuseNet of reduced widths at :data:`DEMO_LR`.

    Re-running a finished demo reuses its results.

    Args:
        patch_root: patch dataset root (manifest.json + index.jsonl).
        out_dir: folder for ``train/`` (run) and ``evaluate/`` (test metrics).
        epochs: epochs to train (the paper's 400 is the training default, not the demo's).
        batch_size: patches per step (None: :func:`demo_batch_size` of the training split).
        max_batches: cap on steps per epoch.
        seed: run seed.
        progress: tqdm bars.
        threads: torch intra-op threads for the demo (restored afterwards); 1 avoids the
            slow-down of OpenMP threads competing with other busy processes on small machines.
    """
    out = Path(out_dir)
    if batch_size is None:
        train_patches = sum(r["split"] == "train" for r in read_index(patch_root))
        batch_size = demo_batch_size(train_patches)
    # its options as a user types them, from here: the checkpoint records them as given
    cfg = TrainConfig.of(
        data=os.path.relpath(patch_root), out_dir=os.path.relpath(out / "train"),
        model="crofusenet", model_kwargs={"widths": list(DEMO_WIDTHS)}, epochs=epochs,
        batch_size=batch_size, lr=DEMO_LR, patience=max(epochs, 1), seed=seed, precision="fp32",
        channels_last="on", max_batches=max_batches, resume=True, progress=progress, cache=True,
        num_workers=0)
    with process_threads_at(threads):
        res = train(cfg)
        # the demo's figures are documented, so its precision and layout are stated, not
        # measured; absolute, so metrics.json names them relative to its own folder; a
        # finished evaluation of the same model, patches, options and code is read back
        done = evaluate(EvaluateConfig(
            Path(res.model_path).absolute(), str(Path(patch_root).absolute()), out / "evaluate",
            "test", points=500, progress=progress, precision="fp32", channels_last="on"))
    # the run's paths are as the config gave them, relative to here: absolute like the rest
    return DemoPaths(Path(res.model_path).resolve(), Path(res.history_path).resolve(),
                     Path(res.curves_path).resolve(), done.metrics_path, done.table_path,
                     done.confusion_path)
