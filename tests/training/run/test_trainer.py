"""The trainer: overfit, bit-identical resume, early stopping, no duplicate work, output scale."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import Subset

from cli.evaluate import evaluate_main
from cli.train import train_main
from core.errors import ConfigError
from engine import autotune
from training.config import TrainConfig, config_from_mapping, read_train_config
from training.data import PatchDataset, compute_norm_stats
from training.losses import build_loss
from training.modelfile import ModelMeta, load_model_file, read_model_file
from training.models import create_model
from training.run.optim import PolyLR
from training.run.patch_training import train
from training.run.trainer import Trainer

TINY = {"widths": [4, 8, 16, 32, 64]}


def _cfg(root, out, **over) -> TrainConfig:
    base = dict(data=str(root), out_dir=str(out), model="unet", model_kwargs=TINY, epochs=3,
                batch_size=2, lr=1e-3, num_workers=0, precision="fp32", channels_last="on",
                progress=False)
    return TrainConfig.of(**{**base, **over})


def test_resumed_run_is_bit_identical(patch_root, tmp_path):
    full = train(_cfg(patch_root, tmp_path / "a"))
    part = train(_cfg(patch_root, tmp_path / "b", stop_after=2))
    assert part.epochs_run == 2 and not part.finished
    resumed = train(_cfg(patch_root, tmp_path / "b", resume=True))
    assert resumed.finished and resumed.epochs_run == 3
    a = torch.load(full.checkpoint_path, weights_only=True)
    b = torch.load(resumed.checkpoint_path, weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["optimizer"]["state"][0]["exp_avg"].equal(b["optimizer"]["state"][0]["exp_avg"])
    strip = [{k: v for k, v in r.items() if k not in ("seconds", "train_patches_per_s")}
             for r in a["history"]]
    assert strip == [{k: v for k, v in r.items() if k not in ("seconds", "train_patches_per_s")}
                     for r in b["history"]]
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3]  # no duplicated epochs
    assert (tmp_path / "b" / "learning_curves.png").stat().st_size > 1000
    # Re-running a finished run does no work, with or without --resume (the identical
    # command resumes); other options over it are refused, naming what differs.
    mtime = resumed.checkpoint_path.stat().st_mtime_ns
    again = train(_cfg(patch_root, tmp_path / "b", resume=True))
    assert again.epochs_run == 3 and resumed.checkpoint_path.stat().st_mtime_ns == mtime
    same = train(_cfg(patch_root, tmp_path / "b"))
    assert same.epochs_run == 3 and resumed.checkpoint_path.stat().st_mtime_ns == mtime
    with pytest.raises(ConfigError, match=r"lr: 0\.001 there, 0\.01 now"):
        train(_cfg(patch_root, tmp_path / "b", lr=1e-2))


@pytest.mark.slow
def test_tiny_overfit_reaches_iou_above_095(patch_root, tmp_path):
    torch.manual_seed(0)
    raw = PatchDataset(patch_root, "train")
    norm = compute_norm_stats(raw)
    patches = PatchDataset(patch_root, "train", norm=norm, cache=True)
    ds = Subset(patches, [0, 1, 2])  # a plain dataset
    # the three patches three times an epoch: the 90 steps of 30 epochs of three, with a
    # third of the validations, checkpoints and model files (most of the time)
    thrice = Subset(patches, [0, 1, 2] * 3)
    model = create_model("crofusenet", 6, bands=list(raw.bands), **TINY)
    meta = ModelMeta("crofusenet", 6, 2, raw.bands, norm.mean, norm.std,
                     model_kwargs={"bands": list(raw.bands), **TINY})
    cfg = _cfg(patch_root, tmp_path / "fit", model="crofusenet", epochs=10, batch_size=1,
               lr=1e-2, patience=10)
    res = Trainer(cfg, model, build_loss("crofusenet"), thrice, ds, meta, curves=False).fit()
    loaded, _ = load_model_file(res.model_path)
    with torch.no_grad():
        x = torch.stack([ds[i]["image"] for i in range(len(ds))])
        y = torch.stack([ds[i]["label"] for i in range(len(ds))])
        pred = loaded(x)["out"].argmax(1)
    inter = ((pred == 1) & (y == 1)).sum().item()
    union = ((pred == 1) | (y == 1)).sum().item()
    assert inter / union > 0.95, res


def test_early_stopping_after_patience(patch_root, tmp_path):
    ended: list[int] = []  # train() hands epoch_end to the Trainer: after every epoch
    res = train(_cfg(patch_root, tmp_path / "es", epochs=20, patience=2, lr=1e-12),
                epoch_end=lambda model, epoch: ended.append(epoch))
    assert res.finished and res.epochs_run == 3 and res.best_epoch == 1
    assert ended == [0, 1, 2]


def test_bf16_channels_last_and_dice_focal_path(patch_root, tmp_path):
    """What the convolutions actually see: bf16 autocast and NHWC tensors, in both phases.

    A global forward hook observes every Conv2d inside ``train`` (no private attribute is
    read): its output dtype is the autocast dtype in force, and its input and weight are
    channels_last when the trainer converted the model and the batches.
    """
    seen = []

    def record(module, args, output):
        if isinstance(module, torch.nn.Conv2d):
            nhwc = torch.channels_last
            seen.append((torch.is_grad_enabled(), output.dtype,
                         args[0].is_contiguous(memory_format=nhwc),
                         module.weight.is_contiguous(memory_format=nhwc)))

    handle = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        res = train(_cfg(patch_root, tmp_path / "bf", epochs=1, precision="bf16",
                         loss="dice_focal"))
    finally:
        handle.remove()
    history = [json.loads(x) for x in res.history_path.read_text().splitlines()]
    assert history[0]["train_loss"] > 0 and res.model_path.exists()
    assert {grad for grad, *_ in seen} == {True, False}  # training and validation passes
    assert {dtype for _, dtype, _, _ in seen} == {torch.bfloat16}
    assert all(x_nhwc and w_nhwc for *_, x_nhwc, w_nhwc in seen)


@pytest.mark.slow
def test_auto_runtime_is_measured_once_recorded_and_kept_when_resuming(patch_root, tmp_path,
                                                                       monkeypatch):
    # the test machine's load must not decide the path under test (measured, not discarded)
    monkeypatch.setattr(autotune, "MIN_CPU_SHARE", 0.0)
    # a run long enough for its share of measuring to pay for the probe and to time the
    # candidates even on a loaded machine (50 epochs' share once ran out before any was
    # timed, under CI's two workers); one epoch of it
    cfg = _cfg(patch_root, tmp_path / "auto", precision="auto", channels_last="auto",
               epochs=500, stop_after=1, autotune_cache=False, device="cpu")
    part = train(cfg)
    runtime = torch.load(part.checkpoint_path, weights_only=True)["runtime"]
    assert (runtime["source"], runtime["mode"]) == ("measured", "training")
    assert runtime["shape"] == [2, 6, 32, 32]  # the run's own batch
    assert runtime["errors"][runtime["label"]] <= runtime["tolerance"]
    assert len(runtime["ms_per_sample"]) >= 1
    rows = [json.loads(x) for x in part.history_path.read_text().splitlines()]
    assert rows[0]["runtime"] == runtime["label"]
    _, meta = load_model_file(part.model_path)
    assert meta.extra["runtime"]["setting"] == runtime["setting"]
    resumed = train(TrainConfig.of(**{**cfg.to_dict(), "resume": True}))
    kept = torch.load(resumed.checkpoint_path, weights_only=True)["runtime"]
    assert (kept["source"], kept["setting"]) == ("checkpoint", runtime["setting"])
    assert resumed.epochs_run == 2


def test_a_short_runs_auto_measures_nothing(patch_root, tmp_path):
    """Two epochs of six patches: the run's share of measuring cannot pay for the fewest steps
    measuring takes, so fp32 NCHW trains, unmeasured (``short-job``)."""
    res = train(_cfg(patch_root, tmp_path / "short", precision="auto", channels_last="auto",
                     epochs=2, autotune_cache=False))
    runtime = torch.load(res.checkpoint_path, weights_only=True)["runtime"]
    assert (runtime["source"], runtime["label"], runtime["ms_per_sample"]) == (
        "short-job", "fp32/nchw", {})


def test_trainer_accepts_outputs_at_a_finer_scale(tmp_path):
    from tests.support.rasters import write_patch_dataset

    root = write_patch_dataset(tmp_path / "ds", n=6, size=8, fine_scale=4)
    raw = PatchDataset(root, "train", label="label_fine")
    norm = compute_norm_stats(raw)
    ds = PatchDataset(root, "train", norm=norm, label="label_fine")
    val = PatchDataset(root, "val", norm=norm, label="label_fine")
    meta = ModelMeta("sr-test", 6, 2, raw.bands, norm.mean, norm.std, output_scale=4)
    model = create_model("unet-upsample", 6, 2, scale=4, widths=[4, 8])  # logits at 4x
    res = Trainer(_cfg(root, tmp_path / "sr", epochs=2), model, build_loss("ce"), ds,
                  val, meta, curves=False).fit()
    assert res.epochs_run == 2 and 0 <= res.best_miou <= 1
    # curves=False (a run nobody looks at, e.g. an experiment's fold): the rows, no picture
    assert len(res.history_path.read_text().splitlines()) == 2
    assert not res.curves_path.exists() and res.model_path.exists()


def test_cli_train_then_evaluate(patch_root, tmp_path, capsys, monkeypatch):
    import training.plots

    titles, save = [], training.plots.save_png

    panels = []

    def keep_title(fig, path, **how):
        titles.append(fig._suptitle.get_text() if fig._suptitle else "")
        panels.append([ax.get_title() for ax in fig.axes])
        return save(fig, path, **how)

    monkeypatch.setattr(training.plots, "save_png", keep_title)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"data: {patch_root}\nmodel: unet-s2\nepochs: 5\nbatch_size: 3\n"
                   "poly_power: 1.5\nmembers: 1\n"
                   f"model_kwargs: {json.dumps(TINY)}\nprecision: fp32\nnum_workers: 0\n")
    assert config_from_mapping(read_train_config(cfg)).loop.epochs == 5
    out = tmp_path / "run"
    rc = train_main(["--config", str(cfg), "--out", str(out), "--epochs", "1", "--no-progress"])
    assert rc == 0 and "finished after 1 epoch;" in capsys.readouterr().out
    # unet-s2 normalises each scene by its own statistics: any tile makes the same map
    meta = load_model_file(out / "model.pt")[1]
    assert meta.norm == "scene" and meta.window is None
    # the learning-curve title names the dataset without the machine's folders
    assert titles == [f"Learning curves: unet-s2 on {patch_root.parent.name}/ds"]
    # the learning-rate panel names this run's schedule (not a fixed "poly 0.9")
    assert panels[0][2].startswith("learning rate (poly 1.5 over ") and "0.9" not in panels[0][2]
    assert PolyLR(60, 0.0).describe() == "constant" and PolyLR(60, 0.0)(30) == 1.0
    rc = evaluate_main(["--model", str(out / "model.pt"), "--data", str(patch_root),
                        "--out", str(tmp_path / "ev"), "--points", "60", "--no-progress"])
    assert rc == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["points"]["n"] == 60
    runtime = metrics["runtime"]  # evaluate's default is auto too: measured and recorded
    assert runtime["source"] in ("measured", "cache") and runtime["mode"] == "inference"
    assert runtime["errors"][runtime["label"]] <= runtime["tolerance"]
    assert len(metrics["pixel"]["matrix"]) == 2
    assert (tmp_path / "ev" / "confusion_matrix.png").stat().st_size > 1000
    assert "OA" in (tmp_path / "ev" / "metrics.txt").read_text()
    # areas in km², as everywhere else: 2 test patches of 32 x 32 px at 10 m = 0.2048 km²
    areas = metrics["area_km2"]
    assert 0 < sum(areas["mapped_area"]) <= 2 * 32 * 32 * 100 / 1e6 + 1e-9
    assert "areas in km²" in (tmp_path / "ev" / "metrics.txt").read_text()
    # training fitted a temperature on the validation split and recorded it in the model file
    meta = read_model_file(out / "model.pt")[0]
    assert meta.learnt_classes == ("pervious", "impervious")  # what its training labels hold
    assert meta.calibration["method"] == "temperature" and meta.calibration["split"] == "val"
    assert meta.calibration["pixels"] > 100 and meta.temperature > 0
    assert meta.calibration["nll_after"] <= meta.calibration["nll_before"] + 1e-9
    calibration = metrics["calibration"]  # evaluate reports the ECE at T = 1 and as predicted
    assert calibration["temperature"] == meta.temperature and calibration["ece_bins"] == 15
    assert calibration["before"]["pixels"] == calibration["after"]["pixels"] > 0
    assert 0 <= calibration["ece_after"] <= 1 and 0 <= calibration["ece_before"] <= 1
    assert sum(calibration["after"]["count"]) == calibration["after"]["pixels"]
    assert "expected calibration error" in (tmp_path / "ev" / "metrics.txt").read_text()
    assert (tmp_path / "ev" / "reliability.png").stat().st_size > 5000


@pytest.mark.slow
def test_ddp_under_torchrun_on_cpu(patch_root, tmp_path):
    """Two Gloo ranks: data sharded, confusion matrices summed, files written once."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "ddp"
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "cli.train",
         "--data", str(patch_root), "--out", str(out), "--model", "unet", "--model-kwargs",
         json.dumps(TINY), "--epochs", "1", "--batch-size", "4", "--workers", "0",
         "--precision", "fp32", "--no-progress", "--device", "cpu"],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("finished after 1 epoch;") == 1
    # the U-Net's loss reaches every parameter: DDP is not asked to search for unused ones
    assert "find_unused_parameters" not in proc.stderr
    _, meta = load_model_file(out / "model.pt")
    matrix = meta.metrics["val"]["matrix"]
    assert sum(map(sum, matrix)) == 2 * 32 * 32  # both val patches, one per rank, summed


