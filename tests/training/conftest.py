"""The training tests' shared run: one tiny ``hrnet`` (the dataset is ``patch_root``,
tests/conftest.py)."""

from __future__ import annotations

import pytest

HRNET_TINY = {"width": 2, "stem_width": 4, "stage1_width": 2, "modules": (1, 1, 1),
              "blocks": 1}


@pytest.fixture(scope="session")
def hrnet_run(patch_root, tmp_path_factory):
    """One tiny ``hrnet`` trained for a step with the paper's recipe options (SGD, crops) and
    the batch-norm stem, shared by the model-kwargs and pruning tests (training is slow)."""
    from training.config import TrainConfig
    from training.run.patch_training import train

    cfg = TrainConfig.of(data=str(patch_root), out_dir=str(tmp_path_factory.mktemp("hrnet")),
                         model="hrnet", model_kwargs={**HRNET_TINY, "stem_norm": "batch"},
                         epochs=1, max_batches=1, batch_size=2, num_workers=0, device="cpu",
                         precision="fp32", channels_last=False, progress=False, optimizer="sgd",
                         lr=0.01, crop_size=16)
    return train(cfg)
