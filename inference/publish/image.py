"""Publish prediction COGs as an Earth Engine image asset.

Steps, each a function of its own so other publishers (a monthly ImageCollection,
:mod:`inference.publish.collection`) reuse them:

1. build, validate and print the ImageManifest (:func:`image_manifest`,
   :mod:`inference.publish.asset_manifest`) and the Code Editor script; a dry run saves them
   now, a real run once step 3 has made the asset (or started its ingestion), so a run that
   fails before leaves the files an earlier run saved as they were;
2. :meth:`~inference.publish.assets.EarthEngineAssets.ensure_parents`: create the folders above
   the asset that do not exist yet (and its parent as an ImageCollection when asked): ingestion
   does not create them. It is the first Earth Engine call and comes before the upload of the
   COGs to ``gs://`` (:func:`inference.publish.cog_sources.upload_cogs`), so missing
   credentials cost no upload;
3. :meth:`~inference.publish.assets.EarthEngineAssets.start_ingestion` (``image:import``: Earth
   Engine copies the pixels) returns the *server's* task id and operation name, or
   :meth:`~inference.publish.assets.EarthEngineAssets.import_external`
   (``image:importExternal``: a COG-backed asset; the bucket is checked first by
   :func:`inference.publish.cog_sources.check_external_bucket`);
4. :func:`inference.publish.assets.wait_for_ingestion` polls that operation with a progress bar
   fed by its reported progress;
5. :func:`inference.publish.assets.share`: the asset's IAM policy read, the readers (and
   ``allUsers``) added, written back with its etag, every other binding kept.

What to publish is a :class:`PublishRequest`; how (project, upload prefix, readers, overwrite,
wait) its :class:`contract.publishing.PublishOptions`, the value ``isamap-map --publish`` passes
too.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contract.publishing import PublishOptions
from core.storage import atomic_write
from inference.publish.asset_manifest import Mode, asset_name, build_manifest, validate_manifest
from inference.publish.assets import (
    EarthEngineAssets,
    connect,
    share,
    sharing_line,
    wait_for_ingestion,
)
from inference.publish.code_editor import code_editor_script
from inference.publish.cog_sources import (
    DEFAULT_CLASSES,
    check_cog_pair,
    check_external_bucket,
    cog_uris,
    upload_cogs,
)
from inference.publish.properties import asset_properties
from inference.publish.quota import check_caps, footprint

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublishRequest:
    """What to publish (``isamap-publish``).

    Attributes:
        class_path / prob_path: the two COGs (local or gs://).
        asset_id: destination (full name, ``users/...``, or a path inside the options'
            ``project``).
        options: project, upload prefix, readers, overwrite, wait.
        mode: ``"ingest"`` (startIngestion) or ``"external"`` (COG-backed asset).
        metrics: model metrics recorded as asset properties (COG tags are added).
        month: ``YYYY-MM`` of the composite (default: the COGs' ``month`` tag).
    """

    class_path: str
    prob_path: str
    asset_id: str
    options: PublishOptions = field(default_factory=PublishOptions)
    mode: Mode = "ingest"
    metrics: Mapping[str, float] = field(default_factory=dict)
    month: str | None = None

    @property
    def cogs(self) -> tuple[str, str]:
        """The (class, probability) COGs."""
        return self.class_path, self.prob_path


@dataclass(frozen=True)
class PublishResult:
    asset: str
    manifest: dict[str, Any]
    script: str
    manifest_path: Path
    script_path: Path
    task_id: str | None = None
    state: str = "DRY_RUN"
    operation: str | None = None
    created: tuple[str, ...] = ()


def image_manifest(request: PublishRequest, name: str, uris: Mapping[str, str],
                   tags: Mapping[str, str]) -> tuple[dict[str, Any], str]:
    """The validated manifest of ``request``'s image ``name`` and its Code Editor script.

    The asset's properties are what the class COG's ``tags`` record (model, bands, classes,
    month, code version, metrics; :func:`~inference.publish.cog_sources.check_cog_pair`
    reads them), with ``request.metrics`` on top.
    """
    month = request.month or tags.get("month") or None
    classes = tuple(c for c in tags.get("classes", ",".join(DEFAULT_CLASSES)).split(",") if c)
    metrics = {k[len("metric_"):]: _number(v) for k, v in tags.items()
               if k.startswith("metric_")}
    properties = asset_properties(
        model=tags.get("model", ""), bands=[b for b in tags.get("bands", "").split(",") if b],
        classes=classes, month=month, code_version=tags.get("version", ""),
        metrics={**metrics, **request.metrics})
    manifest = build_manifest(name, uris, month=month, properties=properties, mode=request.mode)
    validate_manifest(manifest, request.mode)
    script = code_editor_script(name, [b["id"] for b in manifest["bands"]], classes=classes,
                                title=f"isamap ISA map {tags.get('model', '')} {month or ''}")
    return manifest, script


def publish(request: PublishRequest, out_dir: str | os.PathLike, *, dry_run: bool = False,
            assets: EarthEngineAssets | None = None, echo: Callable[[str], None] | None = None,
            poll_seconds: float = 10.0,
            sleep: Callable[[float], None] = time.sleep) -> PublishResult:
    """Upload, validate, create the parents, start the asset creation, share, write the script.

    Args:
        request: what to publish, and how (its options).
        out_dir: local folder receiving ``<name>.manifest.json`` and ``<name>.js``.
        dry_run: only build, validate, save and print the manifest and the script.
        assets: the Earth Engine seam (default: :func:`inference.publish.assets.connect` to
            the options' project).
        echo: where the manifest, the script and progress lines go (default: this module's
            logger at INFO; ``isamap-publish`` passes ``print``, they are its result).
        poll_seconds: task polling interval when waiting.
        sleep: the wait between polls (tests pass a no-op).
    """
    echo = echo or logger.info
    tags = check_cog_pair(*request.cogs)  # the one opening of each COG
    options = request.options
    name = asset_name(request.asset_id, options.project)
    uris = cog_uris(request.cogs, options.gcs_prefix, dry_run)
    manifest, script = image_manifest(request, name, uris, tags)
    paths = _paths(Path(out_dir), name)
    if dry_run:  # a real run saves them once the asset is being made, never for a failed one
        save_publication(paths, manifest, script)
    _show(paths, manifest, script, request.mode, echo, saved=dry_run)
    adds = footprint(1, list(request.cogs), request.mode)
    echo(f"# assets: {check_caps(adds)}")
    echo(f"# sharing: {sharing_line(options.readers, options.public)}")
    if dry_run:
        echo("# dry run: nothing uploaded, no Earth Engine call made")
        return PublishResult(name, manifest, script, *paths)
    if request.mode == "external":  # reads the bucket's metadata only
        for uri in uris.values():
            check_external_bucket(uri, warn=echo)
    assets = assets or connect(options.project)
    created = assets.ensure_parents(name)  # the first Earth Engine call: access before uploads
    for parent in created:
        echo(f"created folder {parent}")
    quota = assets.project_quota(name)
    if quota:
        echo(f"# assets: {check_caps(adds, quota)}")
    upload_cogs(request.cogs, uris, echo)
    task_id, operation, state = _create(assets, request, name, manifest, echo,
                                        lambda op: wait_for_ingestion(
                                            assets, op, poll_seconds, sleep=sleep),
                                        lambda: save_publication(paths, manifest, script))
    share(assets, name, options, state, echo)
    return PublishResult(name, manifest, script, *paths, task_id, state, operation,
                         tuple(created))


def _paths(out: Path, name: str) -> tuple[Path, Path]:
    """Where the manifest and the script of asset ``name`` are saved under ``out``."""
    stem = name.rsplit("/", 1)[-1]
    return out / f"{stem}.manifest.json", out / f"{stem}.js"


SAVED_ONCE_MADE = "saved once the asset is being made"  #: where a real run's files will be


def save_publication(paths: tuple[Path, Path], manifest: Mapping[str, Any], script: str) -> None:
    """Write a publication's manifest and script to ``paths`` (the one writer of both).

    A real run calls it once the asset is being made (its ingestion started), never before:
    a publication refused or failed before that leaves the files of an earlier run as they
    were, and none that claim an asset that does not exist (``isamap-publish`` and
    ``isamap-map --publish`` alike).
    """
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    _write_text(paths[0], json.dumps(manifest, indent=2))
    _write_text(paths[1], script)


def _show(paths: tuple[Path, Path], manifest: dict[str, Any], script: str, mode: Mode,
          echo: Callable[[str], None], saved: bool) -> None:
    """Print the manifest and the script, and where they are (or will be, once made) saved."""
    when = "" if saved else f", {SAVED_ONCE_MADE}"
    echo(f"# Earth Engine {mode} manifest ({paths[0]}{when}):")
    echo(json.dumps(manifest, indent=2))
    echo(f"# Code Editor script ({paths[1]}{when}):")
    echo(script)


def _create(assets: EarthEngineAssets, request: PublishRequest, name: str,
            manifest: dict[str, Any], echo: Callable[[str], None],
            wait: Callable[[str], str],
            started: Callable[[], None]) -> tuple[str | None, str | None, str]:
    """Create the asset: its task id and operation (ingestion only) and its state.

    ``started`` (the manifest and the script saved) is called as soon as the asset or its
    ingestion task exists, before any wait: an interrupted or failed wait leaves them saved.
    """
    if request.mode == "external":
        assets.import_external(manifest, request.options.overwrite)
        echo(f"created COG-backed asset {name}")
        started()
        return None, None, "COMPLETED"
    ingestion = assets.start_ingestion(manifest, request.options.overwrite)
    echo(f"started ingestion task {ingestion.task_id} for {name}")
    started()
    state = wait(ingestion.operation) if request.options.wait else "SUBMITTED"
    return ingestion.task_id, ingestion.operation, state


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def _write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda handle: handle.write(text.encode()))
