"""Model files: round trip, self-description, atomic writes, clear errors on bad files."""

from __future__ import annotations

import hashlib
import shutil

import pytest
import torch

from core.errors import ModelError
from tests.support.sources import where
from training.calibration.temperature import describe
from training.modelfile import (
    ModelMeta,
    load_model,
    load_model_file,
    read_model_file,
    save_model_file,
)
from training.models import create_model

BANDS = ("B2", "B3", "B4", "B8", "VV", "VH")
KW = {"bands": list(BANDS), "widths": [4, 8, 16, 32, 64]}


def _meta(**over) -> ModelMeta:
    base = dict(name="crofusenet", in_channels=6, num_classes=2, bands=BANDS,
                norm_mean=(0.1,) * 6, norm_std=(0.5,) * 6, model_kwargs=KW,
                metrics={"val": {"miou": 0.8}})
    return ModelMeta(**{**base, **over})


def test_round_trip_rebuilds_the_same_network(tmp_path):
    torch.manual_seed(0)
    model = create_model("crofusenet", 6, **KW).eval()
    path = save_model_file(tmp_path / "m.pt", model, _meta())
    loaded, meta = load_model_file(path)
    x = torch.randn(1, 6, 32, 32)
    assert torch.equal(model(x)["out"], loaded(x)["out"])
    assert meta.bands == BANDS and meta.output_scale == 1
    assert meta.class_names == ("pervious", "impervious")
    assert meta.module == "training.models.crofusenet" and meta.code_version
    assert meta.metrics["val"]["miou"] == 0.8
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temp file left behind


def test_the_classes_a_model_learnt_round_trip_and_older_files_say_nothing(tmp_path):
    model = create_model("crofusenet", 6, **KW)
    path = save_model_file(tmp_path / "m.pt", model, _meta(learnt_classes=("impervious",)))
    assert read_model_file(path)[0].learnt_classes == ("impervious",)
    older = _meta().to_dict()
    older.pop("learnt_classes")
    assert ModelMeta.from_dict(older).learnt_classes is None  # not recorded: not known
    with pytest.raises(ModelError, match="learnt_classes"):
        _meta(learnt_classes=("water",))


def test_a_model_file_on_cloud_storage_loads_as_the_same_model(tmp_path, gcs_bucket):
    """``isamap-map --runner dataflow --model gs://...`` read the file with ``open``, which
    knows no gs:// path: the command said the file did not exist before anything ran."""
    from google.cloud import storage

    model = create_model("crofusenet", 6, **KW).eval()
    path = save_model_file(tmp_path / "m.pt", model, _meta())
    storage.Client().bucket(gcs_bucket).blob("models/m.pt").upload_from_filename(str(path))
    remote, local = load_model(f"gs://{gcs_bucket}/models/m.pt"), load_model(path)
    assert remote.file_id == local.file_id and remote.meta == local.meta
    with pytest.raises(ModelError, match=f"--model gs://{gcs_bucket}/m.pt does not exist"):
        load_model(f"gs://{gcs_bucket}/m.pt", flag="--model")


