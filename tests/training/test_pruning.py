"""FPGM pruning: the geometric-median choice, the compact network, isamap-prune end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cli.prune import prune_main
from core.errors import ModelError
from training.modelfile import ModelMeta, load_model_file, save_model_file
from training.models import create_model
from training.models.blocks import BasicBlock, fold_batchnorm
from training.models.compact import (
    PrunedBasicBlock,
    PrunedBottleneck,
    PrunedStream,
    add_into_kept,
    into_kept,
)
from training.models.hrnet import HRNet
from training.pruning import (
    compact_model,
    flop_count,
    fpgm_step,
    geometric_median_order,
    n_pruned,
    parameter_count,
    prunable_layers,
    zeroed_filters,
)

# two blocks per branch: the first one's residual output is pruned, the second one's is not
TINY = {"width": 5, "stem_width": 10, "stage1_width": 5, "modules": (1, 2, 1), "blocks": 2}
NAIP = ("Red", "Green", "Blue", "NearInfrared")


def trained_like(seed: int = 0, **kw) -> nn.Module:
    """A tiny hrnet whose norms hold non-trivial statistics and affine parameters."""
    torch.manual_seed(seed)
    net = create_model("hrnet", 4, 7, **{**TINY, **kw}).train()
    with torch.no_grad():
        for _ in range(2):
            net(torch.randn(2, 4, 48, 48))
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d | nn.InstanceNorm2d) and m.weight is not None:
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return net.eval()


def meta_for(kw: dict) -> ModelMeta:
    return ModelMeta("hrnet", 4, 7, NAIP, (0.0,) * 4, (1.0,) * 4, "landcover",
                     ("cropland", "woodland", "grassland", "water", "impervious", "bare_land",
                      "snow_ice"), model_kwargs={**TINY, **kw})


def test_filters_nearest_the_geometric_median_go_first():
    # five 1-value filters 0, 1, 2, 3, 10: summed distances 16, 13, 12, 13, 34
    weight = torch.tensor([0.0, 1.0, 2.0, 3.0, 10.0]).view(5, 1, 1, 1)
    assert geometric_median_order(weight).tolist() == [2, 1, 3, 0, 4]  # ties: index order
    assert [n_pruned(n, 0.4) for n in (1, 2, 5, 10, 18, 64)] == [0, 0, 2, 4, 7, 25]


def test_every_convolution_is_pruned_but_the_ones_a_fusion_reads_and_the_classifier():
    """Paper 3.4: all layers "except for the latest layers before the multi-resolution
    fusion block": the last block of each branch in every module keeps its residual output
    whole; every stage-1 bottleneck, the shortcut and every transition is pruned."""
    net = create_model("hrnet", 4, 7, **TINY)
    residual = {layer.conv: layer.residual_block for layer in prunable_layers(net)
                if layer.residual_block}
    assert set(residual) == {f"layer1.{b}.conv3" for b in range(4)} | {
        f"stage{s}.modules_.{m}.branches.{b}.0.conv2"
        for s, modules in ((2, 1), (3, 2), (4, 1)) for m in range(modules) for b in range(s)}
    assert all(block == conv.rsplit(".", 1)[0] for conv, block in residual.items())
    streams = {layer.conv: layer.stream for layer in prunable_layers(net) if layer.stream}
    assert streams == {"layer1.0.shortcut.0": "layer1.0.shortcut",
                       "stage2.transition.layers.0.0": "stage2.transition.layers.0",
                       "stage2.transition.layers.1.0": "stage2.transition.layers.1",
                       "stage3.transition.layers.2.0": "stage3.transition.layers.2",
                       "stage4.transition.layers.3.0": "stage4.transition.layers.3"}
    assert all(not layer.consumers for layer in prunable_layers(net) if layer.writes_into)
    # the default network: 4 stage-1 bottlenecks and 3 of the 4 blocks of each of the
    # 2 + 4 * 3 + 3 * 4 module branches; 4 transition convolutions and the shortcut
    default = HRNet(4, 7).prunable_layers()
    assert sum(1 for layer in default if layer.residual_block) == 4 + 3 * (2 + 12 + 12)
    assert sum(1 for layer in default if layer.stream) == 5


def test_a_pruned_stream_fills_the_kept_channels_and_zeros_the_others():
    for layout in (torch.contiguous_format, torch.channels_last):
        values = torch.randn(2, 3, 5, 4).contiguous(memory_format=layout).requires_grad_()
        kept = torch.tensor([1, 4, 5])
        out = into_kept(values, kept, 6)
        assert out.shape == (2, 6, 5, 4) and out.is_contiguous(memory_format=layout)
        assert torch.equal(out[:, kept], values) and out[:, [0, 2, 3]].eq(0).all()
        out.sum().backward()  # training runs through it
        assert torch.equal(values.grad, torch.ones_like(values))


@pytest.mark.slow
@pytest.mark.parametrize("stem_norm", ["instance", "batch"])
def test_compact_model_equals_the_masked_one_with_fewer_channels(stem_norm, tmp_path):
    net = trained_like(stem_norm=stem_norm)
    widths = {layer.conv: net.get_submodule(layer.conv).out_channels
              for layer in prunable_layers(net)}
    others = {n: m.out_channels for n, m in net.named_modules()
              if isinstance(m, nn.Conv2d) and n not in widths}
    chosen = fpgm_step(net, 0.4)
    assert {k: len(v) for k, v in chosen.items()} == {k: n_pruned(n, 0.4)
                                                      for k, n in widths.items()}
    assert zeroed_filters(net) == chosen
    small, meta = compact_model(net, meta_for({"stem_norm": stem_norm}))
    # genuinely smaller: every prunable conv lost floor(40 %) of its filters, the rest kept
    for name, n in widths.items():
        assert small.get_submodule(name).out_channels == n - n_pruned(n, 0.4), name
        assert small.get_submodule(name).weight.shape[0] == n - n_pruned(n, 0.4)
    for name, n in others.items():
        assert small.get_submodule(name).out_channels == n, name
    assert small.stem.conv1.out_channels == 6 and small.stem.conv2[0].in_channels == 6
    # a pruned residual output writes into the stream channels whose filters survived;
    # the blocks a fusion reads are whole
    first = small.stage3.modules_[1].branches[2][0]
    assert isinstance(first, PrunedBasicBlock)
    assert first.kept.tolist() == sorted(set(range(20)) - set(
        chosen["stage3.modules_.1.branches.2.0.conv2"]))
    assert all(isinstance(b, PrunedBottleneck) for b in small.layer1)
    last_blocks = [branch[-1] for s in (small.stage2, small.stage3, small.stage4)
                   for m in s.modules_ for branch in m.branches]
    assert all(type(b) is BasicBlock for b in last_blocks)
    # a transition and the shortcut write their surviving filters into the kept channels
    assert isinstance(small.layer1[0].shortcut, PrunedStream)
    start = small.stage3.transition.layers[2]
    assert isinstance(start, PrunedStream) and start.width == 20
    assert start.kept.tolist() == sorted(set(range(20)) - set(
        chosen["stage3.transition.layers.2.0"]))
    assert parameter_count(small) < 0.7 * parameter_count(net)
    assert flop_count(small, 4, 64) < 0.65 * flop_count(net, 4, 64)
    x = torch.randn(2, 4, 56, 40)
    with torch.no_grad():
        masked, compact = net(x), small(x)  # logits of tens: float rounding is ~1e-4
        torch.testing.assert_close(compact, masked, rtol=1e-4, atol=1e-3)
        # the same with batch norms folded, and channels last (the scatter along the last
        # dimension, the widened stage-1 convolution)
        torch.testing.assert_close(fold_batchnorm(small)(x), masked, rtol=1e-4, atol=1e-3)
        last = torch.channels_last
        torch.testing.assert_close(
            fold_batchnorm(small).to(memory_format=last)(x.contiguous(memory_format=last)),
            masked, rtol=1e-4, atol=1e-3)
        torch.testing.assert_close(small.to(memory_format=last)(x.contiguous(
            memory_format=last)), masked, rtol=1e-4, atol=1e-3)
    # a normal model file: rebuilt through the registry from its recorded channels
    path = save_model_file(tmp_path / "pruned.pt", small, meta)
    loaded, loaded_meta = load_model_file(path)
    assert loaded_meta.model_kwargs["channels"]["stem.conv1"] == 6
    assert loaded_meta.model_kwargs["channels"]["layer1.0.conv3"] == 20 - n_pruned(20, 0.4)
    assert torch.equal(loaded.stage3.modules_[1].branches[2][0].kept, first.kept)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), compact)


@pytest.mark.parametrize("stem_norm", ["instance", "batch"])
def test_a_zeroed_filter_contributes_exactly_zero(stem_norm):
    """Filter and norm scale and shift zeroed: the channel is exactly 0 after the norm
    (instance norm of the stem included), so it adds exactly nothing to a residual stream;
    the same after folding the batch norms into the convolutions."""
    net = trained_like(stem_norm=stem_norm)
    chosen = fpgm_step(net, 0.4)
    for model in (net, fold_batchnorm(net)):
        seen = {}
        hooks = [model.get_submodule(layer.norm).register_forward_hook(
            lambda m, i, out, name=layer.conv, seen=seen: seen.__setitem__(name, out))
            for layer in prunable_layers(net)]
        with torch.no_grad():
            model(torch.randn(2, 4, 40, 40))
        for h in hooks:
            h.remove()
        assert set(seen) == set(chosen)
        for name, idx in chosen.items():
            assert seen[name][:, idx].eq(0).all(), name
            assert seen[name].ne(0).any(), name


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_adding_into_the_kept_channels(layout):
    x = torch.randn(2, 6, 5, 4).contiguous(memory_format=layout)
    y = torch.randn(2, 3, 5, 4).contiguous(memory_format=layout)
    kept = torch.tensor([0, 2, 5])
    expected = x.clone()
    expected[:, kept] += y
    out = add_into_kept(x, y, kept)
    assert torch.equal(out, expected) and out.is_contiguous(memory_format=layout)
    assert not torch.equal(x, expected)  # the input is left alone
    mixed = add_into_kept(x.bfloat16(), y, kept)  # promotes as + does
    assert mixed.dtype == torch.float32


def test_channels_beyond_a_layers_filters_are_refused():
    with pytest.raises(ModelError, match=r"layer1\.0\.conv3"):
        create_model("hrnet", 4, 7, channels={"layer1.0.conv3": 21}, **TINY)


def test_models_without_a_description_are_refused():
    with pytest.raises(ModelError, match="hrnet"):
        prunable_layers(create_model("unet", 4, widths=[4, 8, 16, 32, 64]))


@pytest.mark.parametrize("argv,says", [
    (["--rate", "1.5"], "--rate must be between 0 and 1 (both excluded), got 1.5; it is the "
     "share of filters removed per layer, e.g. 0.4"),
    (["--rate", "0"], "--rate must be between 0 and 1 (both excluded), got 0.0"),
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--flops-size", "0"], "--flops-size must be >= 32, got 0; it is the input side (px) of "
     "the reported FLOP counts, e.g. 256"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
])
def test_isamap_prune_refuses_bad_numbers_before_reading_model_or_data(tmp_path, capsys, argv,
                                                                        says):
    """The review never reached these (it had no hrnet model file); --flops-size 0 crashed
    with a traceback after the model was read. The data folder does not exist, so a check
    that came after loading data (or training) would fail on it instead."""
    model_file = save_model_file(tmp_path / "hrnet.pt", create_model("hrnet", 4, 7, **TINY),
                                 meta_for({}))
    out = tmp_path / "pruned"
    code = prune_main(["--model", str(model_file), "--data", str(tmp_path / "no-data"),
                       "--out", str(out), "--device", "cpu", "-q", *argv])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"isamap-prune: error: {says}")
    assert not out.exists()
    assert prune_main(["--model", str(model_file), "--data", str(tmp_path / "no-data"),
                       "--out", str(out), "--device", "cpu", "-q"]) == 2  # good numbers:
    assert "no-data" in capsys.readouterr().err  # only then is the data looked at


@pytest.mark.slow
@pytest.mark.xdist_group("hrnet_run")  # the session's hrnet_run is trained once
def test_isamap_prune_fine_tunes_and_writes_a_smaller_model_that_predicts(hrnet_run, patch_root,
                                                                           tmp_path, capsys):
    import shutil

    out = tmp_path / "pruned"
    # fine-tuned on another copy of its dataset: the files say which data the fine-tuning read
    data = Path(shutil.copytree(patch_root, tmp_path / "fine-tune-data"))
    code = prune_main(["--model", str(hrnet_run.model_path), "--data", str(data),
                       "--out", str(out), "--epochs", "2", "--flops-size", "32", "--device",
                       "cpu", "--precision", "fp32", "--workers", "0", "--no-progress", "-q"])
    assert code == 0
    assert "compact model" in capsys.readouterr().out
    summary = json.loads((out / "pruning.json").read_text())
    assert summary["rate"] == 0.4 and summary["after"]["parameters"] < \
        summary["before"]["parameters"]
    for before, after in summary["layers"].values():
        assert after == before - n_pruned(before, 0.4)
    assert "layer1.0.conv3" in summary["layers"]  # a residual output (stage 1)
    masked, meta = load_model_file(out / "model.pt")
    small, small_meta = load_model_file(out / "pruned.pt")
    assert small_meta.extra["pruning"]["rate"] == 0.4
    # the data it was fine-tuned on, beside the dataset it was trained on (whose statistics
    # normalise its inputs), never the training dataset claimed for the fine-tuning (a walk)
    assert small_meta.extra["pruning"]["data"] == small_meta.extra["config"]["data"] == str(data)
    assert small_meta.extra["dataset"]["root"] == str(patch_root)
    # its checkpoint's description names no absolute path of this machine either (a walk:
    # data and out_dir were absolute in meta.extra.config); the run resumes from it (below)
    assert _absolute_paths(torch.load(out / "checkpoint.pt", weights_only=True)["meta"]) == []
    # the fine-tuned weights are calibrated afresh, never with the original model's record
    assert small_meta.calibration == meta.calibration and meta.calibrated
    assert meta.calibration["temperature"] != load_model_file(
        small_meta.extra["pruning"]["from"])[1].calibration.get("temperature")
    assert isinstance(small.layer1[0], PrunedBottleneck)
    # the fine-tuned model kept its zeros (pruned after every epoch, the last included)
    assert all(len(v) == n_pruned(masked.get_submodule(k).out_channels, 0.4)
               for k, v in zeroed_filters(masked).items())
    x = torch.randn(1, len(meta.bands), 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(small(x), masked(x), rtol=1e-5, atol=1e-4)
    # and isamap-predict's loader runs it on a raster
    from inference.predict.job import PredictInput, PredictJob, PredictOutputs, PredictRun
    from inference.predict.raster import PredictConfig
    from inference.predict.workflow import predict
    from tests.support.rasters import scene_stack, write_stack

    # values like the training patches': the model file records their ranges and refuses others
    stack = write_stack(tmp_path / "stack.tif", scene_stack(40, 50, bands=meta.bands),
                        bands=meta.bands)
    outputs = predict(PredictJob(str(out / "pruned.pt"), PredictInput(str(stack)),
                                 PredictOutputs(str(tmp_path / "map")),
                                 PredictConfig(tile=32, overlap=8), isa_class=1,
                                 run=PredictRun(progress=False)))
    assert np.isin(np.unique(_read(outputs.prediction.class_path)), [0, 1, 255]).all()
    # the summary names the model file as config.yaml does, never by this machine's path
    assert not Path(summary["from"]).is_absolute() and (out / summary["from"]).resolve() \
        == Path(hrnet_run.model_path).resolve()
    # another rate into the finished folder is refused (it would reuse the 0.4 network under
    # 0.2's name: a new user's walk), and so is another model file; nothing is rewritten
    kept = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    net, net_meta = load_model_file(hrnet_run.model_path)
    with torch.no_grad():
        next(net.parameters()).add_(1.0)  # the same network, other weights
    other = save_model_file(tmp_path / "other.pt", net, net_meta)
    for model, extra, says in ((hrnet_run.model_path, ["--rate", "0.2"],
                                "holds a pruning run at --rate 0.4; give --rate 0.4 to go on"),
                               (other, [], "holds a pruning run of another --model file")):
        assert prune_main(["--model", str(model), "--data", str(data), "--out", str(out),
                           "--epochs", "2", "--flops-size", "32", "--device", "cpu",
                           "--workers", "0", "--no-progress", "-q", *extra]) == 2
        assert says in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == kept
    # the same command again finds the finished run (its relative paths read back) and
    # redoes nothing: its compact model and summary were rewritten, same bytes, new mtimes
    # (a walk), as a finished isamap-train rerun keeps its files
    same = ["--model", str(hrnet_run.model_path), "--data", str(data), "--out", str(out),
            "--epochs", "2", "--device", "cpu", "--precision", "fp32", "--workers", "0",
            "--no-progress"]
    files = ("pruned.pt", "pruning.json")
    stamps = {n: ((out / n).stat().st_mtime_ns, (out / n).read_bytes()) for n in files}
    assert prune_main([*same, "--flops-size", "32"]) == 0
    assert {n: ((out / n).stat().st_mtime_ns, (out / n).read_bytes()) for n in files} == stamps
    said = capsys.readouterr()
    assert f"the pruning run in {out} is finished: nothing redone" in said.out
    assert "is finished (2 epochs, the best" in said.err and "compact model" in said.out
    # another --epochs is still refused; another --flops-size counts the FLOPs again
    assert prune_main([*same[:6], "--epochs", "3", *same[8:], "--flops-size", "32"]) == 2
    assert "nothing redone" not in capsys.readouterr().out
    assert {n: ((out / n).stat().st_mtime_ns, (out / n).read_bytes()) for n in files} == stamps
    assert prune_main([*same, "--flops-size", "64"]) == 0
    assert "nothing redone" not in capsys.readouterr().out
    assert json.loads((out / "pruning.json").read_text())["flops_input"] == 64


def _absolute_paths(value) -> list[str]:
    """Every string in a checkpoint's record that is an absolute path."""
    if isinstance(value, dict):
        return [p for v in value.values() for p in _absolute_paths(v)]
    if isinstance(value, list | tuple):
        return [p for v in value for p in _absolute_paths(v)]
    return [value] if isinstance(value, str) and Path(value).is_absolute() else []


