"""Console script ``isamap-train``.

Flags override the YAML ``--config`` file; only flags that are given override. Errors that
isamap raises on purpose print one line saying what to do and exit with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from contract.dataset import DATA_ROOT, merge_datasets
from core.commands import (
    add_logging_arguments,
    check_output_folder,
    configure_logging,
    run_command,
)
from core.errors import ConfigError
from core.lock import hold_output
from core.parsers import command_parser, given_once, seed
from core.storage import files
from engine.allocator import CHECKS
from engine.devices import add_device_arguments
from engine.distributed import leave_distributed
from training.config import (
    NORMS,
    ModelOptions,
    RunOptions,
    TrainConfig,
    config_from_mapping,
    read_train_config,
    with_recipe_filter,
)
from training.models import check_trainable
from training.noisy import train_filtered
from training.run.folder import CHECKPOINT, TrainResult, recorded_config, resume_config
from training.run.members import (
    MembersResult,
    check_members,
    check_resume,
    check_run_folder,
    held_members,
    join_members,
    recipe_members,
    train_members,
)
from training.run.patch_training import train

RECIPE = "(default: the model's recipe)"
TRAIN_EXAMPLES = (
    ("CroFuseNet with its paper's recipe on the demo's patches",
     "isamap-train --data demo_output/patches --model crofusenet --out runs/cfn"),
    ("a recipe from a YAML file (configs/ has one per model), the flags overriding it",
     "isamap-train --config configs/train-hrnet.yaml --epochs 60"),
    ("the optical U-Net fused with the published Presto encoder, read from its file",
     "isamap-train --data data/wuhan --model unet-s2 --encoder presto=weights/default_model.pt "
     "--out runs/presto"),
)


def _json(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object, e.g. '{\"head\": \"linear\"}'")
    return value


def train_parser() -> argparse.ArgumentParser:
    p = command_parser("isamap-train", (
        "Train CroFuseNet, the U-Net baselines, RU-Net++, srseg or the land-cover HRNet on an "
        "isamap patch dataset. "
        "Every option left out comes from the model's recipe, i.e. its paper: loss, label, "
        "optimiser, learning rate, batch, epochs, patience (CroFuseNet: Adam 1e-4, poly 0.9, "
        "batch 32, 400 epochs, early stop after 50 epochs without validation-MIoU gain; "
        "docs/training.md lists every recipe). A YAML --config file may hold any of these "
        "options (underscores for dashes); flags given on the command line override it."),
        TRAIN_EXAMPLES)
    p.add_argument("--config", help="YAML file with any TrainConfig option; flags override it")
    p.add_argument("--data", nargs="+", help=(
        "patch dataset root (folder or gs://bucket/prefix); several local roots (one export "
        "per region) train one model on all of them, validated on every region's validation "
        "patches (merged under --out/datasets)"))
    p.add_argument("--out", dest="out_dir",
                   help="run folder (checkpoint.pt, model.pt, metrics.jsonl)")
    _model_arguments(p)
    _optimisation_arguments(p)
    _data_arguments(p)
    add_device_arguments(p, device=None, precision=None, channels_last=None)
    _encoder_arguments(p)
    _run_arguments(p)
    add_logging_arguments(p)
    return p


def _model_arguments(p: argparse.ArgumentParser) -> None:
    """The network, its loss and what it learns from."""
    a = p.add_argument
    a("--model", help="crofusenet | unet | unet-s2 | unet-s1 | runetpp | hrnet | "
      "hrnet-coarse (reads the product band); on label_fine: srseg | bilinear-unet | "
      f"unet-upsample (scale from the manifest); default: {ModelOptions.name}")
    a("--model-kwargs", type=_json, help="extra model arguments as JSON, e.g. "
      "'{\"stem_norm\": \"batch\"}' for hrnet")
    a("--loss", help="crofusenet | dice_focal | ce | weighted_ce | srseg | composition "
      "(default: the "
      "model's recipe)")
    a("--loss-kwargs", type=_json, help="loss arguments as JSON, e.g. '{\"beta\": 0.8}'")
    a("--members", type=int, metavar="K", help=(
        "train the recipe K times (seeds --seed to --seed+K-1, each its own run under "
        "--out/memberN) and join them in --out/model.pt, whose maps are the mean of their "
        "calibrated probabilities: steadier on new ground, at K times the training time "
        "(default: the model's recipe's: 9 for unet-s2, whose members each map the window "
        "one of the four ways its flips turn it, 1 for the others)"))
    a("--bands", help="comma-separated input bands (default: the manifest's)")
    a("--label", choices=["label", "label_fine"],
      help="the target: label (the grid's) or label_fine (the finer super-resolution label; "
           "default: the model's recipe, label_fine for srseg and its baselines)")


def _optimisation_arguments(p: argparse.ArgumentParser) -> None:
    """How the weights are fitted: optimiser, schedule, budget, early stopping, averaging."""
    a = p.add_argument
    a("--optimizer", choices=["adam", "sgd"], help=f"the optimiser {RECIPE}")
    a("--momentum", type=float, help="SGD momentum (default: the model's recipe)")
    a("--epochs", type=int, help=f"most training epochs {RECIPE}")
    a("--batch-size", type=int, help=f"patches per training step {RECIPE}")
    a("--lr", type=float, help=f"initial learning rate {RECIPE}")
    a("--poly-power", type=float, help=f"power of the polynomial learning-rate decay {RECIPE}")
    a("--weight-decay", type=float, help=f"optimiser weight decay {RECIPE}")
    a("--patience", type=int, help=f"early-stopping patience in epochs {RECIPE}")
    a("--ema", type=float, metavar="ITERATIONS", help=(
        "validate, select and save the exponential moving average of the weights, whose "
        "weight on a step halves every ITERATIONS training iterations (0: the last weights; "
        "default: the model's recipe, 10 for unet-s2, else 0)"))
    a("--seed", type=seed, help="seed of weights, shuffling and augmentation (default: 0)")
    a("--max-batches", type=int, help="cap on training batches per epoch")
    a("--max-iterations", type=int, help="total iteration budget (replaces --epochs)")


def _data_arguments(p: argparse.ArgumentParser) -> None:
    """Which patches, how they are cut, filtered, augmented, normalised and read."""
    a = p.add_argument
    a("--crop-size", type=int, help="random square training crops in pixels (default: the "
      "model's recipe, 513 for hrnet; 0 trains on whole patches)")
    a("--allow-small-patches", action="store_const", const=True, help=(
        "train a model whose recipe refuses patches smaller than its context modules need "
        "(runetpp: 304 px) anyway"))
    a("--allow-implausible", action="store_const", const=True, help=(
        "train on a --data root whose patches the input check doubts against the first "
        "root's fingerprint (bands transposed, another scale, an offset), the reason "
        "recorded in the model file"))
    a("--filter-noisy", type=float, metavar="SHARE", help=(
        "train a preliminary model, drop training patches whose prediction agrees with their "
        "label on fewer than SHARE of the pixels (e.g. 0.2), retrain; the dropped patches "
        "are listed in <out>/noisy_patches.json (default: the model's recipe; hrnet-coarse "
        "filters at 0.2)"))
    a("--workers", dest="num_workers", type=int, help=(
        "data-loader worker processes (default: none for a dataset cached on a CPU, else "
        "cores - 1, at most 8)"))
    a("--no-augment", dest="augment", action="store_const", const=False,
      help="train without the paper's augmentations (flips, rotations by 90°)")
    a("--radiometric", action=argparse.BooleanOptionalAction, help=(
        "radiometric augmentation of the optical bands (gamma, gain, offset, haze; default: "
        "the model's recipe)"))
    a("--balanced-sampling", action=argparse.BooleanOptionalAction, help=(
        "draw training patches in proportion to their rare-class pixels instead of "
        "shuffling (default: the model's recipe)"))
    a("--norm", choices=NORMS, help=(
        "normalise the input bands by the training split's statistics (training) or by each "
        "scene's own: every training patch by its scene's, every map by its input stack's "
        "(scene; default: the model's recipe, scene for unet-s2, training for the others)"))
    a("--cache", action="store_const", const=True,
      help="keep decoded patches in memory (default: when they fit)")
    a("--no-cache", dest="cache", action="store_const", const=False,
      help="decode every patch every epoch")


def _encoder_arguments(p: argparse.ArgumentParser) -> None:
    """A pretrained encoder fused with the U-Net."""
    a = p.add_argument
    a("--encoder", metavar="NAME=PATH", action="append", help=(
        "fuse a pretrained encoder read from its published file with the U-Net: "
        "presto=PATH (default_model.pt) or galileo-nano=PATH (encoder.pt); the file's "
        "sha256 is checked, nothing is downloaded (docs/encoders.md)"))
    a("--freeze-encoder", action=argparse.BooleanOptionalAction, help=(
        "keep the encoder's published weights, its features cached per patch (default); "
        "--no-freeze-encoder fine-tunes it"))
    a("--fusion", choices=["concat", "head"], help=(
        "encoder features beside the image channels into the U-Net (concat, default), or the "
        "encoder as backbone with a light decoder (head)"))


def _run_arguments(p: argparse.ArgumentParser) -> None:
    """Stopping, resuming and what the run shows."""
    a = p.add_argument
    a("--stop-after", type=int, help="leave after N epochs (continue later with --resume, or "
      "with the same command: a run of several trainings goes on with the next slice)")
    a("--resume", action="store_const", const=True, help="continue the run in --out exactly")
    a("--no-progress", dest="progress", action="store_const", const=False,
      help="no progress bars")


def train_main(argv: Sequence[str] | None = None) -> int:
    args = vars(train_parser().parse_args(argv))
    verbose, quiet, debug = args.pop("verbose"), args.pop("quiet"), args.pop("debug")
    configure_logging(verbose, quiet, debug)
    return run_command("isamap-train", lambda: _train(args), debug=debug,
                       writes_to=[args.get("out_dir") or "."], checks=CHECKS)


def _given(args: dict) -> tuple[dict, list[str]]:
    """The options a command gives, and its ``--data`` roots.

    Flags win over the ``--config`` file; the recipe's members are added where the command
    starts a run (:func:`_with_members`).
    """
    config = args.pop("config")
    args["encoder"] = given_once(args.get("encoder"), "--encoder",
                                 "a model fuses one pretrained encoder")
    given = {k: v for k, v in args.items() if v is not None}
    roots = given.pop("data", None) or []
    if roots:  # one root as the config holds it; several are merged under --out below
        given["data"] = roots[0]
    if config:
        given = {**read_train_config(config), **given}
    encoder_flags = ([] if args.get("fusion") is None else ["--fusion"]) + (
        [] if args.get("freeze_encoder") is None else
        ["--freeze-encoder" if args["freeze_encoder"] else "--no-freeze-encoder"])
    if encoder_flags and not given.get("encoder") and not given.get("resume"):
        raise ConfigError(f"{' and '.join(encoder_flags)}: an option of a pretrained encoder "
                          "joined to the U-Net, and this run has none; give --encoder "
                          "NAME=PATH too, or leave it out")
    return _with_members(given), roots


def started_config(argv: Sequence[str]) -> TrainConfig:
    """The configuration ``isamap-train ARGV`` starts its run with, before its recipe fills it.

    What a run folder's checkpoint records is compared with it (the built-up judge's
    ``recorded_otherwise``), so a caller reusing a finished run knows whether the same
    command made it.

    Raises:
        ConfigError: ``--resume`` or several ``--data`` roots (a run the folder or a merge
            decides, not the command alone).
    """
    args = vars(train_parser().parse_args(list(argv)))
    for key in ("verbose", "quiet", "debug"):
        args.pop(key)
    given, roots = _given(args)
    if given.get("resume") or len(roots) > 1:
        raise ConfigError("the configuration a command starts is known for one --data root "
                          "without --resume")
    return config_from_mapping(given)


def _train(args: dict) -> int:
    config_file, flags = args.get("config"), {k for k, v in args.items() if v is not None}
    given, roots = _given(args)
    # a resumed run's model is its record's: the default note is for a run that names none
    chosen = "model" in given or bool(given.get("resume"))
    if given.get("resume"):  # the run folder says everything that is not given
        check_resume(given.get("out_dir") or RunOptions.out_dir)
        cfg = resume_config(given.pop("out_dir", None) or RunOptions.out_dir, given,
                            config_file, set(given) - flags)
    else:
        cfg = config_from_mapping(given, config_file, set(given) - flags)
    if not (Path(cfg.run.out_dir) / CHECKPOINT).exists() and not held_members(cfg.run.out_dir):
        check_trainable(cfg.model.name)  # a retired model's runs go on; none is started
    check_output_folder("--out", cfg.run.out_dir)
    for root in roots:  # as typed (a resumed run's are its folder's)
        files.require("--data", root, DATA_ROOT, folder=True, error=ConfigError)
    check_run_folder(cfg)
    check_members(cfg)
    with _run_folder_held(cfg.run.out_dir):  # a second run into this folder is refused
        return _run(cfg, roots, chosen)


@contextlib.contextmanager
def _run_folder_held(out_dir: str) -> Iterator[None]:
    """One run per run folder (:func:`core.lock.hold_output`), its members' folders included.

    A refused run leaves no folder it made. Every torchrun rank runs the command: rank 0
    (``RANK``, set before the process group exists) holds the lock alone.
    """
    if os.environ.get("RANK", "0") != "0":
        yield
        return
    with files.unmade_if_refused(out_dir), hold_output(out_dir):
        yield


def _run(cfg: TrainConfig, roots: Sequence[str], chosen: bool) -> int:
    """The checked run: merge the ``--data`` roots, train, join the members, report."""
    if len(roots) > 1:
        cfg = merged_data(cfg, roots)
    finished = False
    joined: MembersResult | None = None
    try:
        cfg = with_recipe_filter(cfg)  # e.g. hrnet-coarse filters noisy samples by default
        if cfg.loop.members > 1:
            joined = train_members(cfg, functools.partial(train, model_chosen=chosen))
        elif cfg.data.filter_noisy is not None:
            result = train_filtered(cfg, model_chosen=chosen).final
            print(f"noisy-sample filtering: {result.out_dir / 'noisy_patches.json'}")
        else:
            result = train(cfg, model_chosen=chosen)
        finished = True
    finally:
        leave_distributed(finished)  # under torchrun: leave the group before the process exits
    if joined is not None:  # joined once the group is left: rank 0 fits the mean alone
        return _report_members(join_members(cfg, joined))
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return 0
    more = "" if result.finished else (" (to continue: run the same command again, or "
                                       f"isamap-train --out {cfg.run.out_dir} --resume)")
    print(f"{_outcome(result)}{more}\nmodel: {_written(result.model_path)}\n"
          f"history: {_written(result.history_path)}\ncurves: {_written(result.curves_path)}")
    return 0


def _with_members(given: dict) -> dict:
    """``given`` with the recipe's ``members`` where the command starts a run.

    ``--resume`` of a folder with no run starts one, and ``--resume`` of a run of several
    trainings with its options given is that command again (each member resumes where it
    stopped): both take the recipe's number unless ``--members`` is given. ``--resume`` of a
    run of one training keeps what its folder records.
    """
    out = Path(given.get("out_dir") or RunOptions.out_dir)
    if given.get("resume") and held_members(out) and given.get("data"):
        given = {k: v for k, v in given.items() if k != "resume"}
    if given.get("resume") and recorded_config(out) is not None:
        return given
    model = str(given.get("model") or ModelOptions.name)
    return {"members": recipe_members(model), **given}


def _report_members(done: MembersResult) -> int:
    """What ``--members`` made: each member's run, then the joined model file."""
    if os.environ.get("RANK", "0") != "0":
        return 0
    for i, result in enumerate(done.results):
        print(f"member {i}: {_outcome(result)}; {_written(result.model_path)}")
    if done.model_path is None:
        print("stopped before every member finished (run the same command again to continue)")
    else:
        print(f"model (the mean of {len(done.results)} members): {_written(done.model_path)}")
    return 0


