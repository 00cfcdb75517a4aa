"""How a training run stops and continues: divergence, Ctrl-C, --resume, one line per epoch."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest
import torch

from cli.evaluate import evaluate_main
from cli.train import train_main
from core.errors import OutputLockedError, TrainingDivergedError
from tests.support.lock_holder import files_under, held_elsewhere
from tests.support.refusals import case
from training.config import TrainConfig
from training.data import PatchDataset, compute_norm_stats
from training.losses import build_loss
from training.modelfile import ModelMeta
from training.models import create_model
from training.run.trainer import Trainer

TINY = {"widths": [4, 8, 16, 32, 64]}


def _argv(root, out, *extra):
    return ["--data", str(root), "--out", str(out), "--model", "unet", "--model-kwargs",
            json.dumps(TINY), "--epochs", "2", "--batch-size", "2", "--workers", "0",
            "--precision", "fp32", "--lr", "1e-3", "--no-progress", *extra]


#: a tiny run of the module's patches, as the rows of :func:`test_refusals` give it
TRAIN = " ".join(_argv("{data}", "{out}"))
TRAIN = TRAIN.replace(json.dumps(TINY), f"'{json.dumps(TINY)}'")


@pytest.fixture(scope="module")
def refusal_inputs(patch_root, tmp_path_factory) -> dict[str, str]:
    """What the rows of :func:`test_refusals` name: the patches, and config files each giving
    one value of the wrong type (``config_<key>``)."""
    root = tmp_path_factory.mktemp("refusals")
    for key, value in (("epochs", "1.5"), ("batch_size", "true"), ("lr", "fast"),
                       ("augment", "1"), ("bands", "4")):
        (root / f"{key}.yaml").write_text(f"data: ds\n{key}: {value}\n")
    return {"data": str(patch_root), **{f"config_{key}": str(root / f"{key}.yaml") for key in (
        "epochs", "batch_size", "lr", "augment", "bands")}}


@pytest.mark.xdist_group("training.run.test_control.refusals")  # its inputs are built once
@pytest.mark.parametrize("argv, says", [
    # numbers named as typed (they said batch_size, crop_size ...: the Python names)
    case("workers-negative", "--data x --workers -1", "--workers"),
    *[case(f"{flag[2:]}-{value}", f"--data x {flag} {value}", f"isamap-train: error: {flag} "
           "must be") for flag, value in (("--batch-size", "0"), ("--crop-size", "-4"),
                                          ("--filter-noisy", "2"), ("--max-iterations", "0"))],
    case("epochs-0", "--data {data} --epochs 0", "epochs must be >= 1"),
    # model widths (zero, fractional and negative widths were three torch tracebacks)
    *[case(f"model-kwargs-{name}", f"{TRAIN} --model-kwargs '{kwargs}'", says)
      for name, kwargs, says in (
          ("zero", '{"widths": [0, 8, 8, 16, 16]}',
           "widths must be a list of whole numbers of channels >= 1"),
          ("fraction", '{"widths": [4.5, 8, 8, 16, 16]}', "got [4.5, 8, 8, 16, 16]"),
          ("negative", '{"widths": [-4, 8, 8, 16, 16]}',
           'e.g. {"widths": [32, 64, 128, 256, 512]}'),
          ("width", '{"width": -2}', "width must be a whole number of channels >= 1, got -2"))],
    # a config file's values of the wrong type
    *[case(f"config-{key}", f"--config {{config_{key}}}", f"{key}.yaml: {says}")
      for key, says in (
          ("epochs", "epochs must be a whole number, got 1.5"),  # trained 2 epochs
          ("batch_size", "batch_size must be a whole number, got True"),  # was 1
          ("lr", "lr must be a number, got 'fast'"),
          ("augment", "augment must be true or false, got 1"),
          ("bands", "bands must be a list of names"))],
    # an encoder's options without an encoder (it trained a plain U-Net, recording the fusion)
    *[case(f"{flag.split()[0][2:]}-without-encoder", f"{TRAIN} {flag}",
           f"{flag.split()[0]}: an option of a pretrained encoder")
      for flag in ("--fusion head", "--no-freeze-encoder")],
])
def test_refusals(refusal_inputs, tmp_path, monkeypatch, capsys, argv, says):
    """Each row: ``isamap-train`` with the row's words, run in an empty folder (``{out}`` is
    one in it), refused with exit 2 in one line holding ``says``, before any data is read and
    leaving the folder empty."""
    monkeypatch.chdir(tmp_path)
    paths = {**refusal_inputs, "out": str(tmp_path / "runs" / "x")}
    words = [re.sub(r"\{(\w+)\}", lambda m: paths.get(m.group(1), m.group(0)), word)
             for word in shlex.split(argv)]
    status = train_main(words)
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("isamap-train: error: ") and says in err, err
    assert list(tmp_path.iterdir()) == []


class NanAfter(torch.nn.Module):
    """The real loss until call ``calls``, then NaN (what a too-high learning rate causes)."""

    def __init__(self, calls: int) -> None:
        super().__init__()
        self.inner, self.calls, self.n = build_loss("dice_focal"), calls, 0

    def forward(self, out, label):
        self.n += 1
        loss = self.inner(out, label)
        return loss * float("nan") if self.n > self.calls else loss


def test_non_finite_loss_stops_and_keeps_the_last_good_files(patch_root, tmp_path):
    raw = PatchDataset(patch_root, "train")
    norm = compute_norm_stats(raw)
    train_set = PatchDataset(patch_root, "train", norm=norm)
    val_set = PatchDataset(patch_root, "val", norm=norm)
    model = create_model("unet", 6, 2, **TINY)
    meta = ModelMeta("unet", 6, 2, raw.bands, norm.mean, norm.std, model_kwargs=TINY)
    cfg = TrainConfig.of(data=str(patch_root), out_dir=str(tmp_path / "run"), model="unet",
                         epochs=5, batch_size=2, num_workers=0, precision="fp32",
                         channels_last="off", progress=False)  # nothing measured: calls counted
    # epoch 1: three training batches and one validation batch; NaN from epoch 2 on
    trainer = Trainer(cfg, model, NanAfter(4), train_set, val_set, meta)
    with pytest.raises(TrainingDivergedError, match=r"epoch 2 \(training batch 1\)") as err:
        trainer.fit()
    assert "still holds epoch 1" in str(err.value) and "--lr" in str(err.value)
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ck["epoch"] == 1 and len(ck["history"]) == 1
    assert all(torch.isfinite(v).all() for v in ck["model"].values())
    model_state = torch.load(tmp_path / "run" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.isfinite(v).all() for v in model_state.values())
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1


def test_diverged_cli_run_exits_non_zero_without_a_model(patch_root, tmp_path, capsys):
    assert train_main(_argv(patch_root, tmp_path / "run", "--lr", "1e30")) == 2
    err = capsys.readouterr().err
    assert "training diverged" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "model.pt").exists()


def test_one_line_per_epoch_without_progress_bars(patch_root, tmp_path, capsys):
    assert train_main(_argv(patch_root, tmp_path / "run")) == 0
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith("epoch ")]
    assert [x.split()[1] for x in lines] == ["1/2", "2/2"]
    assert all(" loss " in x and "val MIoU" in x for x in lines)
    assert lines[0].rstrip().endswith(" to go")  # the time the epochs still to go take
    assert lines[-1].rstrip().split()[-1] in ("s", "(best)")  # none to go after the last


def test_resume_takes_its_options_from_the_run_folder(patch_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_main(_argv(patch_root, out, "--epochs", "3", "--stop-after", "1")) == 0
    said = capsys.readouterr().out
    assert said.startswith("stopped after 1 epoch; best validation MIoU ")  # a walk: it said
    # "stopped (run the same command again, ...) after 1 epochs"
    assert (f" at epoch 1 (to continue: run the same command again, or isamap-train --out {out}"
            " --resume)\n") in said
    written = (out / "config.yaml").read_bytes()
    assert b"stop_after: null" in written and b"resume: false" in written
    # the README's form; a walk: it took the recorded --stop-after 1 and stopped again
    assert train_main(["--out", str(out), "--resume", "--no-progress"]) == 0
    assert capsys.readouterr().out.startswith("finished after 3 epochs; ")
    assert (out / "config.yaml").read_bytes() == written  # how it was continued is not the run's
    assert train_main(["--out", str(out), "--resume", "--lr", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "lr: 0.001 there, 0.5 now" in err and "--resume" in err
    assert "drop those flags to resume it" in err
    # the change is in the config file (a walk: the message said to drop flags never given)
    edited = out / "edited.yaml"  # beside the run: its paths read from the run folder
    edited.write_text((out / "config.yaml").read_text().replace("lr: 0.001", "lr: 0.01"))
    assert train_main(["--config", str(edited), "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert (f"lr: 0.001 there, 0.01 now; set lr back in the config file {edited} (or leave it "
            "out of it) to resume it") in err and "flags" not in err
    assert train_main(["--config", str(edited), "--out", str(out), "--resume", "--epochs",
                       "4"]) == 2
    assert "; drop those flags, set lr back in the config file" in capsys.readouterr().err
    assert train_main(["--out", str(tmp_path / "empty"), "--resume"]) == 2
    assert "holds no run to resume" in capsys.readouterr().err


def test_negative_workers_are_refused_by_evaluate_too(tmp_path, capsys, monkeypatch):
    """isamap-train's: a row of test_refusals."""
    monkeypatch.chdir(tmp_path)
    assert evaluate_main(["--model", "m.pt", "--data", "x", "--out", "o", "--workers",
                          "-1"]) == 2
    assert "--workers" in capsys.readouterr().err


