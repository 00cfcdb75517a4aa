"""``isamap-evaluate``'s refusals and its point-assessment report (a new user's walk)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch

from cli.evaluate import evaluate_main
from tests.support.rasters import BANDS, write_patch_dataset
from training.model_meta import ModelMeta
from training.modelfile import save_model_file
from training.models import create_model


def _model_file(path, pixel_size: float = 10.0, band_ranges=None):
    """A tiny untrained U-Net of the test bands, trained (as its file says) on ``pixel_size``
    and on data of ``band_ranges`` (None: its file records none, as an older isamap's)."""
    torch.manual_seed(0)
    kwargs = {"widths": [4, 8, 8, 8, 8]}
    model = create_model("unet", len(BANDS), 2, **kwargs)
    meta = ModelMeta(name="unet", in_channels=len(BANDS), num_classes=2, bands=BANDS,
                     norm_mean=(0.1,) * len(BANDS), norm_std=(1.0,) * len(BANDS),
                     model_kwargs=kwargs, pixel_size=pixel_size,
                     band_ranges=band_ranges or {})
    return save_model_file(path, model, meta)


def _evaluate(model, data, out, *more) -> int:
    return evaluate_main(["--model", str(model), "--data", str(data), "--out", str(out),
                          "--device", "cpu", "--precision", "fp32", "--channels-last", "off",
                          "--no-progress", *more])


def test_a_dataset_of_other_pixels_than_the_models_is_refused(tmp_path, capsys):
    model = _model_file(tmp_path / "model.pt", pixel_size=10.0)
    data = write_patch_dataset(tmp_path / "ds20", n=6, resolution=20.0)
    out = tmp_path / "ev"
    assert _evaluate(model, data, out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and not out.exists()
    assert f"the dataset {data} has pixels of 20 m, but the model was trained on 10 m" in err
    assert "--resolution 10" in err
    same = write_patch_dataset(tmp_path / "ds10", n=6)  # the same model on 10 m pixels runs
    assert _evaluate(model, same, out) == 0
    assert json.loads((out / "metrics.json").read_text())["patches"] == 2


#: the ranges of write_patch_dataset's bands: reflectance ~0.05-0.2, sigma0 ~-21 to -7 dB
_RANGES = {**{b: (0.02, 0.1, 0.25) for b in BANDS[:4]},
           "VV": (-19.0, -12.0, -5.0), "VH": (-25.0, -18.0, -11.0)}


def test_a_dataset_on_another_scale_than_the_models_training_data_is_refused(tmp_path, capsys):
    """A walk: a model trained on sigma0 / 10000 scored a real dataset (VV about -12 dB),
    exit 0 with metrics, where isamap-predict refused the same values."""
    model = _model_file(tmp_path / "model.pt", band_ranges={
        **_RANGES, "VV": (-0.002, -0.0012, -0.0005), "VH": (-0.0026, -0.0017, -0.0011)})
    data = write_patch_dataset(tmp_path / "ds", n=6)
    out = tmp_path / "ev"
    forwards = []
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda module, args, output: forwards.append(type(module).__name__))
    try:
        assert _evaluate(model, data, out) == 2
    finally:
        hook.remove()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and not out.exists() and forwards == []
    assert err.startswith(f"isamap-evaluate: error: the test split of the dataset {data} does "
                          "not hold what the model was trained on: VV has a median of -")
    assert ("outside the -0.002 to -0.0005 the model saw in training (1st-99th percentile) "
            "(x 10000 of values the model knows?) (and 1 more); give a dataset in the units the "
            "model was trained on (float reflectance 0-1, sigma0 in dB)") in err
    # the same dataset scored by a model trained on its own scale
    assert _evaluate(_model_file(tmp_path / "own.pt", band_ranges=_RANGES), data, out) == 0


def test_a_dataset_in_degrees_is_not_read_as_metres():
    """An import of geographic tiles records its resolution in degrees: read as metres, a
    10 m model was refused for pixels of 8.98e-05 m (a review)."""
    from training.calibration.record import pixel_metres as _pixel_metres

    assert _pixel_metres({"crs": "EPSG:4326", "resolution": 8.983e-5}) is None
    assert _pixel_metres({"crs": "EPSG:32650", "resolution": 20.0}) == 20.0
    assert _pixel_metres({"crs": "EPSG:32650"}) is None and _pixel_metres(None) is None


def _pervious_everywhere(path):
    """A model file whose network maps every pixel pervious (its last layer a constant)."""
    model = _model_file(path)
    from training.modelfile import load_model_file

    net, meta = load_model_file(model)
    last = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([1.0, 0.0]))
    return save_model_file(path, net, meta)