def test_bad_files_raise_model_error(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_model_file(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot be read as a model file"):
        load_model_file(junk)
    other = tmp_path / "other.pt"
    torch.save({"model": {}}, other)
    with pytest.raises(ModelError, match="not an isamap model file"):
        read_model_file(other)
    model = create_model("crofusenet", 6, **KW)
    path = save_model_file(tmp_path / "m.pt", model, _meta())
    payload = torch.load(path, weights_only=True)
    payload["state_dict"].pop("head_shared.0.weight")
    torch.save(payload, tmp_path / "cut.pt")
    with pytest.raises(ModelError, match="do not fit"):
        load_model_file(tmp_path / "cut.pt")


def _unet_file(path, **meta_over):
    kwargs = {"widths": [2, 2, 2, 2, 2]}
    model = create_model("unet", 6, 2, **kwargs)
    meta = ModelMeta("unet", 6, 2, BANDS, (0.0,) * 6, (1.0,) * 6, model_kwargs=kwargs)
    payload = {"format": "isamap-model/1", "meta": {**meta.to_dict(), **meta_over},
               "state_dict": model.state_dict()}
    torch.save(payload, path)
    return payload


@pytest.mark.parametrize("module", ["training.models.unet", "training.models", ""])
def test_a_file_naming_the_module_or_the_package_of_a_built_in_model_loads(tmp_path, module):
    """Files record the module whose table defines the model, or the package (older files)."""
    payload = _unet_file(tmp_path / "m.pt", module=module)
    model, meta = load_model_file(tmp_path / "m.pt")
    assert meta.module == module
    assert all(torch.equal(v, payload["state_dict"][k]) for k, v in model.state_dict().items())


def _garbage(path):
    path.write_bytes(b"hello garbage" * 50)  # unpickles to a KeyError: 101


def _truncated(path):
    _unet_file(path)
    path.write_bytes(path.read_bytes()[:3000])


def _pickled_module(path):
    torch.save(create_model("unet", 6, 2, widths=[2, 2, 2, 2, 2]), path)


def _checkpoint(path):
    torch.save({"format": "isamap-checkpoint/1", "epoch": 3}, path)


def _other_architecture(path):  # hrnet described, unet weights
    _unet_file(path, name="hrnet", model_kwargs={"width": 2, "stem_width": 4,
                                                  "stage1_width": 2, "modules": (1, 1, 1),
                                                  "blocks": 1})


def _unknown_architecture(path):
    _unet_file(path, name="segformer")


def _foreign_settings(path):
    _unet_file(path, model_kwargs={"widths": [2, 2, 2, 2, 2], "depth": 7})


def _incomplete(path):
    payload = _unet_file(path)
    del payload["meta"]["bands"]
    torch.save(payload, path)


@pytest.mark.parametrize("make,says", [
    (lambda p: None, "does not exist; give the model.pt that isamap-train wrote"),
    (lambda p: p.mkdir(), "is a folder, not a model file; give the model.pt"),
    (lambda p: p.write_bytes(b""), "cannot be read as a model file (it is truncated, damaged "
     "or not a torch file); copy it again"),
    (_garbage, "cannot be read as a model file"),
    (_truncated, "cannot be read as a model file"),
    (_pickled_module, "holds pickled Python objects"),
    (lambda p: torch.save({"weight": torch.zeros(1)}, p), "is not an isamap model file (a "
     "torch file without isamap's description, e.g. a bare state dict); give the model.pt"),
    (lambda p: torch.save([1, 2], p), "is not an isamap model file"),
    (_checkpoint, "is a training checkpoint, not a model file; give the model.pt beside it"),
    (lambda p: torch.save({"format": "isamap-model/2"}, p), "is a model file of format "
     "isamap-model/2, which this isamap cannot read (it reads isamap-model/1); upgrade"),
    (lambda p: torch.save({"format": "isamap-model/1", "meta": {}}, p),
     "lacks its description or weights; the file is damaged"),
    (_incomplete, ": the model description lacks bands; the file is damaged or was not "
     "written by isamap-train"),
    (_other_architecture, ": its weights do not fit the 'hrnet' network its description "
     "records ("),
    (_unknown_architecture, "is a 'segformer' model, which this isamap does not know (it "
     "knows "),
    (_foreign_settings, "records settings this isamap's 'unet' network does not take "
     "(model_kwargs: depth, widths); use the isamap version that trained it"),
])
def test_a_bad_model_file_is_one_clean_line_naming_the_flag(tmp_path, make, says):
    """Truncated, garbage, foreign and mismatched files said "(KeyError: 101)", "(EOFError: )"
    or "Error(s) in loading state_dict for HRNet:"; the detail is on the chain (--debug)."""
    path = tmp_path / "model.pt"
    make(path)
    with pytest.raises(ModelError) as err:
        load_model_file(path)
    text = str(err.value)
    assert text.startswith(f"--model {path}") and says in text, text
    assert "\n" not in text and "Error" not in text and "state_dict" not in text, text
    assert "; " in text  # what is wrong; what to do
    with pytest.raises(ModelError, match=f"^model file {path}"):  # a file isamap wrote itself
        load_model_file(path, flag="model file")


def test_inconsistent_meta_is_rejected():
    with pytest.raises(ModelError, match="inconsistent"):
        _meta(norm_std=(1.0,) * 5)
    with pytest.raises(ModelError, match="class names"):
        _meta(num_classes=3)
    with pytest.raises(ModelError, match="fields this isamap does not know"):
        ModelMeta.from_dict({**_meta().to_dict(), "colour": "red"})


def test_model_files_get_the_umask_mode_so_others_can_read_them(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        path = save_model_file(tmp_path / "shared.pt", create_model("crofusenet", 6, **KW),
                               _meta())
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600


def test_a_model_is_identified_by_its_bytes_in_one_place(tmp_path):
    """Checkpoints, COG tags, tile names and staged copies carry this id: it must not drift."""
    torch.manual_seed(0)
    path = save_model_file(tmp_path / "m.pt", create_model("crofusenet", 6, **KW), _meta())
    assert load_model(path).file_id == hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    renamed = path.rename(tmp_path / "other-name.pt")
    assert load_model(renamed).file_id == hashlib.sha256(renamed.read_bytes()).hexdigest()[:16]
    assert set(where(r"def (\w+_)?file_id\(")) == {"training/modelfile.py"}


def _payload_with(path, change) -> None:
    """Rewrite a saved model file's payload through ``change(payload)``, as an editor would."""
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)


def test_a_model_with_non_finite_weights_is_refused_at_load(tmp_path):
    """A NaN-weight model maps 0 km² and exits 0 unless refused when it is read."""
    path = save_model_file(tmp_path / "m.pt", create_model("crofusenet", 6, **KW), _meta())

    def poison(payload):  # a file of an isamap that recorded no digest, with NaN weights
        payload.pop("weights_sha256")
        first = next(k for k, v in payload["state_dict"].items() if v.is_floating_point())
        payload["state_dict"][first].fill_(float("nan"))

    _payload_with(path, poison)
    with pytest.raises(ModelError, match=r"--model .*m\.pt has weights that are not finite "
                                         r"\(NaN or inf in 1 of \d+ tensors, e\.g\. "):
        load_model_file(path)


def test_a_model_whose_weights_changed_after_saving_fails_its_integrity_check(tmp_path):
    path = save_model_file(tmp_path / "m.pt", create_model("crofusenet", 6, **KW), _meta())

    def flip(payload):
        first = next(k for k, v in payload["state_dict"].items() if v.is_floating_point())
        payload["state_dict"][first].view(-1)[0] += 1.0

    _payload_with(path, flip)
    with pytest.raises(ModelError, match="fails its integrity check"):
        load_model_file(path)


def test_a_model_whose_description_changed_after_saving_fails_its_integrity_check(tmp_path):
    """An in-range edit (a temperature of 5 for 1.7, a band renamed) changes every map."""
    record = {"method": "temperature", "temperature": 1.7, "split": "val", "pixels": 900,
              "ece_before": 0.08, "ece_after": 0.01}
    path = save_model_file(tmp_path / "m.pt", create_model("crofusenet", 6, **KW),
                           _meta(calibration=record))
    edits = {"temperature": lambda meta: meta["calibration"].update(temperature=5.0),
             "bands": lambda meta: meta.update(bands=list(reversed(meta["bands"])))}
    for name, edit in edits.items():
        edited = tmp_path / f"{name}.pt"
        shutil.copy(path, edited)
        _payload_with(edited, lambda payload, edit=edit: edit(payload["meta"]))
        with pytest.raises(ModelError, match=r"fails its integrity check: its description"):
            read_model_file(edited)
    # a value no isamap writes (a tensor) has no canonical form: the same refusal, no traceback
    tensor = tmp_path / "tensor.pt"
    shutil.copy(path, tensor)
    _payload_with(tensor, lambda payload: payload["meta"].update(norm=torch.ones(2)))
    with pytest.raises(ModelError, match=r"fails its integrity check: its description"):
        read_model_file(tensor)
    # a file of an isamap that recorded no description digest is read as before
    _payload_with(path, lambda payload: payload.pop("description_sha256"))
    assert read_model_file(path)[0].temperature == 1.7


def test_non_finite_weights_are_never_saved(tmp_path):
    model = create_model("crofusenet", 6, **KW)
    with torch.no_grad():
        next(model.parameters()).fill_(float("inf"))
    with pytest.raises(ModelError, match="not finite"):
        save_model_file(tmp_path / "m.pt", model, _meta())
    assert not (tmp_path / "m.pt").exists()


def test_training_range_and_grid_survive_the_round_trip_and_old_files_load(tmp_path):
    ranges = {b: (0.01, 0.1, 0.3) if b.startswith("B") else (-25.0, -12.0, -3.0)
              for b in BANDS}
    path = save_model_file(tmp_path / "m.pt", create_model("crofusenet", 6, **KW),
                           _meta(pixel_size=10.0, band_ranges=ranges))
    meta, _ = read_model_file(path)
    assert meta.band_ranges == ranges and meta.training_pixel_size() == 10.0

    def older(payload):  # written before the ranges and the grid were recorded
        for key in ("pixel_size", "band_ranges", "calibration"):
            payload["meta"].pop(key)
        payload["meta"]["extra"] = {"dataset": {"grid": {"resolution": 20.0}}}
        payload.pop("weights_sha256")
        payload.pop("description_sha256")

    _payload_with(path, older)
    meta, _ = read_model_file(path)
    assert meta.band_ranges == {} and meta.training_pixel_size() == 20.0
    # ...and before calibrations were recorded: temperature 1, said to be uncalibrated
    assert "calibration" not in torch.load(path, weights_only=True)["meta"]
    assert meta.temperature == 1.0 and not meta.calibrated
    assert describe(meta.calibration).startswith("uncalibrated")


def test_the_calibration_survives_the_round_trip_and_a_bad_one_is_refused(tmp_path):
    record = {"method": "temperature", "temperature": 1.7, "split": "val", "pixels": 900,
              "ece_before": 0.08, "ece_after": 0.01}
    path = save_model_file(tmp_path / "m.pt", create_model("crofusenet", 6, **KW),
                           _meta(calibration=record))
    meta = load_model_file(path)[1]
    assert meta.calibration == record and meta.temperature == 1.7 and meta.calibrated
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ModelError, match="calibration is invalid"):
            _meta(calibration={**record, "temperature": bad})


def test_the_prediction_window_round_trips_and_nonsense_is_refused(tmp_path):
    model = create_model("crofusenet", 6, **KW)
    path = save_model_file(tmp_path / "w.pt", model, _meta(window=512))
    assert load_model_file(path)[1].window == 512
    assert _meta().window is None  # files of older isamap versions: any tile
    for bad in (8, True, 64.0):
        with pytest.raises(ModelError, match="window must be a tile side in pixels"):
            _meta(window=bad)
