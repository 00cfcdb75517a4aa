"""Weight averaging (``--ema``): the kept weights are the moving average, off changes nothing."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Subset

from cli.train import train_main
from core.errors import ConfigError
from training.config import TrainConfig, apply_recipe
from training.data import PatchDataset, compute_norm_stats
from training.losses import build_loss
from training.modelfile import ModelMeta, load_model_file, read_model_file
from training.models import create_model
from training.pruning import fine_tune_config
from training.run.averaging import ema_decay
from training.run.patch_training import train
from training.run.trainer import Trainer

TINY = {"widths": [4, 8, 16, 32, 64]}


def _cfg(root, out, **over) -> TrainConfig:
    base = dict(data=str(root), out_dir=str(out), model="unet", model_kwargs=TINY, epochs=3,
                batch_size=2, lr=1e-2, num_workers=0, precision="fp32", channels_last="off",
                progress=False, device="cpu")
    return TrainConfig.of(**{**base, **over})


def _fit(patch_root, out, iterations: int, ema: float = 0.0, validate: bool = False):
    """A tiny U-Net (with batch norm) trained ``iterations`` steps at a constant rate."""
    raw = PatchDataset(patch_root, "train")
    norm = compute_norm_stats(raw)
    ds = Subset(PatchDataset(patch_root, "train", norm=norm), [0, 1, 2, 3])
    torch.manual_seed(0)
    model = create_model("unet", 6, **TINY)
    meta = ModelMeta("unet", 6, 2, raw.bands, norm.mean, norm.std, model_kwargs=TINY)
    cfg = _cfg(patch_root, out, max_iterations=iterations, poly_power=0.0, ema=ema,
               patience=5)
    trainer = Trainer(cfg, model, build_loss("ce"), ds, ds if validate else None, meta)
    return trainer.fit(), trainer, ds


@pytest.fixture(scope="module")
def two_steps(patch_root, tmp_path_factory):
    """Two steps without averaging (the default), which two tests read: the run is the
    same in both (same seed, one thread)."""
    return _fit(patch_root, tmp_path_factory.mktemp("averaging") / "two", 2)


@pytest.mark.slow
@pytest.mark.xdist_group("averaging_two_steps")
def test_the_kept_weights_are_the_hand_computed_average_of_two_steps(patch_root, two_steps,
                                                                     tmp_path):
    """avg = w1 after the first step, d * w1 + (1 - d) * w2 after the second; batch-norm
    statistics averaged alike, the batch count copied; validation scores the average."""
    w1 = read_model_file(_fit(patch_root, tmp_path / "one", 1)[0].model_path)[1]
    w2 = read_model_file(two_steps[0].model_path)[1]
    res, trainer, ds = _fit(patch_root, tmp_path / "ema", 2, ema=3.0, validate=True)
    avg = read_model_file(res.model_path)[1]
    d = ema_decay(3.0)
    assert d == pytest.approx(0.5 ** (1 / 3))
    assert not torch.equal(w1["head.weight"], w2["head.weight"])  # two different steps
    stats = [k for k in avg if k.endswith("running_var")]
    assert stats and all(not torch.equal(w1[k], w2[k]) for k in stats)
    for key, value in avg.items():
        if key.endswith("num_batches_tracked"):
            assert int(value) == 2, key
        else:
            torch.testing.assert_close(value, d * w1[key] + (1 - d) * w2[key], msg=key)
    # the validation row and the best-epoch choice are the average's
    loaded, _ = load_model_file(res.model_path)
    loaded.eval()
    with torch.no_grad():
        x = torch.stack([ds[i]["image"] for i in range(len(ds))])
        y = torch.stack([ds[i]["label"] for i in range(len(ds))])
        loss = float(build_loss("ce")(loaded(x), y))
    assert trainer.history[-1]["val_loss"] == pytest.approx(loss, rel=1e-5)
    assert res.best_epoch == 1


@pytest.mark.xdist_group("averaging_two_steps")
def test_off_by_default_keeps_the_last_iterate_and_no_average(two_steps):
    assert TrainConfig().loop.ema is None  # the recipe's: 0 but for unet-s2's
    assert apply_recipe(TrainConfig.of(model="unet")).loop.ema == 0
    assert apply_recipe(TrainConfig.of(model="unet-s2")).loop.ema == 10
    res, trainer, _ = two_steps
    assert trainer.average is None
    ck = torch.load(res.checkpoint_path, weights_only=True)
    assert "average" not in ck
    kept = read_model_file(res.model_path)[1]
    assert all(torch.equal(kept[k], ck["model"][k]) for k in ck["model"])


def test_a_resumed_run_continues_the_average_bit_identically(patch_root, tmp_path):
    full = train(_cfg(patch_root, tmp_path / "a", ema=4.0))
    part = train(_cfg(patch_root, tmp_path / "b", ema=4.0, stop_after=1))
    assert not part.finished
    resumed = train(_cfg(patch_root, tmp_path / "b", ema=4.0, resume=True))
    assert resumed.finished
    a = torch.load(full.checkpoint_path, weights_only=True)
    b = torch.load(resumed.checkpoint_path, weights_only=True)
    assert int(a["average"]["n_averaged"]) == int(b["average"]["n_averaged"]) > 3
    assert all(torch.equal(a["average"][k], b["average"][k]) for k in a["average"])
    ma, mb = read_model_file(full.model_path), read_model_file(resumed.model_path)
    assert all(torch.equal(ma[1][k], mb[1][k]) for k in ma[1])
    assert ma[0].extra["config"]["ema"] == 4.0  # recorded like every knob
    with pytest.raises(ConfigError, match=r"ema: 4\.0 there, 0\.0 now"):
        train(_cfg(patch_root, tmp_path / "b"))


def test_a_decay_given_for_the_half_life_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert train_main(["--data", "x", "--ema", "0.999"]) == 2
    err = capsys.readouterr().err
    assert "--ema is a half-life in training iterations" in err
    assert len(err.strip().splitlines()) == 1 and list(tmp_path.iterdir()) == []


def test_pruning_fine_tunes_an_averaged_model_without_the_average(tmp_path):
    """FPGM zeroes filters in the weights after every epoch: an average would keep them."""
    meta = ModelMeta("unet", 6, 2, ("B2", "B3", "B4", "B8", "VV", "VH"), (0.0,) * 6,
                     (1.0,) * 6, model_kwargs=TINY, extra={"config": {"ema": 20.0, "lr": 0.01}})
    cfg = fine_tune_config(meta, "data", tmp_path)
    assert cfg.loop.ema == 0 and cfg.optim.lr == 0.01
