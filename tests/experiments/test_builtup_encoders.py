"""The encoder-fusion comparison: its table on docs/encoders.md, the prose around it, its data."""

from __future__ import annotations

import json
import re

import numpy as np

from experiments.builtup_encoders import CROP, arm_label, crops, markdown_table, read_tile
from tests.support import REPO_ROOT

PAGE = REPO_ROOT / "docs" / "encoders.md"
SOURCE = REPO_ROOT / "docs" / "figures" / "encoders_fusion.json"


def _section() -> str:
    text = PAGE.read_text()
    return text[text.index("## Fusion"):text.index("## Limits")]


def test_the_page_shows_the_table_of_its_source_json():
    results = json.loads(SOURCE.read_text())["results"]
    assert markdown_table(results) in PAGE.read_text()
    commands = json.loads(SOURCE.read_text())["commands"]
    assert all(" ".join(c.split()) in " ".join(_section().replace("\\\n", " ").split())
               for c in commands)


def test_every_figure_in_the_prose_comes_from_the_source_json():
    results = json.loads(SOURCE.read_text())["results"]
    derived = set(re.findall(r"\d\.\d{3}", markdown_table(results))) | {"0.5"}  # the cut
    for arm in {arm_label(r) for r in results}:
        rows = [r for r in results if arm_label(r) == arm and r["seed"] == 0]
        derived.add(f"{np.mean([r['auc'] for r in rows]):.3f}")
        f1 = [r["f1"] for r in rows]
        derived |= {f"{min(f1):.2f}", f"{max(f1):.2f}"}
    prose = re.sub(r"```.*?```", "", _section(), flags=re.DOTALL)
    prose = "\n".join(line for line in prose.splitlines() if not line.startswith("|"))
    quoted = set(re.findall(r"\b\d\.\d+\b", prose))
    assert quoted <= derived, sorted(quoted - derived)


def test_tiles_are_read_as_built_other_and_unscored_and_cropped_with_their_labels(
        shared_data):
    image, target, latlon = read_tile(shared_data / "dynamicworld_s2", "ghana_b")
    assert image.shape == (10, 510, 510) and 0 < float(np.nanmedian(image[0])) < 0.5
    assert set(np.unique(target)) <= {0, 1, 255} and (target == 1).any()
    assert 4 < latlon[0] < 7 and -4 < latlon[1] < 0  # southern Ghana
    tile = {"bands": image, "feats": image[:2].astype(np.float16), "target": target}
    x, f, y = crops([tile], np.random.default_rng(0), 2)
    assert x.shape == (2, 10, CROP, CROP) and f.shape == (2, 2, CROP, CROP)
    assert torch_equal_float16(f, x[:, :2])
    assert set(np.unique(y.numpy())) <= {0, 1, 255}


def torch_equal_float16(f, x) -> bool:
    """Features and bands cut from the same place and turned the same way."""
    return bool(np.allclose(f.numpy(), x.numpy().astype(np.float16).astype(np.float32)))
