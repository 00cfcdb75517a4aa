"""Publish a map series as one Earth Engine ImageCollection, one image per date.

Built on :mod:`inference.publish.image` (the asset calls through the Earth Engine session, checksum-
verified uploads through the storage seam, task waiting, sharing): each date's class and
probability COGs become the image ``<collection>/isa_<YYYY_MM>`` whose ImageManifest carries the
month as ``startTime``/``endTime`` (Earth Engine's ``system:time_start``/``time_end``) and the
model, recipe and metrics as properties; the collection gets a Code Editor app
(:func:`inference.publish.code_editor.series_app_script`). Everything up to the first upload is
pure, so ``--dry-run`` prints and saves the same manifests and script offline.

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

from core.errors import ConfigError
from core.storage import atomic_write, files
from inference.publish.asset_manifest import (
    asset_name,
    build_manifest,
    validate_manifest,
)
from inference.publish.code_editor import series_app_script
from inference.publish.image import (
    FINISHED,
    EarthEngineAssets,
    PublishRequest,
    acl_ch_arguments,
    check_readers,
    connect,
    sharing_line,
    target_uri,
    wait_for_ingestion,
)
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
    """What to publish: one ``(class COG, probability COG)`` pair per month."""

    collection_id: str
    cogs: Mapping[str, tuple[str, str]]
    properties: Mapping[str, Mapping[str, Any]]  # month -> image properties
    project: str | None = None
    gcs_prefix: str | None = None
    public: bool = False
    readers: tuple[str, ...] = ()
    overwrite: bool = False
    wait: bool = False
    classes: tuple[str, ...] = ("pervious", "impervious")
    isa_class: int = 1
    zones: dict | None = None  # a FeatureCollection in EPSG:4326, a ``name`` per feature
    scale: float = 10.0
    areas: Mapping[str, Sequence[tuple[str, float]]] | None = None  # zone -> (month, ISA km²)


def publish_series(request: SeriesRequest, out_dir: str | Path, *, dry_run: bool = False,
                   save: bool = True, assets: EarthEngineAssets | None = None,
                   echo: Callable[[str], None] | None = None,
                   poll_seconds: float = 10.0) -> SeriesPublication:
    """Build, print (and save) the manifests and the app; unless ``dry_run``, publish them.

    Args:
        request: the series.
        out_dir: local folder receiving ``<name>.collection.json`` and ``<name>.app.js``.
        dry_run: stop after printing (no upload, no Earth Engine call).
        save: write the manifests and the app under ``out_dir`` (always on a real run; the
            map's dry run writes nothing, the demo's prepared publication saves them).
        assets: the Earth Engine seam (default: :func:`inference.publish.image.connect`).
        echo: where the manifests, the app and progress lines go (default: this module's log).
        poll_seconds: task polling interval when waiting.
    """
    echo = echo or log.info
    name = asset_name(request.collection_id, request.project)
    months = sorted(request.cogs)
    if not months:
        raise ConfigError("no mapped date to publish")
    per_date = {m: PublishRequest(*request.cogs[m], image_name(name, m), gcs_prefix=(
        f"{request.gcs_prefix.rstrip('/')}/{m}" if request.gcs_prefix else None),
        public=request.public, readers=request.readers) for m in months}
    readers = check_readers(per_date[months[0]])  # validated before anything is uploaded
    uris = {m: {kind: target_uri(path, per_date[m].gcs_prefix, dry_run)
                for kind, path in (("class", r.class_path), ("probability", r.prob_path))}
            for m, r in per_date.items()}
    manifests = {m: collection_manifest(name, m, uris[m], request.properties.get(m, {}))
                 for m in months}
    script = series_app_script(name, months, classes=request.classes,
                               isa_class=request.isa_class, zones=request.zones,
                               scale=request.scale, title=f"isamap ISA series {name}",
                               areas=request.areas)
    out = Path(out_dir)
    stem = name.rsplit("/", 1)[-1]
    manifest_path = out / f"{stem}.collection.json"
    script_path = out / f"{stem}.app.js"
    text = json.dumps({"collection": name, "images": manifests}, indent=2)
    if save or not dry_run:
        atomic_write(manifest_path, lambda fh: fh.write(text.encode()))
        atomic_write(script_path, lambda fh: fh.write(script.encode()))
    where = (lambda path: f" ({path})") if save or not dry_run else (lambda path: "")
    echo(f"# Earth Engine ImageCollection {name}: {len(months)} image manifests"
         f"{where(manifest_path)}:")
    echo(text)
    echo(f"# Code Editor app{where(script_path)}:")
    echo(script)
    adds = footprint(len(months) + 1, [p for r in per_date.values()
                                       for p in (r.class_path, r.prob_path)])
    echo(f"# assets: {check_caps(adds)}")
    echo(f"# sharing: {sharing_line(readers, request.public)}")
    if dry_run:
        echo("# dry run: nothing uploaded, no Earth Engine call made")
        echo(f"# the real run {overwrite_effect(request.overwrite)} images of these dates that "
             f"already exist in {name}")
        return SeriesPublication(name, manifests, script, manifest_path, script_path)
    # Earth Engine first: an unauthenticated, full or taken target fails before any upload
    assets = assets or connect(request.project)
    quota = assets.project_quota(name)
    if quota:
        echo(f"# assets: {check_caps(adds, quota)}")
    _prepare_collection(assets, name, [image_name(name, m) for m in months], request.overwrite)
    for m, req in per_date.items():
        for kind, path in (("class", req.class_path), ("probability", req.prob_path)):
            if not files.is_gcs(path):
                echo(f"uploading {path} -> {uris[m][kind]}")
                files.upload_file(Path(path), uris[m][kind])
    task_ids, operations = {}, {}
    for m in months:
        ingestion = assets.start_ingestion(manifests[m], request.overwrite)
        task_ids[m], operations[m] = ingestion.task_id, ingestion.operation
        echo(f"started ingestion task {ingestion.task_id} for {image_name(name, m)}")
    state = "SUBMITTED"
    if request.wait:
        states = {m: wait_for_ingestion(assets, op, poll_seconds) for m, op in operations.items()}
        state = "COMPLETED" if all(s in FINISHED for s in states.values()) else "FAILED"
    if readers or request.public:
        if state in FINISHED:
            assets.share(name, readers, request.public)
            echo(f"shared {name} with "
                 f"{', '.join([*readers, *(['allUsers'] * request.public)])}")
        else:
            echo(f"not shared yet (tasks {state}); when they finish run: earthengine acl ch "
                 f"{acl_ch_arguments(readers, request.public)} {name}")
    return SeriesPublication(name, manifests, script, manifest_path, script_path, task_ids,
                             state)


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
