"""Small patch datasets written by the real patch writer (docs/data-contract.md).

``contract.patch_writer.PatchWriter`` writes the files and
``contract.dataset.commit_month`` the
index and manifest, so the training tests read exactly what the exporters produce.

The scenes are learnable on purpose: impervious blobs are bright in the optical bands and
in the SAR bands, with noise, so a tiny model can overfit a few patches.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.rasters import write_patch_dataset

BANDS = ["B2", "B3", "B4", "B8", "VV", "VH"]


@pytest.fixture(scope="session")
def patch_root(tmp_path_factory) -> Path:
    """A 10-patch, 32 px, six-band (B2 B3 B4 B8 VV VH) dataset: 6 train, 2 val, 2 test."""
    return write_patch_dataset(tmp_path_factory.mktemp("patches") / "ds")


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
