"""Publish a map series as one Earth Engine ImageCollection, one image per date.

Built on the steps :mod:`inference.publish.image` uses (the asset calls through the Earth Engine
session, task waiting and sharing of :mod:`inference.publish.assets`, the checksum-verified
uploads of :mod:`inference.publish.cog_sources`): each date's class and
probability COGs become the image ``<collection>/isa_<YYYY_MM>`` whose ImageManifest carries the
month as ``startTime``/``endTime`` (Earth Engine's ``system:time_start``/``time_end``) and the
model, recipe and metrics as properties; the collection gets a Code Editor app
(:func:`inference.publish.code_editor.series_app_script`). Everything up to the first upload is
pure, so ``--dry-run`` prints and saves the same manifests and script offline; a real run saves
them once the first date's ingestion has started
(:func:`inference.publish.image.save_publication`), so a publication refused or failed before
leaves no files claiming it (and an earlier run's as they were).

An asset that already exists is refused unless ``overwrite``: the collection may exist (a
series is extended date by date), but none of the images about to be written may.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contract.publishing import PublishOptions
from core.errors import ConfigError
from inference.publish.asset_manifest import (
    asset_name,
    build_manifest,
    validate_manifest,
)
from inference.publish.assets import (
    FINISHED,
    EarthEngineAssets,
    connect,
    share,
    sharing_line,
    wait_for_ingestion,
)
from inference.publish.code_editor import series_app_script
from inference.publish.cog_sources import check_upload_prefix, cog_uris, upload_cogs
from inference.publish.image import SAVED_ONCE_MADE, save_publication
from inference.publish.quota import check_caps, footprint

log = logging.getLogger(__name__)


def image_name(collection: str, month: str) -> str:
    """The asset name of one date's image inside the collection."""
    return f"{collection}/isa_{month.replace('-', '_')}"


def collection_manifest(collection: str, month: str, uris: Mapping[str, str],
                        properties: Mapping[str, Any]) -> dict[str, Any]:
    """The validated ImageManifest of one date's image (ingestion into the collection)."""
    manifest = build_manifest(image_name(collection, month), uris, month=month,
                              properties=properties, mode="ingest")
    validate_manifest(manifest, "ingest")
    return manifest


@dataclass(frozen=True)
class SeriesPublication:
    """What publishing a series produced (or would produce, in a dry run)."""

    collection: str
    manifests: dict[str, dict[str, Any]]
    script: str
    manifest_path: Path
    script_path: Path
    task_ids: dict[str, str] = field(default_factory=dict)
    state: str = "DRY_RUN"


@dataclass(frozen=True)
class SeriesRequest:
    """What to publish: one ``(class COG, probability COG)`` pair per month, and its app.

    Attributes:
        collection_id: the ImageCollection (full name, or a path inside the options' project).
        cogs: month -> (class COG, probability COG).
        properties: month -> the image's properties.
        options: project, upload prefix (each date's COGs go under ``<prefix>/<month>/``),
            readers, overwrite, wait.
        classes / isa_class / zones / scale / areas: what the series app shows
            (:func:`inference.publish.code_editor.series_app_script`).
    """

    collection_id: str
    cogs: Mapping[str, tuple[str, str]]
    properties: Mapping[str, Mapping[str, Any]]
    options: PublishOptions = field(default_factory=PublishOptions)
    classes: tuple[str, ...] = ("pervious", "impervious")
    isa_class: int = 1
    zones: dict | None = None  # a FeatureCollection in EPSG:4326, a ``name`` per feature
    scale: float = 10.0
    areas: Mapping[str, Sequence[tuple[str, float]]] | None = None  # zone -> (month, ISA km²)

    def app_script(self, name: str) -> str:
        """The Code Editor app over the collection ``name``."""
        return series_app_script(name, sorted(self.cogs), classes=self.classes,
                                 isa_class=self.isa_class, zones=self.zones, scale=self.scale,
                                 title=f"isamap ISA series {name}", areas=self.areas)


