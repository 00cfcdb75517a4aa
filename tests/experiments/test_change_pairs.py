"""The real-pair change experiment: its scenes, its implanted change and the docs' figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from experiments.change_pairs import (
    ARTIFICIAL,
    FIGURES_JSON,
    SLOVENIA,
    figures_markdown,
    implant,
    load_scenes,
    main,
    update_page,
)
from inference.assess.figures import page_block

ROOT = Path(__file__).resolve().parents[2]


def test_the_clear_scenes_are_paired_in_date_order(shared_data):
    dates, scenes, lulc = load_scenes(shared_data / SLOVENIA)
    assert dates == ["2015-07-11", "2015-08-30", "2015-09-09"]  # the two cloudy ones left out
    assert scenes.shape == (3, 13, 101, 100) and (lulc == ARTIFICIAL).sum() == 198


def test_implanted_blocks_hold_the_dates_own_artificial_spectra_away_from_it():
    rng = np.random.default_rng(0)
    lulc = np.ones((60, 60), np.uint16)
    lulc[:10, :10] = ARTIFICIAL
    later = rng.random((3, 60, 60)).astype(np.float32)
    moved, truth = implant(later, lulc, blocks=4, size=6)
    assert truth.sum() == 4 * 36 and not (truth & (lulc == ARTIFICIAL)).any()
    assert np.array_equal(moved[:, ~truth], later[:, ~truth])
    spectra = {tuple(v) for v in later[:, lulc == ARTIFICIAL].T}
    assert all(tuple(v) in spectra for v in moved[:, truth].T)


def test_real_data_page_quotes_the_change_figures_of_its_json(tmp_path):
    """A figure of the page that its source JSON no longer gives fails here."""
    page = (ROOT / "docs" / "real-data.md").read_text(encoding="utf-8")
    metrics = json.loads((ROOT / FIGURES_JSON).read_text(encoding="utf-8"))
    start, end = page_block(page, FIGURES_JSON)
    block = page[start:end]
    assert block == figures_markdown(metrics)
    both = metrics["summary"]["unet-s2"]["both"]
    assert f"{100 * both['false_change'][0]:.2f} ± " in block and f"{both['f1'][0]:.3f}" in block
    metrics["summary"]["unet-s2"]["both"]["f1"] = [0.123, 0.01]
    (tmp_path / "f.json").write_text(json.dumps(metrics))
    (tmp_path / "p.md").write_text("a\n<!-- figures: other.json -->\nx\n<!-- end figures -->\n"
                                   "<!-- figures: f.json -->\nold\n<!-- end figures -->\nb\n")
    assert update_page("f.json", "p.md", root=str(tmp_path)) is True
    text = (tmp_path / "p.md").read_text()
    assert "0.123 ± 0.010" in text and "old" not in text and "\nx\n" in text


def test_bad_options_are_refused_before_any_work(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "o"), "--margin", "0.6", "-q"]) == 2
    err = capsys.readouterr().err
    assert "--margin must be in [0, 0.5)" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
