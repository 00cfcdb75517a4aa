"""The losses package: every module's table merged explicitly, whatever was imported before."""

from __future__ import annotations

import subprocess
import sys

import pytest

from core.errors import ConfigError
from tests.support import REPO_ROOT
from training.losses import LOSSES, LossFactory, available_losses, build_loss
from training.losses.factory import merge_losses
from training.losses.segmentation import CE, DICE_FOCAL, WEIGHTED_CE

ALL = ("ce", "composition", "crofusenet", "dice_focal", "srseg", "weighted_ce")


def test_importing_the_losses_alone_gives_every_loss_and_no_model():
    code = ("import sys\n"
            "import training.losses as L\n"
            f"assert L.available_losses() == {ALL!r}, L.available_losses()\n"
            "assert 'srseg' in L.available_losses()\n"
            "loaded = sorted(m for m in sys.modules if m.startswith('training.models'))\n"
            "assert not loaded, loaded\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert available_losses() == ALL


def test_a_name_in_two_merged_tables_is_refused():
    with pytest.raises(ConfigError, match="loss name 'ce' is defined twice"):
        merge_losses({"ce": CE}, {"ce": LossFactory("ce", CE.build)})
    with pytest.raises(ConfigError, match="must be a LossFactory named 'focal'"):
        merge_losses({"focal": DICE_FOCAL})  # a table key is its factory's own name
    with pytest.raises(TypeError):
        LOSSES["lovasz"] = CE  # read-only
    merged = merge_losses({"ce": CE}, {"dice_focal": DICE_FOCAL})
    assert dict(merged) == {"ce": CE, "dice_focal": DICE_FOCAL}


def test_build_loss_names_the_choices_and_resolves_class_weights_by_name():
    with pytest.raises(ConfigError, match="unknown loss 'lovasz'; choose ce, composition, "
                                          "crofusenet, dice_focal, srseg, weighted_ce"):
        build_loss("lovasz")
    loss = build_loss("weighted_ce", ignore_index=9, class_names=["water", "impervious"],
                      class_weights={"impervious": 3.0})
    assert loss.weight.tolist() == [1.0, 3.0] and loss.ignore_index == 9
    assert WEIGHTED_CE.make(class_names=["impervious", "other"],
                            class_weights={"impervious": 2.0}).weight.tolist() == [2.0, 1.0]
    with pytest.raises(ConfigError, match="need the dataset's class names"):
        build_loss("weighted_ce", class_weights={"impervious": 3.0})
    with pytest.raises(ConfigError, match="bad arguments for loss 'dice_focal'"):
        build_loss("dice_focal", beta=1.0)
    with pytest.raises(ConfigError, match="loss 'ce' takes no arguments"):
        build_loss("ce", class_weights=[1.0, 2.0])
    assert build_loss("ce").weight is None