def test_a_point_sample_smaller_than_asked_says_so_and_undefined_estimates_read_na(
        tmp_path, capsys):
    model = _pervious_everywhere(tmp_path / "model.pt")
    data = write_patch_dataset(tmp_path / "ds", n=6)
    out = tmp_path / "ev"
    assert _evaluate(model, data, out, "--points", "7") == 0
    text = (out / "metrics.txt").read_text()
    # 7 // 2 classes = 3 a stratum; impervious is never mapped: 3 points, not 7
    assert ("point sample (3 of the 7 points asked for: 3 in each of the 2 map classes; all "
            "of a class that maps fewer pixels: impervious maps 0 px, stratified by map "
            "class)") in text
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["points"]["n"] == 3 and metrics["points"]["asked"] == 7
    olofsson = text.split("Olofsson")[1]  # impervious's UA is undefined: n/a, not nan +/- nan
    assert "impervious     UA    n/a  PA   0.00 +/-  0.00" in olofsson
    assert "nan" not in text.lower()


@pytest.mark.parametrize("fine_scale,has", [(None, "no fine label (label_fine)"),
                                            (2, "its fine label at 2x")])
def test_a_fine_scale_model_on_data_without_its_fine_label_is_refused_before_it_runs(
        fine_scale, has, tmp_path, capsys):
    """A walk: a x10 srseg model on data without label_fine was told to train on ``--label
    label`` (isamap-evaluate has no such flag; isamap-train refuses srseg on it); on data
    exported with another --fine-scale it ran a batch, then said the shapes differ."""
    kwargs = {"scale": 4, "widths": [4, 8, 8], "stage_widths": [4, 4, 4, 4]}
    torch.manual_seed(0)
    model = save_model_file(tmp_path / "srseg.pt", create_model("srseg", len(BANDS), 2, **kwargs),
                            ModelMeta(name="srseg", in_channels=len(BANDS), num_classes=2,
                                      bands=BANDS, norm_mean=(0.1,) * len(BANDS),
                                      norm_std=(1.0,) * len(BANDS), output_scale=4,
                                      model_kwargs=kwargs, pixel_size=10.0))
    data = write_patch_dataset(tmp_path / "ds", n=6, fine_scale=fine_scale)
    out = tmp_path / "ev"
    assert _evaluate(model, data, out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and not out.exists()
    assert (f"the model predicts at 4x its input's resolution but the dataset {data} has {has}; "
            "export it with isamap-export --fine-scale 4") in err
    assert "--label" not in err


def _written(out) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(out.iterdir())}


