"""The members' model files joined in one (``OUT/model.pt`` of ``isamap-train --members K``).

:func:`join_model_files` loads the finished members' files, checks that they describe one
model (:func:`joined_meta`), fits the mean's own temperature on the validation split
(:func:`training.calibration.record.fit_joined`) and writes the joined file, or keeps the one
there where it joins the same members already. :mod:`training.run.members` trains the members
and calls it.

May import: ``core``, ``training`` (below this module).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from core.errors import ModelError
from engine.distributed import DistInfo, resolve_device
from training.calibration.record import fit_joined
from training.calibration.temperature import describe
from training.config import TrainConfig, as_recorded, recipe_values
from training.model_meta import ModelMeta
from training.modelfile import load_model_file, save_model_file, weights_digest
from training.models.members import MemberMean

log = logging.getLogger(__name__)

#: what every member's description must share for their mean to be one model
SHARED_FIELDS = ("name", "module", "in_channels", "num_classes", "bands", "norm_mean",
                 "norm_std", "class_scheme", "class_names", "output_scale", "model_kwargs",
                 "window", "norm")


def joined_meta(metas: Sequence[ModelMeta], cfg: TrainConfig) -> ModelMeta:
    """The joined file's description: the members' shared one, ``members: K``, their record.

    Its metrics are empty (each member's are in ``extra["members"]``; ``isamap-evaluate``
    scores the joined model); its calibration names the members' temperatures, which the
    network applies inside the mean (the mean's own is added by :func:`join_model_files`).

    Raises:
        ModelError: the members' descriptions differ (a member folder of another command).
    """
    metas = [_as_recorded(m) for m in metas]  # an argument added since reads as it was
    first = metas[0]
    for i, meta in enumerate(metas[1:], 1):
        differ = [f for f in SHARED_FIELDS if getattr(meta, f) != getattr(first, f)]
        if differ:
            raise ModelError(f"member {i} of {cfg.run.out_dir} differs from member 0 in "
                             f"{', '.join(differ)}: its folder holds another command's run; "
                             "remove it and run again")
    record = [{"seed": cfg.loop.seed + i, "temperature": m.temperature,
               "metrics": dict(m.metrics)} for i, m in enumerate(metas)]
    return dataclasses.replace(
        first, model_kwargs={**dict(first.model_kwargs), "members": len(metas)},
        metrics={}, calibration={"method": "members",
                                 "temperatures": [m.temperature for m in metas]},
        extra={**dict(first.extra), "config": cfg.run_record(), "members": record})


def _joined_already(out: Path, model: MemberMean, meta: ModelMeta) -> bool:
    """Whether ``out`` joins the same members as ``model`` and records its mean's fit.

    Then the file is kept as it is: the fit is not made again, so running the command again
    leaves its bytes (and every map made with it) as they are.
    """
    try:  # every check of a model file, its recorded digests included
        net, there = load_model_file(out, flag="joined model file")
    except (OSError, ModelError):  # none yet, or damaged: written anew
        return False
    return isinstance((there.calibration or {}).get("joined"), Mapping) \
        and dict(there.model_kwargs) == dict(meta.model_kwargs) \
        and weights_digest(net.state_dict()) == weights_digest(model.state_dict())


def _as_recorded(meta: ModelMeta) -> ModelMeta:
    """``meta`` with the network arguments it predates filled as it was made.

    A member trained before its recipe gained an argument (``member_views``) records none;
    one trained after, by the same command, records the value that reads the same.
    """
    return dataclasses.replace(meta, model_kwargs=as_recorded(meta.name, meta.model_kwargs))


def join_model_files(paths: Sequence[Path], out: Path, cfg: TrainConfig) -> Path:
    """Join the members' model files in one (written atomically at ``out``).

    The mean's own temperature is fitted on ``cfg.data.root``'s validation split
    (:func:`training.calibration.record.fit_joined`): the calibration record's ``temperature``
    (which every prediction path applies to the mean, as to one network's logits; absent
    where the fit keeps 1), with the whole fit as its ``joined``.
    """
    loaded = [load_model_file(p, flag="member model file") for p in paths]
    meta = joined_meta([m for _, m in loaded], cfg)
    model = MemberMean([net for net, _ in loaded], [m.temperature for _, m in loaded],
                       views=bool(dict(meta.model_kwargs).get("member_views", False)))
    if _joined_already(out, model, meta):  # the same members, their mean's fit recorded
        log.info("%s joins these members already: kept", out)
        return out
    record = fit_joined(model, meta, str(cfg.data.root), recipe_values(cfg).batch_size,
                        resolve_device(cfg.runtime.device, DistInfo()))
    fitted = {"temperature": record["temperature"]} if record.get("method") == "temperature" \
        else {}
    meta = dataclasses.replace(meta, calibration={**dict(meta.calibration), **fitted,
                                                  "joined": record})
    log.info("calibration: %s", describe(meta.calibration))
    return save_model_file(out, model.cpu(), meta)
