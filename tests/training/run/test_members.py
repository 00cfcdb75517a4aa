"""``isamap-train --members K``: K trainings joined in one model file mapping their mean."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import rasterio
import torch

from cli.predict import predict_main
from cli.train import train_main
from core.errors import ModelError
from tests.support.rasters import write_patch_dataset
from training.calibration.temperature import describe
from training.config import TrainConfig
from training.modelfile import load_model_file, read_model_file
from training.models import create_model
from training.models.members import MemberMean
from training.run.member_join import joined_meta

TINY = {"widths": [4, 8]}
SIZE = 32

# the module's dataset, joined run and single run are built once, on one worker
pytestmark = pytest.mark.xdist_group("members")


def test_the_mean_of_members_is_the_mean_of_their_calibrated_probabilities():
    torch.manual_seed(0)
    nets = [create_model("unet", 4, 2, **TINY).eval() for _ in range(2)]
    joined = MemberMean(nets, [1.5, 0.8]).eval()
    x = torch.randn(2, 4, SIZE, SIZE)
    with torch.no_grad():
        got = torch.softmax(joined(x), dim=1)
        want = (torch.softmax(nets[0](x) / 1.5, 1) + torch.softmax(nets[1](x) / 0.8, 1)) / 2
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert joined.stride == nets[0].stride and "members=2" in repr(joined)
    built = create_model("unet", 4, 2, members=3, **TINY)
    assert isinstance(built, MemberMean) and len(built.members) == 3
    assert not isinstance(create_model("unet", 4, 2, members=1, **TINY), MemberMean)
    for bad in (0, 1.5, True):
        with pytest.raises(ModelError, match="members must be a whole number"):
            create_model("unet", 4, 2, members=bad, **TINY)
    with pytest.raises(ModelError, match="one positive temperature per member"):
        MemberMean(nets, [1.0, 0.0])


def test_spread_views_give_member_i_the_i_mod_4th_mirror_image_once(tmp_path):
    """``member_views``: member i maps view ``i mod 4`` (as is, then ``FLIPS``), mirrored
    back, one pass each; its own flips are off. A file recording no ``member_views`` (made
    before it existed) is rebuilt with every member mapping all four views, as it was."""
    from training.modelfile import ModelMeta, save_model_file
    from training.models.blocks import FLIPS, flip_mean

    bands = ["B2", "B3", "B4", "B8"]
    kw = {**TINY, "input_norm": "none", "bands": bands, "flips": True}
    torch.manual_seed(0)
    spread = create_model("unet-s2", 4, 2, members=5, member_views=True, **kw).eval()
    assert spread.views and "views=True" in repr(spread)
    assert not any(m.flips for m in spread.members)
    temps = spread.temperatures.tolist()
    x = torch.randn(1, 4, SIZE, SIZE)
    views = [(), *FLIPS]
    with torch.no_grad():
        probs = [torch.softmax((m(x.flip(views[i % 4])).flip(views[i % 4]) if i % 4 else m(x))
                               / temps[i], 1) for i, m in enumerate(spread.members)]
        torch.testing.assert_close(torch.softmax(spread(x), 1), sum(probs) / 5,
                                   rtol=1e-5, atol=1e-6)
        # turned round, the spread mean is another mean (each member sees another view)
        assert not torch.allclose(spread(x.flip(3)), spread(x).flip(3), atol=1e-4)
    meta = ModelMeta("unet-s2", 4, 2, tuple(bands), (0.0,) * 4, (1.0,) * 4,
                     model_kwargs={**kw, "members": 5}, norm="scene")
    old, _ = load_model_file(save_model_file(tmp_path / "old.pt", spread, meta))
    assert not old.views and all(m.flips for m in old.members)
    with torch.no_grad():
        each = [torch.softmax(flip_mean(m.__class__._logits.__get__(m), x), 1)
                for m in old.members]
        torch.testing.assert_close(torch.softmax(old(x), 1), sum(each) / 5, rtol=1e-5,
                                   atol=1e-6)
    again, again_meta = load_model_file(save_model_file(
        tmp_path / "new.pt", spread, ModelMeta(**{**meta.__dict__, "model_kwargs": {
            **kw, "members": 5, "member_views": True}})))
    with torch.no_grad():
        assert torch.equal(again.eval()(x), spread(x))
    assert again_meta.model_kwargs["member_views"] is True
    assert not isinstance(create_model("unet-s2", 4, 2, member_views=True, **kw), MemberMean)
    with pytest.raises(ModelError, match="member_views must be true or false"):
        create_model("unet-s2", 4, 2, members=2, member_views="yes", **kw)


@pytest.mark.parametrize(("name", "channels", "kwargs"), [
    ("crofusenet", 7, {"bands": ["VH", "B2", "VV", "B3", "B4", "B8", "s2_clear_count"],
                       "widths": [4, 8, 16, 32, 64]}),
    ("srseg", 3, {"scale": 2, "widths": [4, 8], "stage_widths": [4]}),
])
def test_members_whose_output_is_a_mapping_are_read_by_their_main_prediction(name, channels,
                                                                            kwargs):
    """CroFuseNet and srseg return a dict: the mean reads its ``out``, as predict does."""
    torch.manual_seed(0)
    joined = create_model(name, channels, 2, members=2, **kwargs).eval()
    x = torch.randn(1, channels, SIZE, SIZE)
    with torch.no_grad():
        got = torch.softmax(joined(x), dim=1)
        want = sum(torch.softmax(m(x)["out"], 1) for m in joined.members) / 2
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def _argv(root, run, *extra: str) -> list[str]:
    return ["--data", str(root), "--out", str(run), "--model", "unet",
            "--model-kwargs", json.dumps(TINY), "--members", "2", "--max-iterations", "2",
            "--batch-size", "2", "--workers", "0", "--device", "cpu", "--precision", "fp32",
            "--channels-last", "off", "--no-progress", "-q", *extra]


def _train(root, run, *extra: str) -> int:
    return train_main(_argv(root, run, *extra))


def _probability(prefix) -> np.ndarray:
    with rasterio.open(f"{prefix}_prob.tif") as src:
        return src.read(1).astype(np.float64) / float(src.tags()["probability_scale"])


@pytest.fixture(scope="module")
def patches(tmp_path_factory):
    """The 8-patch dataset every test here reads (training writes nothing into it)."""
    return write_patch_dataset(tmp_path_factory.mktemp("members-data") / "patches", n=8,
                               size=SIZE)


@pytest.fixture(scope="module")
def joined_run(patches, tmp_path_factory):
    run = tmp_path_factory.mktemp("members") / "run"
    assert _train(patches, run) == 0
    return patches, run


@pytest.fixture(scope="module")
def single_run(patches, tmp_path_factory):
    """A plain unet's run of one training (``--members 1``), which the tests only read or
    refuse to train over."""
    single = tmp_path_factory.mktemp("single") / "single"
    assert _train(patches, single, "--members", "1") == 0
    return single


def test_each_member_is_its_own_run_and_the_file_joins_them(joined_run, capsys):
    root, run = joined_run
    metas = [read_model_file(run / f"member{i}" / "model.pt")[0] for i in range(2)]
    assert [m.extra["config"]["seed"] for m in metas] == [0, 1]
    model, meta = load_model_file(run / "model.pt")
    assert isinstance(model, MemberMean) and meta.model_kwargs["members"] == 2
    assert [m["seed"] for m in meta.extra["members"]] == [0, 1]
    assert model.temperatures.tolist() == pytest.approx([m.temperature for m in metas])
    assert describe(meta.calibration).startswith("the mean of 2 trainings' probabilities")
    # each member's is applied inside the mean; the mean's own is the file's, applied to it
    assert meta.temperature == meta.calibration["joined"]["temperature"]

    stamps = [(run / f"member{i}" / "model.pt").stat().st_mtime_ns for i in range(2)]
    joined, before = (run / "model.pt").stat().st_mtime_ns, (run / "model.pt").read_bytes()
    assert _train(root, run) == 0  # the same command again: nothing is trained again
    assert [(run / f"member{i}" / "model.pt").stat().st_mtime_ns for i in range(2)] == stamps
    # nor is the mean's temperature fitted again: the joined file is kept, byte for byte
    assert (run / "model.pt").stat().st_mtime_ns == joined
    assert (run / "model.pt").read_bytes() == before
    assert "model (the mean of 2 members)" in capsys.readouterr().out


def test_a_joined_file_of_other_members_or_damaged_is_written_anew(joined_run, tmp_path):
    """The joined file is kept only while it joins the same members: a member's weights
    changed (here, saved again with one weight moved) or a damaged joined file make the
    command join and fit again."""
    from training.modelfile import save_model_file

    root, run = joined_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    net, meta = load_model_file(copy / "member1" / "model.pt")
    with torch.no_grad():
        next(net.parameters()).add_(0.01)
    save_model_file(copy / "member1" / "model.pt", net, meta)
    before = (copy / "model.pt").read_bytes()
    assert _train(root, copy) == 0
    model, _ = load_model_file(copy / "model.pt")
    assert (copy / "model.pt").read_bytes() != before
    assert torch.equal(next(model.members[1].parameters()), next(net.parameters()))
    (copy / "model.pt").write_bytes(b"not a model file")
    assert _train(root, copy) == 0
    assert isinstance(load_model_file(copy / "model.pt")[0], MemberMean)


def test_the_joined_models_map_is_the_mean_of_the_members_maps(joined_run, tmp_path):
    """At the mean's own temperature, which the joined file records (fitted on the val split)."""
    root, run = joined_run
    meta = read_model_file(run / "model.pt")[0]
    t = meta.temperature
    assert meta.calibration["joined"]["temperature"] == t != 1.0
    (image,) = (root / "patches").rglob("r0_c6.tif")  # a test patch, unseen in training
    probs = []
    for name, model in (("joined", run / "model.pt"), ("m0", run / "member0" / "model.pt"),
                        ("m1", run / "member1" / "model.pt")):
        assert predict_main(["--model", str(model), "--input", str(image), "--out",
                             str(tmp_path / name), "--tile", str(SIZE), "--overlap", "0",
                             "--device", "cpu", "--precision", "fp32", "-q"]) == 0
        probs.append(_probability(tmp_path / name))
    joined, m0, m1 = probs
    # each map holds its probability rounded to the COG's steps: the mean of two rounded
    # maps is within one step of the rounded mean, which the temperature stretches by 1 / T
    # at most
    mean = np.clip((m0 + m1) / 2, 1e-4, 1 - 1e-4)  # its logit, at the mean's temperature
    want = 1 / (1 + np.exp((np.log1p(-mean) - np.log(mean)) / t))
    assert np.abs(joined - want).max() <= (1 / 250) * max(1.0, 1 / t) + 1 / 250 + 1e-9
    assert np.abs(joined - (m0 + m1) / 2).max() > 2 / 250  # the temperature moved it