@pytest.mark.slow
def test_bad_input_under_torchrun_is_one_line_and_named_in_the_launchers_report(tmp_path):
    """torch's launcher ends with its own traceback and exit 1 whenever a rank fails (no rank
    can change that): the user's first line is isamap's, said once, and the launcher's report
    of the failed ranks shows it instead of a link to torch's documentation."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "cli.train",
         "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "run"), "--epochs", "1"],
        capture_output=True, text=True, env=env, timeout=120)
    line = (f"isamap-train: error: --data {tmp_path / 'missing'} does not exist; give the patch "
            "dataset folder isamap-export wrote (the one holding manifest.json)")
    assert proc.returncode == 1, proc.stderr[-3000:]  # the launcher's, for every failed rank
    assert proc.stderr.startswith(line) and proc.stderr.count(f"\n{line}") == 0, proc.stderr
    assert "exitcode  : 2" in proc.stderr  # the rank's own status, in the launcher's report
    assert f"traceback : {line}" in proc.stderr
    assert not (tmp_path / "run").exists()


SRSEG_TINY = {"widths": [4, 8], "stage_widths": [4, 4], "deep_supervision": False}


def test_cli_trains_srseg_on_label_fine_at_the_datasets_scale(tmp_path, capsys):
    """No scale in --model-kwargs: the manifest's fine scale (4) reaches the model."""
    from tests.support.rasters import write_patch_dataset

    root = write_patch_dataset(tmp_path / "ds", n=6, size=8, fine_scale=4)
    common = ["--data", str(root), "--label", "label_fine", "--epochs", "1",
              "--batch-size", "2", "--max-batches", "2", "--precision", "fp32",
              "--workers", "0", "--no-progress", "--model-kwargs", json.dumps(SRSEG_TINY)]
    out = tmp_path / "sr"
    assert train_main([*common, "--model", "srseg", "--out", str(out)]) == 0
    model, meta = load_model_file(out / "model.pt")
    assert meta.output_scale == 4 and model.output_scale == 4
    assert meta.model_kwargs["scale"] == 4
    # calibrated on the fine labels of the validation split, at the output's 4x grid
    assert meta.calibration["method"] == "temperature" and meta.calibration["pixels"] > 100
    model.eval()
    assert model(torch.zeros(1, 6, 8, 8))["out"].shape == (1, 2, 32, 32)
    capsys.readouterr()
    # A scale typed by hand that disagrees with the dataset is refused before training.
    bad = json.dumps({**SRSEG_TINY, "scale": 8})
    assert train_main([*common[:-1], bad, "--model", "srseg", "--out", str(tmp_path / "b")]) == 2
    assert "disagrees with the dataset's fine scale 4" in capsys.readouterr().err
    # A model that cannot upsample cannot learn label_fine.
    assert train_main([*common[:-2], "--model", "unet", "--out", str(tmp_path / "c")]) == 2
    assert "cannot learn the 4x finer label_fine" in capsys.readouterr().err
    # An upsampling model cannot learn the coarse label.
    coarse = [a if a != "label_fine" else "label" for a in common]
    assert train_main([*coarse, "--model", "srseg", "--out", str(tmp_path / "d")]) == 2
    assert "--label label_fine" in capsys.readouterr().err
    assert not any((tmp_path / d / "model.pt").exists() for d in "bcd")