def publish_series(request: SeriesRequest, out_dir: str | Path, *, dry_run: bool = False,
                   save: bool = True, assets: EarthEngineAssets | None = None,
                   echo: Callable[[str], None] | None = None,
                   poll_seconds: float = 10.0) -> SeriesPublication:
    """Build, print (and save) the manifests and the app; unless ``dry_run``, publish them.

    Args:
        request: the series, and how to publish it (its options).
        out_dir: local folder receiving ``<name>.collection.json`` and ``<name>.app.js``.
        dry_run: stop after printing (no upload, no Earth Engine call).
        save: write the manifests and the app under ``out_dir`` in a dry run (the map's dry
            run writes nothing, the demo's prepared publication saves them); a real run
            saves them once the first ingestion task has started, never before.
        assets: the Earth Engine seam (default: :func:`inference.publish.assets.connect`).
        echo: where the manifests, the app and progress lines go (default: this module's log).
        poll_seconds: task polling interval when waiting.
    """
    echo = echo or log.info
    options = request.options
    name = asset_name(request.collection_id, options.project)
    months = sorted(request.cogs)
    if not months:
        raise ConfigError("no mapped date to publish")
    prefix = options.gcs_prefix  # each date's local COGs are uploaded to <prefix>/<month>
    uris = {m: cog_uris(request.cogs[m], f"{prefix.rstrip('/')}/{m}" if prefix else None, dry_run)
            for m in months}
    manifests = {m: collection_manifest(name, m, uris[m], request.properties.get(m, {}))
                 for m in months}
    script = request.app_script(name)
    paths = _paths(Path(out_dir), name)
    document = {"collection": name, "images": manifests}
    if dry_run and save:
        save_publication(paths, document, script)
    _show(paths, document, script, "" if dry_run and save else (
        f", {SAVED_ONCE_MADE}" if not dry_run else None), echo)
    adds = footprint(len(months) + 1, [p for m in months for p in request.cogs[m]])
    echo(f"# assets: {check_caps(adds)}")
    echo(f"# sharing: {sharing_line(options.readers, options.public)}")
    if dry_run:
        echo("# dry run: nothing uploaded, no Earth Engine call made")
        echo(f"# the real run {overwrite_effect(options.overwrite)} images of these dates that "
             f"already exist in {name}")
        return SeriesPublication(name, manifests, script, *paths)
    # Earth Engine first: an unauthenticated, full or taken target fails before any upload
    assets = check_publication(options, local_cogs=False, assets=assets)
    quota = assets.project_quota(name)
    if quota:
        echo(f"# assets: {check_caps(adds, quota)}")
    _prepare_collection(assets, name, [image_name(name, m) for m in months], options.overwrite)
    for m in months:
        upload_cogs(request.cogs[m], uris[m], echo)
    task_ids, state = _ingest(assets, name, manifests, options, echo, poll_seconds,
                              lambda: save_publication(paths, document, script))
    share(assets, name, options, state, echo, what="tasks")
    return SeriesPublication(name, manifests, script, *paths, task_ids, state)


def check_publication(options: PublishOptions, local_cogs: bool,
                      assets: EarthEngineAssets | None = None) -> EarthEngineAssets:
    """What publishing needs of its environment, checked before the work it publishes.

    ``isamap-map`` calls it before its first date: the upload prefix of local COGs (given, a
    Cloud Storage address), then Earth Engine initialised and authenticated for the options'
    project. Returns the connected seam (``assets`` when given: tests pass one).

    Raises:
        ConfigError: ``local_cogs`` and no usable ``--gcs-prefix``.
        AuthenticationError: Earth Engine is not authenticated or has no project.
    """
    if local_cogs:
        check_upload_prefix(options.gcs_prefix)
    return assets or connect(options.project)


def _paths(out: Path, name: str) -> tuple[Path, Path]:
    """Where the manifests and the app of collection ``name`` are saved under ``out``."""
    stem = name.rsplit("/", 1)[-1]
    return out / f"{stem}.collection.json", out / f"{stem}.app.js"


def _show(paths: tuple[Path, Path], document: Mapping[str, Any], script: str,
          when: str | None, echo: Callable[[str], None]) -> None:
    """Print the manifests and the app, and where they are.

    ``when``: "" saved, None not saved at all, else when they will be.
    """
    where = (lambda path: "") if when is None else (lambda path: f" ({path}{when})")
    echo(f"# Earth Engine ImageCollection {document['collection']}: "
         f"{len(document['images'])} image manifests{where(paths[0])}:")
    echo(json.dumps(document, indent=2))
    echo(f"# Code Editor app{where(paths[1])}:")
    echo(script)


def _ingest(assets: EarthEngineAssets, name: str, manifests: Mapping[str, dict[str, Any]],
            options: PublishOptions, echo: Callable[[str], None], poll_seconds: float,
            started: Callable[[], None]) -> tuple[dict[str, str], str]:
    """Start every date's ingestion (and wait, with ``options.wait``): task ids and state.

    ``started`` (the manifests and the app saved) is called once the first task exists,
    before the others and any wait: a failure after it leaves them saved.
    """
    task_ids, operations = {}, {}
    for m in sorted(manifests):
        ingestion = assets.start_ingestion(manifests[m], options.overwrite)
        task_ids[m], operations[m] = ingestion.task_id, ingestion.operation
        echo(f"started ingestion task {ingestion.task_id} for {image_name(name, m)}")
        if len(task_ids) == 1:
            started()
    if not options.wait:
        return task_ids, "SUBMITTED"
    states = {m: wait_for_ingestion(assets, op, poll_seconds) for m, op in operations.items()}
    return task_ids, "COMPLETED" if all(s in FINISHED for s in states.values()) else "FAILED"


def overwrite_effect(overwrite: bool) -> str:
    """What a publication does to assets that already exist (the dry run says it)."""
    return ("replaces (--overwrite)" if overwrite else
            "refuses to replace (add --overwrite to replace them)")


def _prepare_collection(assets: EarthEngineAssets, name: str, images: Sequence[str],
                        overwrite: bool) -> None:
    """Create the collection (and folders above it) when missing.

    Existing images of the series are refused unless ``overwrite``.
    """
    kind = assets.asset_type(name)
    if kind is None:
        for created in assets.ensure_parents(images[0], parent_type="IMAGE_COLLECTION"):
            log.info("created %s", created)
    elif kind.upper() not in ("IMAGE_COLLECTION", "IMAGECOLLECTION"):
        raise ConfigError(f"{name} exists and is a {kind}, not an ImageCollection; choose "
                          "another --publish parent or delete it")
    taken = [image for image in images if assets.asset_type(image) is not None]
    if taken and not overwrite:
        raise ConfigError(f"{len(taken)} image(s) of the series already exist ({taken[0]}...); "
                          "pass --overwrite to replace them")