@pytest.mark.slow
def test_ctrl_c_exits_130_and_the_same_command_resumes(patch_root, tmp_path, capsys):
    out = tmp_path / "run"
    args = _argv(patch_root, out)
    args[args.index("--epochs") + 1] = "3"
    argv = [sys.executable, "-m", "cli.train", *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    deadline = time.monotonic() + 180
    while not (out / "checkpoint.pt").exists() and proc.poll() is None:
        assert time.monotonic() < deadline, "no epoch finished in time"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before the interrupt arrived (machine too fast)")
    assert proc.returncode == 130, err
    assert "interrupted; run the same command again to resume" in err
    assert "Traceback" not in err
    done = torch.load(out / "checkpoint.pt", weights_only=True)["epoch"]
    assert train_main(args) == 0  # the same command again (in this process: no second start)
    assert f"resuming the run in {out} after epoch {done}" in capsys.readouterr().err
    epochs = [json.loads(x)["epoch"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]


def test_quiet_hides_progress_bars_in_train_and_evaluate(patch_root, tmp_path, capsys):
    """-q's help says it hides progress bars; train and evaluate drew them anyway."""
    out = tmp_path / "run"
    argv = [a for a in _argv(patch_root, out, "--quiet") if a != "--no-progress"]
    argv[argv.index("--epochs") + 1] = "1"
    assert train_main(argv) == 0
    assert capsys.readouterr().err == ""
    assert evaluate_main(["--model", str(out / "model.pt"), "--data", str(patch_root), "--out",
                          str(tmp_path / "eval"), "--workers", "0", "--precision", "fp32",
                          "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_a_loss_that_runs_away_without_nan_stops_and_saves_no_model(patch_root, tmp_path,
                                                                   capsys):
    """lr 1e6 sends the loss to ~1e12 while it stays finite: stopped, no model.pt."""
    out = tmp_path / "run"
    assert train_main(_argv(patch_root, out, "--lr", "1e6")) == 2
    err = capsys.readouterr().err
    assert "training diverged: the loss grew to" in err and "times its first value" in err
    assert "--lr" in err and "Traceback" not in err
    assert not (out / "model.pt").exists()


def test_a_finite_runaway_loss_keeps_the_last_good_epoch(patch_root, tmp_path):
    raw = PatchDataset(patch_root, "train")
    norm = compute_norm_stats(raw)
    train_set = PatchDataset(patch_root, "train", norm=norm)
    val_set = PatchDataset(patch_root, "val", norm=norm)
    model = create_model("unet", 6, 2, **TINY)
    meta = ModelMeta("unet", 6, 2, raw.bands, norm.mean, norm.std, model_kwargs=TINY)
    cfg = TrainConfig.of(data=str(patch_root), out_dir=str(tmp_path / "run"), model="unet",
                         epochs=5, batch_size=2, num_workers=0, precision="fp32",
                         channels_last="off", progress=False)
    trainer = Trainer(cfg, model, GrowsAfter(4), train_set, val_set, meta)
    with pytest.raises(TrainingDivergedError, match=r"grew to .* epoch 2 \(training batch 1\)"):
        trainer.fit()
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ck["epoch"] == 1 and ck["loss_reference"] > 0
    saved = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    assert saved["meta"]["metrics"]["epoch"] == 1


class GrowsAfter(torch.nn.Module):
    """The real loss until call ``calls``, then the loss x 1e9: finite, but runaway."""

    def __init__(self, calls: int) -> None:
        super().__init__()
        self.inner, self.calls, self.n = build_loss("dice_focal"), calls, 0

    def forward(self, out, label):
        self.n += 1
        loss = self.inner(out, label)
        return loss * 1e9 if self.n > self.calls else loss


def test_yaml_11_numbers_and_switches_in_a_train_config_are_what_they_say(tmp_path):
    """YAML 1.1 reads ``1e-3`` (no dot) as text and ``on`` as true: ``lr: 1e-3`` failed
    without naming lr; now it is 0.001, and ``channels_last: on`` is on."""
    from training.config import config_from_mapping, read_train_config

    path = tmp_path / "c.yaml"
    path.write_text("data: ds\nlr: 1e-3\nchannels_last: on\nepochs: 3\nbands: B2,B3\n")
    cfg = config_from_mapping(read_train_config(path))
    assert (cfg.optim.lr, cfg.runtime.channels_last, cfg.loop.epochs, cfg.data.bands) == (
        0.001, "on", 3, ("B2", "B3"))


def test_each_option_of_a_file_is_one_field_of_one_part_and_goes_there():
    """Files, flags and records name the options flat; one table says which part holds each.

    A field a part gained without its row there would be neither read from a file nor
    recorded; an option set by its flat name lands in its part and leaves the others as
    they were.
    """
    import dataclasses

    from training.config import OPTIONS, RENAMED

    parts = {f.name: getattr(TrainConfig(), f.name) for f in dataclasses.fields(TrainConfig)}
    fields = sorted((name, f.name) for name, part in parts.items()
                    for f in dataclasses.fields(part))
    assert fields == sorted((part, RENAMED.get(key, key)) for key, part in OPTIONS.items())
    given = {"data": "ds", "model": "unet", "lr": 0.5, "num_workers": 2, "device": "cpu",
             "stop_after": 3, "members": 2}
    cfg = TrainConfig.of(**given)
    assert (cfg.data.root, cfg.model.name, cfg.optim.lr, cfg.data.num_workers,
            cfg.runtime.device, cfg.run.stop_after, cfg.loop.members) == tuple(given.values())
    assert list(cfg.to_dict()) == list(OPTIONS) and cfg.to_dict().items() >= given.items()
    changed = cfg.with_(lr=0.1)
    assert changed.optim.lr == 0.1 and changed.data is cfg.data and changed.loop is cfg.loop


@pytest.fixture(scope="module")
def stopped_run(patch_root, tmp_path_factory):
    """A folder holding ``runs/u``: the 2-epoch U-Net of :func:`_argv` stopped after its first
    epoch, started from this folder as ``runs/u``. Two tests trained it each: the one that
    continues it copies it first (the copy's relative paths to the data are the same: both
    folders sit one level under pytest's temporary root); the other only reads it."""
    root = tmp_path_factory.mktemp("stopped")
    here = os.getcwd()
    os.chdir(root)
    try:
        assert train_main(_argv(patch_root, "runs/u", "--stop-after", "1")) == 0
    finally:
        os.chdir(here)
    return root


@pytest.mark.slow
@pytest.mark.xdist_group("stopped_run")
def test_a_runs_config_yaml_reruns_it_from_the_run_folder_too(stopped_run, tmp_path, capsys,
                                                              monkeypatch):
    """The written config.yaml named the data relative to where the run started, so run from
    the run folder (as its header said) it failed; its paths are now the run folder's own."""
    import shutil

    written = (stopped_run / "runs" / "u" / "config.yaml").read_text()
    assert "paths_relative_to_this_file: true" in written and "out_dir: .\n" in written
    assert str(stopped_run) not in written  # no path of this machine
    shutil.copytree(stopped_run / "runs", tmp_path / "runs")  # continued here
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    monkeypatch.chdir(tmp_path / "runs" / "u")
    assert train_main(["--config", "config.yaml", "--no-progress"]) == 0  # resumes the run
    assert "finished after 2 epochs" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "runs" / "u").iterdir() if p.is_dir()) == []
    monkeypatch.chdir(tmp_path)
    assert train_main(["--config", "runs/u/config.yaml", "--no-progress"]) == 0  # from afar
    assert "finished after 2 epochs" in capsys.readouterr().out


@pytest.mark.slow
def test_a_config_without_a_model_says_it_trains_the_default_one(patch_root, tmp_path, capsys):
    """A walk: a config YAML without ``model:`` trained CroFuseNet and no line named it."""
    import yaml

    from cli.train import train_parser

    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({
        "data": str(patch_root), "out_dir": str(tmp_path / "cfn"), "epochs": 1,
        "max_batches": 1, "batch_size": 2, "num_workers": 0, "device": "cpu",
        "precision": "fp32", "channels_last": "off", "progress": False,
        "model_kwargs": TINY}))  # CroFuseNet at its full widths took ~8 s to say its name
    assert train_main(["--config", str(config)]) == 0
    assert ("training crofusenet, the default model (--model, or model: in a --config file, "
            "chooses another)") in capsys.readouterr().err
    assert train_main(_argv(patch_root, tmp_path / "unet", "--max-batches", "1", "--epochs",
                            "1")) == 0  # one epoch names its model as two do
    err = capsys.readouterr().err
    assert "training unet\n" in err and "default model" not in err
    assert "default: crofusenet" in " ".join(train_parser().format_help().split())
    # a walk: --model crofusenet, typed, was told it is the default and how to choose another
    assert train_main(_argv(patch_root, tmp_path / "chosen", "--max-batches", "1", "--epochs",
                            "1", "--model", "crofusenet")) == 0
    err = capsys.readouterr().err
    assert "training crofusenet\n" in err and "default model" not in err