@pytest.mark.xdist_group("hrnet_run")  # the session's hrnet_run is trained once
@pytest.mark.parametrize("case", ["seven classes on two", "two classes on seven",
                                  "other pixels"])
def test_isamap_prune_refuses_a_dataset_of_other_classes_or_pixels_before_writing(
        case, hrnet_run, tmp_path, capsys):
    """A walk: a 7-class land-cover model fine-tuned on a 2-class ISA dataset exited 0 with a
    model that learnt the wrong labels; the reverse ended in a traceback (``Target 4 is out
    of bounds``) with config.yaml written. Now isamap-evaluate's one-line refusal, exit 2."""
    from tests.support.rasters import write_patch_dataset

    landcover = meta_for({}).class_names
    if case == "seven classes on two":
        model = save_model_file(tmp_path / "lc.pt", create_model("hrnet", 4, 7, **TINY),
                                meta_for({}))
        data = write_patch_dataset(tmp_path / "isa")
        says = (f"the model predicts {list(landcover)} but the dataset {data} has the classes "
                "['pervious', 'impervious']")
    elif case == "two classes on seven":
        model = hrnet_run.model_path
        data = write_patch_dataset(tmp_path / "lc", classes=dict(enumerate(landcover)),
                                   label_scheme="landcover")
        says = "but the dataset"
    else:
        model = hrnet_run.model_path
        data = write_patch_dataset(tmp_path / "ds20", resolution=20.0)
        says = f"the dataset {data} has pixels of 20 m, but the model was trained on 10 m"
    out = tmp_path / "pruned"
    code = prune_main(["--model", str(model), "--data", str(data), "--out", str(out),
                       "--epochs", "1", "--device", "cpu", "--workers", "0", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and says in err
    assert not out.exists()


def _read(path):
    import rasterio

    with rasterio.open(path) as ds:
        return ds.read(1)


def test_an_old_unet_s2_file_is_fine_tuned_as_it_was_trained_not_as_its_name_trains_now():
    """A unet-s2 file from before scene statistics: per-window network, training statistics."""
    from training.pruning import fine_tune_config

    kwargs = {"bands": ["B2", "B3"], "input_norm": "patch", "widths": [4, 8, 8, 16, 16]}
    meta = ModelMeta("unet-s2", 2, 2, ("B2", "B3"), (0.1, 0.1), (0.5, 0.5), model_kwargs=kwargs,
                     extra={"config": {"model": "unet-s2", "epochs": 3, "lr": 0.01}})
    cfg = fine_tune_config(meta, "ds", "out", {"epochs": 1})
    # and it maps each window once, as files from before test-time flips did (one network:
    # no members to spread views over)
    assert cfg.data.norm == "training" and cfg.model.model_kwargs == {**kwargs, "flips": False,
                                                           "member_views": False}
    # the override, then the recorded configuration
    assert (cfg.loop.epochs, cfg.optim.lr) == (1, 0.01)


@pytest.mark.xdist_group("hrnet_run")  # the session's hrnet_run is trained once
def test_pruning_into_a_training_runs_folder_is_refused(hrnet_run, patch_root, tmp_path, capsys):
    """The refusal of its other options said to pass --resume, which went on with the training
    run: exit 0, nothing pruned (169,322 parameters -> 169,322), its config.yaml rewritten."""
    import shutil

    run = Path(shutil.copytree(hrnet_run.out_dir, tmp_path / "run"))
    model = shutil.copy(hrnet_run.model_path, tmp_path / "hrnet.pt")  # not the run's own file
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    code = prune_main(["--model", str(model), "--data", str(patch_root), "--out", str(run),
                       "--resume", "--epochs", "1", "--device", "cpu", "--workers", "0",
                       "--no-progress", "-q"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and lines == [
        f"isamap-prune: error: --out {run} holds a run that is not a pruning run (an "
        "isamap-train run?): pruning would go on with it and prune nothing; give another --out"]
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