def test_a_run_says_early_how_long_it_will_take(patch_root, tmp_path, caplog):
    """One estimate after the first batches (start-up apart), then the time to go each epoch."""
    from training.run.history import first_run_estimate

    caplog.set_level("INFO", logger="training.run.trainer")
    res = train(_cfg(patch_root, tmp_path / "eta", epochs=2, batch_size=1))
    lines = [r.getMessage() for r in caplog.records if r.name == "training.run.trainer"]
    estimates = [line for line in lines if line.startswith("time estimate:")]
    assert len(estimates) == 1 and "the 2 epoch(s) to go" in estimates[0]
    batches = int(estimates[0].split("an epoch of ")[1].split(" batches")[0])
    assert batches >= 4
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert "to go" in epochs[0] and "to go" not in epochs[-1] and res.epochs_run == 2
    text = first_run_estimate(30.0, 0.5, 101, 400)
    assert "first batch took 30 s" in text and "about 80 s" in text and "5.6 h" in text


def _audited(events: list[tuple[str, tuple]], watching: list[bool]) -> None:
    """Python's audit events ("open", "os.rename": every file opened, each atomic write's
    rename) into ``events`` while ``watching[0]`` (an audit hook cannot be removed)."""
    import sys

    def hook(event, args):
        if watching[0] and event in ("open", "os.rename"):
            events.append((event, args))

    sys.addaudithook(hook)


