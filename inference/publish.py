"""Publish prediction COGs as an Earth Engine image asset.

Steps: upload the COGs to ``gs://`` (MD5-verified, through the storage seam), build and
validate the ImageManifest, then either start an ingestion task (``ee.data.startIngestion``:
Earth Engine copies the pixels and builds its own pyramids) or create a COG-backed asset
(``image:importExternal``: Earth Engine reads the COGs in place, so the bucket must satisfy its
location and storage-class rules, checked here before any call). Optionally share the asset,
wait for the task with a progress bar, and write a Code Editor script that shows it.

Every Earth Engine call goes through :class:`gee_export.core.ee_session.EESession` (the one seam:
retries with backoff, authentication failures as one clear error).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rasterio
from tqdm.auto import tqdm

from gee_export.core.ee_session import EESession, EETransport
from gee_export.core.errors import (
    AuthenticationError,
    ConfigError,
    EarthEngineError,
    StorageError,
)
from gee_export.core.storage import files
from inference.asset_manifest import Mode, asset_name, build_manifest, validate_manifest
from inference.code_editor import code_editor_script

# image:importExternal reads COGs in place; Earth Engine only serves them from these.
EXTERNAL_LOCATIONS = ("US", "US-CENTRAL1")
EXTERNAL_DUAL_REGION_MEMBER = "US-CENTRAL1"
EXTERNAL_STORAGE_CLASS = "STANDARD"


@dataclass(frozen=True)
class PublishRequest:
    """What to publish and how.

    Attributes:
        class_path / prob_path: the two COGs (local or gs://).
        asset_id: destination (full name, ``users/...``, or a path inside ``project``).
        project: Cloud project of the asset when ``asset_id`` is relative.
        gcs_prefix: where local COGs are uploaded (``gs://bucket/prefix``).
        mode: ``"ingest"`` (startIngestion) or ``"external"`` (COG-backed asset).
        public: make the asset readable by everyone.
        readers: extra readers (``user:a@b.com``, ``group:...``).
        metrics: model metrics recorded as asset properties (COG tags are added).
        month: ``YYYY-MM`` of the composite (default: the COGs' ``month`` tag).
        overwrite: allow replacing an existing asset.
        wait: block until the ingestion task finishes (needed before an ACL on ingestion).
    """

    class_path: str
    prob_path: str
    asset_id: str
    project: str | None = None
    gcs_prefix: str | None = None
    mode: Mode = "ingest"
    public: bool = False
    readers: tuple[str, ...] = ()
    metrics: Mapping[str, float] = field(default_factory=dict)
    month: str | None = None
    overwrite: bool = False
    wait: bool = False


@dataclass(frozen=True)
class PublishResult:
    asset: str
    manifest: dict[str, Any]
    script: str
    manifest_path: Path
    script_path: Path
    task_id: str | None = None
    state: str = "DRY_RUN"


class EarthEngineAssets:
    """The asset calls publishing needs, each one made through the EE session seam."""

    def __init__(self, session: EESession) -> None:
        self.session = session

    def _call(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        # The seam turns "client library not initialized" into an AuthenticationError itself.
        return self.session.call(what, fn, *args)

    @staticmethod
    def _ee() -> Any:
        import ee

        return ee

    def start_ingestion(self, manifest: dict[str, Any], overwrite: bool) -> str:
        ee = self._ee()
        task_id = self._call("ee.data.newTaskId", ee.data.newTaskId)[0]
        self._call("ee.data.startIngestion", ee.data.startIngestion, task_id, manifest,
                   overwrite)
        return str(task_id)

    def import_external(self, manifest: dict[str, Any], overwrite: bool) -> Any:
        ee = self._ee()
        return self._call("image:importExternal", ee.data.startExternalImageIngestion,
                          manifest, overwrite)

    def set_acl(self, asset: str, acl: dict[str, Any]) -> None:
        ee = self._ee()
        self._call("ee.data.setAssetAcl", ee.data.setAssetAcl, asset, json.dumps(acl))

    def task_status(self, task_id: str) -> dict[str, Any]:
        ee = self._ee()
        return self._call("ee.data.getTaskStatus", ee.data.getTaskStatus, [task_id])[0]

    def get_asset(self, name: str) -> dict[str, Any] | None:
        """The asset's metadata, or None when it does not exist (series publishing)."""
        ee = self._ee()
        try:
            return self._call("ee.data.getAsset", ee.data.getAsset, name)
        except EarthEngineError as exc:
            if isinstance(exc, AuthenticationError) or "not found" not in str(exc).lower():
                raise
            return None

    def create_collection(self, name: str) -> None:
        """Create an empty ImageCollection asset ``name`` (series publishing)."""
        ee = self._ee()
        self._call("ee.data.createAsset", ee.data.createAsset, {"type": "IMAGE_COLLECTION"},
                   name)


def connect(project: str | None, ee_module: Any | None = None) -> EarthEngineAssets:
    """An authenticated seam for ``project`` (or around an already initialised ``ee``)."""
    if ee_module is not None:
        return EarthEngineAssets(EESession(project, transport=EETransport(ee_module)))
    return EarthEngineAssets(EESession(project, high_volume=False).initialize())


def check_external_bucket(uri: str, client: Any | None = None) -> None:
    """Refuse a bucket Earth Engine cannot serve COG-backed assets from, before any EE call.

    Earth Engine reads external COGs only from the US multi-region, a dual-region including
    US-CENTRAL1, or US-CENTRAL1 itself, in the Standard storage class.
    """
    try:
        info = files.bucket_info(uri, client)
    except StorageError as exc:
        raise ConfigError(f"cannot read the bucket of {uri} to check its location ({exc}); "
                          "COG-backed assets need a readable bucket") from exc
    problems = external_bucket_problems(info.location, info.data_locations, info.storage_class)
    if problems:
        raise ConfigError(
            f"gs://{info.name} cannot back an Earth Engine COG asset: {'; '.join(problems)}. "
            "Copy the COGs to a conforming bucket (--gcs-prefix) or use --mode ingest.")


def external_bucket_problems(location: str | None, data_locations: Sequence[str] | None,
                             storage_class: str | None) -> list[str]:
    """Why a bucket cannot serve COG-backed assets (empty when it can)."""
    location = (location or "").upper()
    members = [m.upper() for m in (data_locations or [])]
    storage_class = (storage_class or "").upper()
    location_ok = (location in EXTERNAL_LOCATIONS or location == "NAM4"  # US-CENTRAL1+US-EAST1
                   or (EXTERNAL_DUAL_REGION_MEMBER in members and len(members) == 2))
    problems = []
    if not location_ok:
        problems.append(f"its location is {location or 'unknown'}, Earth Engine needs US, "
                        "US-CENTRAL1 or a dual-region including US-CENTRAL1")
    if storage_class != EXTERNAL_STORAGE_CLASS:
        problems.append(f"its storage class is {storage_class or 'unknown'}, Earth Engine "
                        "needs STANDARD")
    return problems


def cog_properties(path: str) -> dict[str, str]:
    with rasterio.open(files.gdal_path(path)) as ds:
        return ds.tags()


def publish(request: PublishRequest, out_dir: str | os.PathLike, *, dry_run: bool = False,
            assets: EarthEngineAssets | None = None, echo: Callable[[str], None] = print,
            poll_seconds: float = 10.0) -> PublishResult:
    """Upload, validate, start the asset creation and write the Code Editor script.

    Args:
        request: what to publish.
        out_dir: local folder receiving ``<name>.manifest.json`` and ``<name>.js``.
        dry_run: only build, validate, save and print the manifest and the script.
        assets: the Earth Engine seam (default: :func:`connect` to ``request.project``).
        echo: where progress lines go.
        poll_seconds: task polling interval when waiting.
    """
    name = asset_name(request.asset_id, request.project)
    acl = _acl(request)  # validated before anything is uploaded
    tags = cog_properties(request.class_path)
    month = request.month or tags.get("month") or None
    uris = {kind: _target_uri(path, request.gcs_prefix, dry_run)
            for kind, path in (("class", request.class_path), ("probability", request.prob_path))}
    properties = {
        "model": tags.get("model", ""), "input_bands": tags.get("bands", ""),
        "classes": tags.get("classes", ""), "isamap_version": tags.get("version", ""),
        "probability_scale": 250, "month": month or "",
        **{k: _number(v) for k, v in tags.items() if k.startswith("metric_")},
        **{f"metric_{k}": v for k, v in request.metrics.items()},
    }
    manifest = build_manifest(name, uris, month=month, properties=properties, mode=request.mode)
    validate_manifest(manifest, request.mode)
    classes = tuple(c for c in tags.get("classes", "pervious,impervious").split(",") if c)
    script = code_editor_script(name, [b["id"] for b in manifest["bands"]], classes=classes,
                                title=f"isamap ISA map {tags.get('model', '')} {month or ''}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = name.rsplit("/", 1)[-1]
    manifest_path = _atomic_text(out / f"{stem}.manifest.json", json.dumps(manifest, indent=2))
    script_path = _atomic_text(out / f"{stem}.js", script)
    echo(f"# Earth Engine {request.mode} manifest ({manifest_path}):")
    echo(json.dumps(manifest, indent=2))
    echo(f"# Code Editor script ({script_path}):")
    echo(script)
    if dry_run:
        echo("# dry run: nothing uploaded, no Earth Engine call made")
        return PublishResult(name, manifest, script, manifest_path, script_path)
    for kind, path in (("class", request.class_path), ("probability", request.prob_path)):
        if not files.is_gcs(path):
            echo(f"uploading {path} -> {uris[kind]}")
            files.upload_file(Path(path), uris[kind])
    if request.mode == "external":
        for uri in uris.values():
            check_external_bucket(uri)
    assets = assets or connect(request.project)
    if request.mode == "external":
        assets.import_external(manifest, request.overwrite)
        task_id, state = None, "SUCCEEDED"
        echo(f"created COG-backed asset {name}")
    else:
        task_id = assets.start_ingestion(manifest, request.overwrite)
        state = "SUBMITTED"
        echo(f"started ingestion task {task_id} for {name}")
        if request.wait:
            state = wait_for_task(assets, task_id, poll_seconds)
    if acl:
        if state in ("SUCCEEDED", "COMPLETED"):
            assets.set_acl(name, acl)
            echo(f"shared {name}: {acl}")
        else:
            echo(f"not shared yet (task {state}); when it finishes run: earthengine acl "
                 f"ch {'-u AllUsers:R ' if request.public else ''}{name}")
    return PublishResult(name, manifest, script, manifest_path, script_path, task_id, state)


def wait_for_task(assets: EarthEngineAssets, task_id: str, poll_seconds: float = 10.0,
                  timeout: float = 6 * 3600) -> str:
    """Poll an ingestion task until it ends; a tqdm bar shows its reported progress."""
    deadline = time.monotonic() + timeout
    with tqdm(total=100, desc=f"ingest {task_id[:8]}", unit="%") as bar:
        while True:
            status = assets.task_status(task_id)
            state = str(status.get("state", "UNKNOWN"))
            progress = float(status.get("progress", 0.0) or 0.0) * 100
            bar.update(max(0.0, progress - bar.n))
            bar.set_postfix_str(state)
            if state in ("COMPLETED", "SUCCEEDED"):
                return state
            if state in ("FAILED", "CANCELLED", "CANCEL_REQUESTED"):
                raise EarthEngineError(f"ingestion task {task_id} {state}: "
                                       f"{status.get('error_message', 'no message')}")
            if time.monotonic() > deadline:
                raise EarthEngineError(f"ingestion task {task_id} still {state} after "
                                       f"{timeout / 3600:.0f} h; check the Tasks tab")
            time.sleep(poll_seconds)


def _acl(request: PublishRequest) -> dict[str, Any]:
    acl: dict[str, Any] = {}
    if request.public:
        acl["all_users_can_read"] = True
    if request.readers:
        bad = [r for r in request.readers if ":" not in r]
        if bad:
            raise ConfigError(f"readers {bad} need a kind prefix, e.g. 'user:a@b.com', "
                              "'group:team@b.com' or 'serviceAccount:...'")
        acl["readers"] = list(request.readers)
    return acl


def _target_uri(path: str, gcs_prefix: str | None, dry_run: bool) -> str:
    if files.is_gcs(path):
        return path
    if not gcs_prefix:
        if dry_run:  # a placeholder the user sees in the printed manifest
            return f"gs://your-bucket/isamap/{Path(path).name}"
        raise ConfigError(f"{path} is local; pass --gcs-prefix gs://bucket/prefix to upload it "
                          "(Earth Engine ingests only from Cloud Storage)")
    files.split_gcs(gcs_prefix.rstrip("/") + "/x")
    return f"{gcs_prefix.rstrip('/')}/{Path(path).name}"


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def _atomic_text(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path
