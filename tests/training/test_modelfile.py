"""Model files: round trip, self-description, atomic writes, clear errors on bad files."""

from __future__ import annotations

import pytest
import torch

from gee_export.core.errors import ModelError
from training.modelfile import ModelMeta, load_model_file, read_model_file, save_model_file
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


def test_bad_files_raise_model_error(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_model_file(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not a readable isamap model file"):
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


def test_inconsistent_meta_is_rejected():
    with pytest.raises(ModelError, match="inconsistent"):
        _meta(norm_std=(1.0,) * 5)
    with pytest.raises(ModelError, match="class names"):
        _meta(num_classes=3)
    with pytest.raises(ModelError, match="unknown meta fields"):
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