@pytest.fixture(scope="module")
def one_epoch_run(patch_root, tmp_path_factory):
    """A finished one-epoch run on the CPU, read by the three tests below (each trained the
    same run of its own), with the names of the files its atomic writes replaced; the
    rerun's test asserts it writes nothing."""
    from pathlib import Path

    events: list[tuple[str, tuple]] = []
    watching = [True]
    _audited(events, watching)
    try:
        res = train(_cfg(patch_root, tmp_path_factory.mktemp("one") / "run", epochs=1,
                         device="cpu"))
    finally:
        watching[0] = False
    return res, [Path(args[1]).name for event, args in events if event == "os.rename"]


@pytest.mark.xdist_group("one_epoch_run")
def test_a_run_writes_its_checkpoint_and_model_file_once_where_they_are_final(one_epoch_run):
    """A run's last epoch wrote its model file, then its checkpoint, then fitted the
    temperature and wrote both again (RU-Net++'s checkpoint is ~880 MB): the temperature is
    fitted first now, and each file written once, calibrated and recorded so."""
    res, replaced = one_epoch_run
    assert replaced.count("model.pt") == 1 and replaced.count("checkpoint.pt") == 1, replaced
    assert read_model_file(res.model_path)[0].calibrated
    assert torch.load(res.checkpoint_path, weights_only=True)["calibrated"] is True