def test_the_means_own_temperature_sharpens_or_softens_it_and_keeps_its_classes():
    """A joined file's calibration record carries the mean's temperature, which every
    prediction path applies to the joined output as to one network's logits: the mean's
    probabilities at that temperature, sharper below 1 and softer above, each pixel's class
    kept; it is checked as one training's is; a record without one applies 1."""
    from training.calibration.temperature import check_record, probabilities, temperature_of

    torch.manual_seed(0)
    nets = [create_model("unet", 4, 2, **TINY).eval() for _ in range(2)]
    plain = MemberMean(nets, [1.5, 0.8]).eval()
    x = torch.randn(2, 4, SIZE, SIZE)
    with torch.no_grad():
        out = plain(x)
    mean = probabilities(out)
    sharp, soft = probabilities(out, 0.5), probabilities(out, 2.0)
    torch.testing.assert_close(sharp, mean ** 2 / (mean ** 2).sum(dim=1, keepdim=True),
                               rtol=1e-4, atol=1e-6)  # p^(1/T), normalised
    torch.testing.assert_close(soft, mean.sqrt() / mean.sqrt().sum(dim=1, keepdim=True),
                               rtol=1e-4, atol=1e-6)
    assert torch.equal(sharp.argmax(1), mean.argmax(1))
    assert torch.equal(soft.argmax(1), mean.argmax(1))
    assert (soft - 0.5).abs().max() < (mean - 0.5).abs().max()
    record = {"method": "members", "temperatures": [1.5, 0.8]}
    assert temperature_of({**record, "temperature": 0.5}) == 0.5
    assert temperature_of(record) == 1.0
    with pytest.raises(ValueError, match="lies outside"):
        check_record({**record, "temperature": 1e30})