@pytest.mark.xdist_group("stopped_run")
def test_other_options_over_a_run_are_refused_before_any_model_is_built(patch_root, stopped_run,
                                                                         capsys):
    """A walk: ``--epochs 400`` over a 2-epoch run named the model, timed its precisions
    (~18 s), then refused; the record is compared first now, and nothing else is said."""
    out = stopped_run / "runs" / "u"  # read only: the refused command writes nothing
    capsys.readouterr()
    before = (out / "checkpoint.pt").stat().st_mtime_ns
    assert train_main(_argv(patch_root, out, "--epochs", "3", "--precision", "auto", "-v")) == 2
    err = capsys.readouterr().err
    assert "already holds a run made with other options (epochs: 2 there, 3 now" in err
    assert "training unet" not in err  # the line of a run that starts
    assert "autotune" not in err and "data: " not in err  # nothing read, built or measured
    assert (out / "checkpoint.pt").stat().st_mtime_ns == before


@pytest.mark.parametrize("extra", [(), ("--members", "2"), ("--filter-noisy", "0.2"),
                                   ("--data", "SECOND")],
                         ids=["one", "members", "filter-noisy", "two-datasets"])
def test_a_second_training_into_a_held_run_folder_is_refused_and_writes_nothing(
        patch_root, tmp_path, capsys, extra):
    """Two trainings with one --out wrote checkpoint.pt, model.pt and metrics.jsonl into one
    folder, interleaved: the loser's files were half of each run. Now the second is refused."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "theirs.txt").write_text("the other run's file")
    if extra == ("--data", "SECOND"):  # two roots: merged under --out/datasets first
        extra = ("--data", str(patch_root), str(patch_root))
    argv = _argv(patch_root, out, "--max-iterations", "1", *extra)
    with held_elsewhere(out) as holder:
        before = files_under(out)  # the other run's file and its lock
        assert train_main(argv) == 1
        err = capsys.readouterr().err
        assert files_under(out) == before  # nothing written, nothing overwritten
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"pid {holder.pid}" in lines[0], err
    assert "in use by another isamap run" in lines[0] and "Traceback" not in err
    if not extra:  # the holder gone, the same command runs (and leaves no lock file)
        assert train_main(argv) == 0
        assert (out / "model.pt").is_file() and not (out / ".isamap.lock").exists()


def test_only_rank_0_of_a_torchrun_holds_the_run_folder(tmp_path, monkeypatch):
    """Every rank runs the same command: the others would be refused by rank 0's lock."""
    from cli.train import _run_folder_held

    with held_elsewhere(tmp_path):
        monkeypatch.setenv("RANK", "1")
        with _run_folder_held(str(tmp_path)):
            pass
        monkeypatch.setenv("RANK", "0")
        with pytest.raises(OutputLockedError), _run_folder_held(str(tmp_path)):
            pass