@pytest.mark.xdist_group("one_epoch_run")
def test_calibration_on_the_last_validation_is_the_calibration_of_the_kept_file(
        one_epoch_run, patch_root, tmp_path):
    """A run whose last epoch is its best calibrates on that epoch's validation outputs
    instead of running the split again: the record is the one a fresh pass over the split
    with the model file's weights fits (the exact oracle)."""
    from training.calibration.pixels import gather, scenes_of
    from training.calibration.record import calibrate_model_file
    from training.data import NormStats
    from training.loader import make_loader
    from training.modelfile import save_model_file

    # its one epoch is its best; on the CPU, where the oracle's fresh pass runs
    res, _ = one_epoch_run
    assert res.best_epoch == 1 and res.finished
    model, meta = load_model_file(res.model_path)
    bare = ModelMeta.from_dict({**meta.to_dict(), "calibration": {}})
    again = save_model_file(tmp_path / "again.pt", model, bare)
    val = PatchDataset(patch_root, "val", bands=meta.bands,
                       norm=NormStats(meta.bands, meta.norm_mean, meta.norm_std))

    def outputs(net):
        for batch in make_loader(val, 2, False, 0, 0):
            x = batch["image"].contiguous(memory_format=torch.channels_last)
            yield net(x).float(), batch["label"], scenes_of(batch)

    record = calibrate_model_file(again, model.to(memory_format=torch.channels_last),
                                  lambda net: gather(outputs(net)))
    assert record == meta.calibration