def merged_data(cfg: TrainConfig, roots: Sequence[str]) -> TrainConfig:
    """``cfg`` training on one dataset: the ``--data`` ``roots`` merged under ``--out``.

    Each root keeps its name (its folder's, numbered where two share one) and its own scenes,
    so ``--norm scene`` and the validation split see every region. A resumed run finds the
    merged dataset its configuration names.
    """
    remote = [r for r in roots if "://" in r]
    if remote:
        raise ConfigError(f"--data with several roots merges local folders; {remote[0]} is "
                          "not one (copy it here first, or train on it alone)")
    parts: dict[str, str] = {}
    for root in roots:
        name = Path(root.rstrip("/")).name or "data"
        while name in parts:
            name += "_"
        parts[name] = root
    merged = merge_datasets(parts, Path(cfg.run.out_dir) / "datasets")
    return cfg.with_(data=merged)


def _outcome(result: TrainResult) -> str:
    """How a training ended: ``finished after 3 epochs; best validation MIoU ...``."""
    epochs = f"{result.epochs_run} epoch" + ("" if result.epochs_run == 1 else "s")
    return (f"{'finished' if result.finished else 'stopped'} after {epochs}; best validation "
            f"MIoU {100 * result.best_miou:.2f} % at epoch {result.best_epoch}")


def _written(path: Path) -> str:
    """The path, or that nothing was written there (no output is claimed that does not exist)."""
    return str(path) if Path(path).exists() else f"none written (no {Path(path).name})"


if __name__ == "__main__":  # ``torchrun --nproc_per_node N -m cli.train --data ...``
    raise SystemExit(train_main())