def test_members_that_differ_are_not_joined(joined_run):
    _, run = joined_run
    meta = read_model_file(run / "member0" / "model.pt")[0]
    other = dataclasses.replace(meta, norm_mean=tuple(v + 1 for v in meta.norm_mean))
    with pytest.raises(ModelError, match="differs from member 0 in norm_mean"):
        joined_meta([meta, other], TrainConfig.of(out_dir=str(run), members=2))


def test_members_trained_before_and_after_an_argument_was_added_are_joined():
    """A join resumed across a recipe change: members trained before ``member_views``
    existed record none, those trained after record ``false`` for the same network; they
    agree, and the joined file records what they read as. One that asks otherwise differs."""
    from training.modelfile import ModelMeta

    kw = {**TINY, "input_norm": "none", "flips": True}
    before = ModelMeta("unet-s2", 4, 2, ("B2", "B3", "B4", "B8"), (0.0,) * 4, (1.0,) * 4,
                       model_kwargs=kw, norm="scene")
    after = dataclasses.replace(before, model_kwargs={**kw, "member_views": False})
    cfg = TrainConfig.of(out_dir="run", members=2)
    joined = joined_meta([before, after], cfg)
    assert joined.model_kwargs == {**kw, "member_views": False, "members": 2}
    spread = dataclasses.replace(before, model_kwargs={**kw, "member_views": True})
    with pytest.raises(ModelError, match="differs from member 0 in model_kwargs"):
        joined_meta([before, spread], cfg)