@pytest.mark.xdist_group("one_epoch_run")
def test_a_finished_runs_rerun_does_not_calibrate_again(one_epoch_run, patch_root, caplog):
    """A finished run's rerun went through its calibration step again: it read the whole
    model file back (weights, digest, a scan for NaN) to find the temperature recorded. The
    checkpoint records the calibration done; the rerun opens neither the model file nor the
    validation split, and says the run is finished. It also read the dataset, built the
    model and the trainer (whose Adam imports torch._dynamo, seconds) before finding nothing
    to do: it decides that first now, and opens no file of the dataset."""
    import logging
    from pathlib import Path

    first, _ = one_epoch_run
    assert first.finished and read_model_file(first.model_path)[0].calibrated
    events: list[tuple[str, tuple]] = []
    watching = [True]
    _audited(events, watching)
    try:
        with caplog.at_level(logging.INFO, logger="training"):
            again = train(_cfg(patch_root, first.model_path.parent, epochs=1, device="cpu"))
    finally:
        watching[0] = False
    opened = [str(args[0]) for event, args in events
              if event == "open" and isinstance(args[0], str | bytes | Path)]
    assert again == first  # the same result: its files, best epoch, epochs, finished
    assert "is finished (1 epoch, the best 1)" in caplog.text and "calibration:" not in caplog.text
    assert str(first.model_path) not in opened, "the model file was read again"
    assert not [p for p in opened if p.startswith(str(patch_root))], "the dataset was read"
    assert not [e for e, _ in events if e == "os.rename"], "a file was written"