@pytest.mark.slow
def test_the_same_evaluation_is_read_back_and_any_changed_input_evaluated_afresh(
        tmp_path, capsys):
    """Notebook 02 skipped re-evaluating when metrics.json was newer than model.pt: data
    exported again under a kept model showed the old data's metrics. Now isamap-evaluate
    itself knows what its metrics were made of."""
    model = _model_file(tmp_path / "model.pt")
    data = write_patch_dataset(tmp_path / "ds", n=6)
    out = tmp_path / "ev"
    assert _evaluate(model, data, out) == 0
    first = json.loads((out / "metrics.json").read_text())
    assert set(first["inputs"]) == {"model_id", "data_id", "split", "points", "point_seed",
                                    "device", "precision", "channels_last", "autotune_cache",
                                    "code_version", "model", "data"}
    assert first["inputs"]["data"] == first["data"]  # named as metrics.json names it
    made = _written(out)
    assert len(made) == 4
    capsys.readouterr()

    assert _evaluate(model, data, out) == 0  # asked again: read back, its table shown
    assert _written(out) == made
    printed = capsys.readouterr().out
    assert "OA" in printed and "read back (the same inputs)" in printed and "wrote" not in printed

    def evaluated_afresh(*more) -> dict:
        nonlocal made
        assert _evaluate(model, data, out, *more) == 0
        now = _written(out)
        assert now["metrics.json"] != made["metrics.json"]
        made = now
        return json.loads((out / "metrics.json").read_text())["inputs"]

    assert evaluated_afresh("--points", "20")["points"] == 20
    assert evaluated_afresh("--points", "20", "--point-seed", "3")["point_seed"] == 3
    assert evaluated_afresh()["points"] == 0  # back to no point sample
    # the same dataset folder exported again with other pixels (the notebook's case)
    shutil.rmtree(data)
    write_patch_dataset(data, n=6, seed=1)
    assert evaluated_afresh()["data_id"] != first["inputs"]["data_id"]
    _model_file(model, band_ranges=_RANGES)  # the model file rewritten with another description
    assert evaluated_afresh()["model_id"] != first["inputs"]["model_id"]
    (out / "confusion_matrix.png").unlink()  # a folder missing one of its files
    evaluated_afresh()
    assert (out / "confusion_matrix.png").is_file()


def test_an_evaluation_stopped_while_writing_never_passes_for_the_one_before(tmp_path,
                                                                            monkeypatch):
    """A walk: an evaluation of the val split killed after metrics.txt and the confusion
    matrix were written left the test split's metrics.json beside them; asking for the test
    split again "read back" the val table, exit 0. The old metrics.json now goes first."""
    from inference.assess import evaluate as module

    model = _model_file(tmp_path / "model.pt")
    data = write_patch_dataset(tmp_path / "ds", n=6)
    out = tmp_path / "ev"
    config = module.EvaluateConfig(model, str(data), out, "test", device="cpu",
                                   precision="fp32", channels_last="off", progress=False)
    module.evaluate(config)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # stopped between the confusion matrix and metrics.json

    monkeypatch.setattr(module, "plot_reliability", killed)
    with pytest.raises(KeyboardInterrupt):
        module.evaluate(dataclasses.replace(config, split="val"))
    assert "[val]" in (out / "metrics.txt").read_text()
    monkeypatch.undo()
    again = module.evaluate(config)
    assert not again.reused and "[test]" in (out / "metrics.txt").read_text()
    assert json.loads((out / "metrics.json").read_text())["split"] == "test"
    assert module.evaluate(config).reused


def test_an_output_file_that_is_a_folder_is_named_before_the_evaluation_runs(tmp_path, capsys,
                                                                           monkeypatch):
    """A walk: ``--out`` whose ``metrics.json`` is a folder failed after the whole evaluation,
    exit 1, naming a temporary file. It is now named, exit 2, before a patch is scored."""
    from inference.assess import evaluate as module

    model = _model_file(tmp_path / "model.pt")
    data = write_patch_dataset(tmp_path / "ds", n=6)
    out = tmp_path / "ev"
    (out / "metrics.json").mkdir(parents=True)

    def scored(*args, **kwargs):
        raise AssertionError("the evaluation ran before its outputs were checked")

    monkeypatch.setattr(module, "_score", scored)
    assert _evaluate(model, data, out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"{out / 'metrics.json'} is a folder where isamap writes a file" in err
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json"]  # nothing else written