@pytest.mark.parametrize(("extra", "message"), [
    (["--members", "0"], "--members must be >= 1, got 0"),
    (["--model-kwargs", '{"members": 2}'], "--model-kwargs cannot set members"),
])
def test_a_wrong_member_count_is_one_line_and_exit_2(patches, tmp_path, capsys, extra,
                                                     message):
    assert train_main(["--data", str(patches), "--out", str(tmp_path / "run"), "--model", "unet",
                       "--no-progress", "-q", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run" / "model.pt").exists()


def test_a_members_run_and_a_single_run_never_replace_each_others_model(joined_run,
                                                                        single_run, capsys):
    root, run = joined_run
    before = (run / "model.pt").read_bytes()
    assert train_main(["--data", str(root), "--out", str(run), "--model", "unet",
                       "--no-progress", "-q"]) == 2
    assert "holds a run of several trainings" in capsys.readouterr().err
    assert train_main(["--out", str(run), "--resume", "-q"]) == 2
    assert "each member resumes where it stopped" in capsys.readouterr().err
    single = single_run  # a single unet training, trained with exit 0 by the fixture
    kept = (single / "model.pt").read_bytes()
    assert _train(root, single) == 2
    assert "holds a run of one training" in capsys.readouterr().err
    assert (single / "model.pt").read_bytes() == kept and (run / "model.pt").read_bytes() == \
        before


def test_a_members_run_is_refused_where_the_recipe_filters_noisy_samples(patches, tmp_path,
                                                                         capsys):
    """hrnet-coarse's recipe filters noisy samples (two stages): refused before any merge."""
    roots = [patches, write_patch_dataset(tmp_path / "b", n=8, size=SIZE)]
    assert train_main(["--data", *map(str, roots), "--out", str(tmp_path / "run"),
                       "--model", "hrnet-coarse", "--members", "2", "--no-progress",
                       "-q"]) == 2
    assert "hrnet-coarse's recipe filters noisy samples" in capsys.readouterr().err
    assert not (tmp_path / "run" / "datasets").exists()


@pytest.mark.slow
def test_stop_after_trains_one_members_slice_per_run_and_the_file_comes_last(patches,
                                                                             tmp_path):
    root = patches
    run = tmp_path / "run"
    sliced = ["--max-iterations", "4", "--stop-after", "1"]  # 2 epochs of 2 batches a member
    rows = []
    for _ in range(4):
        assert _train(root, run, *sliced) == 0
        rows.append([_epochs(run / f"member{i}") for i in range(2)] + [
            (run / "model.pt").exists()])
    assert rows == [[1, 0, False], [2, 0, False], [2, 1, False], [2, 2, True]]


def test_the_members_estimate_is_the_first_members_time_for_each_after_it():
    from training.run.history import members_estimate

    assert members_estimate(1, 9, 8, 40.0) == ("member 1 of 9 took 40 s; the 8 after it not yet "
                                               "started, trained alike, take about 5 min more")


def _epochs(folder) -> int:
    history = folder / "metrics.jsonl"
    return len(history.read_text().splitlines()) if history.exists() else 0


def test_a_member_folder_of_other_options_is_refused_before_any_member_trains(joined_run,
                                                                            tmp_path,
                                                                            capsys):
    root, run = joined_run
    other = tmp_path / "other"  # a finished run of these options: the module's, copied
    shutil.copytree(run, other)
    stamp = (other / "member0" / "model.pt").stat().st_mtime_ns
    assert _train(root, other, "--lr", "0.5") == 2
    err = capsys.readouterr().err
    assert "member 0) holds a run of other options (lr:" in err and "Traceback" not in err
    assert (other / "member0" / "model.pt").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_evaluate_says_a_joined_models_probabilities_are_scored_as_predicted(joined_run,
                                                                           tmp_path):
    """Its members' temperatures are inside the network: no 'uncalibrated' figure of it."""
    from cli.evaluate import evaluate_main

    root, run = joined_run
    assert evaluate_main(["--model", str(run / "model.pt"), "--data", str(root), "--out",
                          str(tmp_path / "ev"), "--points", "0", "--precision", "fp32",
                          "--no-progress", "-q"]) == 0
    text = (tmp_path / "ev" / "metrics.txt").read_text()
    assert "at the members' mean at temperature 1 (each member's own inside it), " in text
    assert f"at temperature {read_model_file(run / 'model.pt')[0].temperature:.3f} " \
           "(as predicted)" in text
    assert "uncalibrated" not in text


@pytest.mark.slow
def test_unet_s2_trains_its_recipes_nine_members_unless_the_command_says(patches, single_run,
                                                                         tmp_path, capsys,
                                                                         caplog):
    """``isamap-train --model unet-s2`` joins nine trainings (seeds 0-8) that spread the flips
    over them; ``--members 1`` trains once; a configuration built in Python trains once unless
    told; an earlier run of one training is not replaced by the default's nine, and the
    message says how to go on.

    The notebooks' form, on the same nine trainings (one training of nine shared by both
    claims, formerly two tests): ``--resume`` with every option on a folder with no run starts
    the recipe's nine trainings; the same again, and the same without ``--resume`` (the
    default's nine, which a folder of other members would refuse), goes on with them (a
    finished run trains nothing); ``--resume`` alone on such a folder says to run the command
    again; fewer members than the folder holds are refused.

    The first member trained tells how long the others take (formerly a test of its own,
    training three members of a plain unet three times over): once, after the first member
    trained from its start; a run whose members are all trained already tells nothing; with
    two to train again, the first tells of the one after it, not of those trained."""
    from training.run.members import recipe_members

    root = patches
    args = ["--data", str(root), "--model", "unet-s2", "--model-kwargs", json.dumps(TINY),
            "--max-iterations", "1", "--batch-size", "2", "--workers", "0", "--device", "cpu",
            "--precision", "fp32", "--channels-last", "off", "--no-progress", "-q"]
    run = tmp_path / "nine"
    resume = [*args, "--out", str(run), "--resume"]
    told_argv = [a for a in resume if a != "-q"]  # the members' estimate is INFO
    with caplog.at_level("INFO", logger="training.run.members"):
        assert train_main(told_argv) == 0  # a folder with no run: --resume starts the nine
    told = [r.getMessage() for r in caplog.records if "trained alike, take about" in r.getMessage()]
    assert len(told) == 1 and told[0].startswith("member 1 of 9 took ")
    assert "; the 8 after it not yet started, trained alike, take about " in told[0]
    model, meta = load_model_file(run / "model.pt")
    assert meta.model_kwargs["members"] == 9 and meta.model_kwargs["member_views"] is True
    assert [m["seed"] for m in meta.extra["members"]] == list(range(9))
    assert isinstance(model, MemberMean) and model.views
    assert not any(m.flips for m in model.members)  # one pass each, the mean turns them
    member = load_model_file(run / "member0" / "model.pt")[1]
    assert member.model_kwargs["flips"] is False  # validated and calibrated on one view
    stamps = [(run / f"member{i}" / "model.pt").stat().st_mtime_ns for i in range(9)]
    caplog.clear()
    with caplog.at_level("INFO", logger="training.run.members"):
        assert train_main(told_argv) == 0  # the same command again: every member reused
    assert "member 9 of 9" in caplog.text and "trained alike, take about" not in caplog.text
    assert [(run / f"member{i}" / "model.pt").stat().st_mtime_ns for i in range(9)] == stamps
    assert train_main([*args, "--out", str(run)]) == 0  # without --resume: the nine again
    assert [(run / f"member{i}" / "model.pt").stat().st_mtime_ns for i in range(9)] == stamps
    capsys.readouterr()
    assert train_main(["--out", str(run), "--resume", "-q"]) == 2
    assert "run the command that started it again" in capsys.readouterr().err
    kept = (run / "model.pt").read_bytes()
    assert train_main([*resume, "--members", "2"]) == 2  # fewer than the folder holds
    assert "holds a run of 9 trainings" in capsys.readouterr().err
    assert (run / "model.pt").read_bytes() == kept
    one = tmp_path / "one"
    assert train_main([*args, "--out", str(one), "--members", "1"]) == 0
    assert "members" not in load_model_file(one / "model.pt")[1].model_kwargs
    assert not (one / "member0").exists()
    kept = (one / "model.pt").read_bytes()
    assert train_main([*args, "--out", str(one)]) == 2
    assert "--members 1 to train once there" in capsys.readouterr().err
    assert (one / "model.pt").read_bytes() == kept
    # a plain unet's folder: --members 1 would be refused too (another model), so not advised
    plain = single_run  # one unet training on the same data (exit 0, in the fixture)
    assert train_main([*args, "--out", str(plain)]) == 2
    err = capsys.readouterr().err
    assert "(checkpoint.pt) of --model unet;" in err and "--members 1" not in err
    assert TrainConfig.of(model="unet-s2").loop.members == 1
    assert train_main([*args, "--out", str(tmp_path / "f"), "--filter-noisy", "0.2"]) == 2
    assert "--members 9 (given, or unet-s2's recipe's when none is)" in capsys.readouterr().err
    assert not (tmp_path / "f").exists()
    assert (recipe_members("unet-s2"), recipe_members("unet-s2-window"), recipe_members("unet"),
            recipe_members("not-a-model")) == (9, 1, 1, 1)
    for i in (0, 1):  # two to train again: the first tells the one after it, not the others
        shutil.rmtree(run / f"member{i}")
    caplog.clear()
    with caplog.at_level("INFO", logger="training.run.members"):
        assert train_main(told_argv) == 0
    told = [r.getMessage() for r in caplog.records if "trained alike, take about" in r.getMessage()]
    assert len(told) == 1 and told[0].startswith("member 1 of 9 took ")
    assert "; the 1 after it not yet started" in told[0]


class _Pooled(torch.nn.Module):
    """A network whose output is one row of class scores per window, not per pixel."""

    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.mean(dim=(2, 3)))


def test_spread_views_refuse_a_member_whose_output_is_not_a_per_pixel_map():
    joined = MemberMean([_Pooled(), _Pooled()], views=True)
    with pytest.raises(ModelError, match="member 1 gives an output of shape \\(1, 2\\), not a "
                                         "per-pixel map"):
        joined(torch.randn(1, 4, 8, 8))
    assert MemberMean([_Pooled(), _Pooled()])(torch.randn(1, 4, 8, 8)).shape == (1, 2)


@pytest.mark.parametrize("members, kwargs, warned", [
    (3, {}, True), (4, {}, False), (3, {"member_views": False}, False),
    (2, {"flips": False}, False)])
def test_fewer_than_four_members_spreading_the_views_are_told_what_they_leave_out(
        members, kwargs, warned, caplog):
    from training.run.members import check_members

    cfg = TrainConfig.of(model="unet-s2", members=members, model_kwargs=kwargs)
    with caplog.at_level("WARNING", logger="training.run.members"):
        check_members(cfg)
    said = f"--members {members} with member_views: the joined model maps each window " \
           f"{members} of the 4 ways"
    assert (said in caplog.text) is warned
