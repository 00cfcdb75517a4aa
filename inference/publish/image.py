"""Publish prediction COGs as an Earth Engine image asset.

Steps, each a function of its own so other publishers (a monthly ImageCollection) reuse them:

1. build and validate the ImageManifest (:mod:`inference.publish.asset_manifest`);
2. :meth:`EarthEngineAssets.ensure_parents`: create the folders above the asset that do not
   exist yet (and its parent as an ImageCollection when asked): ingestion does not create them.
   It is the first Earth Engine call and comes before the upload of the COGs to ``gs://``
   (MD5-verified, through the storage seam), so missing credentials cost no upload;
3. :meth:`EarthEngineAssets.start_ingestion` (``image:import``: Earth Engine copies the pixels)
   returns an :class:`Ingestion` holding the *server's* task id and operation name (the request
   id the client makes up is never sent), or :meth:`EarthEngineAssets.import_external`
   (``image:importExternal``: a COG-backed asset; the bucket is checked first by
   :func:`check_external_bucket`);
4. :func:`wait_for_ingestion` polls that operation with a progress bar fed by its reported
   progress;
5. :meth:`EarthEngineAssets.share`: read the asset's IAM policy, add the readers (and
   ``allUsers``), write it back with its etag, keeping every other binding.

Every Earth Engine call goes through :class:`gee_export.ee.session.EESession` (the one seam
and the one retry loop; authentication failures as one clear error).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from core.errors import (
    AuthenticationError,
    ConfigError,
    EarthEngineError,
    QuotaError,
    StorageError,
)
from core.progress import progress_bar
from core.storage import atomic_write, files
from gee_export.ee.session import EESession, EETransport, http_status, operation_status
from inference.publish.asset_manifest import Mode, asset_name, build_manifest, validate_manifest
from inference.publish.code_editor import code_editor_script
from inference.publish.properties import asset_properties
from inference.publish.quota import check_caps, footprint

logger = logging.getLogger(__name__)

PUBLISH_WITHOUT_ACCOUNT = """No account? Publishing needs one; without it, --dry-run writes the
image manifest and the Code Editor script, and the COGs themselves open in any GIS."""
"""What ``isamap-publish`` can do without an Earth Engine account (its authentication advice)."""

ContainerType = Literal["FOLDER", "IMAGE_COLLECTION"]
VIEWER = "roles/viewer"
FINISHED = ("COMPLETED",)
ENDED_BADLY = ("FAILED", "CANCELLED", "CANCEL_REQUESTED")
# image:importExternal reads COGs in place. Earth Engine serves them only from the US
# multi-region, a US dual-region including US-CENTRAL1 (NAM4 is the predefined one), or
# US-CENTRAL1 itself; the Standard storage class is recommended, not required.
EXTERNAL_REGION = "US-CENTRAL1"
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
    operation: str | None = None
    created: tuple[str, ...] = ()


@dataclass(frozen=True)
class Ingestion:
    """A started ingestion.

    Attributes:
        request_id: the id the client made up (``ee.data.newTaskId``); earthengine-api 1.7
            does not send it, so it identifies nothing on the server.
        task_id: the server's task id (what the Tasks tab and ``earthengine task`` show).
        operation: the server's operation name, ``projects/<p>/operations/<task_id>``.
    """

    request_id: str
    task_id: str
    operation: str


@dataclass(frozen=True)
class BucketCheck:
    """Whether a bucket can back COG assets: ``problems`` refuse it, ``advice`` only warns."""

    problems: tuple[str, ...] = ()
    advice: tuple[str, ...] = ()


class EarthEngineAssets:
    """The asset calls publishing needs, each one made through the EE session seam."""

    def __init__(self, session: EESession) -> None:
        self.session = session

    def _call(self, what: str, fn: Callable[..., Any], *args: Any,
              idempotent: bool = True) -> Any:
        # The seam turns "client library not initialized" into an AuthenticationError itself.
        return self.session.call(what, fn, *args, idempotent=idempotent)

    @staticmethod
    def _ee() -> Any:
        import ee

        return ee

    def asset_type(self, name: str) -> str | None:
        """The asset's type (``FOLDER``, ``IMAGE_COLLECTION``, ``IMAGE``...), None if absent."""
        try:
            return str(self._call(f"reading asset {name}", self._ee().data.getAsset, name)
                       .get("type", ""))
        except EarthEngineError as exc:
            if http_status(exc).code == 404:
                return None
            raise

    def project_quota(self, name: str) -> dict[str, Any] | None:
        """Usage and limits of the legacy asset root (``users/<name>``) holding ``name``.

        None for an asset of a Cloud project (the service reads no quota for a project root:
        its name ``projects/<p>/assets/`` is refused) and where the root is unreadable
        (someone else's root, a service refusing the read).
        """
        legacy = "projects/earthengine-legacy/assets/users/"
        if not name.startswith(legacy):
            return None
        root = "users/" + name[len(legacy):].split("/", 1)[0]
        try:
            return dict(self._call(f"reading the asset quota of {root}",
                                   self._ee().data.getAssetRootQuota, root))
        except (AuthenticationError, QuotaError):
            raise
        except EarthEngineError as exc:
            logger.warning("cannot read the asset quota of %s (%s); checking the caps against "
                           "this publication alone", root, exc)
            return None

    def ensure_parents(self, name: str, parent_type: ContainerType = "FOLDER") -> list[str]:
        """Create what is missing above asset ``name``; returns the assets created.

        The asset's parent is created as ``parent_type`` (a folder, or the ImageCollection a
        series of images goes into); the ancestors above it as folders. A project's asset
        root and a legacy ``users/<name>`` root always exist. One read when the parent
        exists; otherwise one create per missing level, top down (an "already exists" answer
        means someone made it meanwhile, which is fine).
        """
        root, _, path = name.partition("/assets/")
        parts = path.split("/")[:-1]
        skip = 2 if root == "projects/earthengine-legacy" and parts[:1] == ["users"] else 0
        ancestors = [f"{root}/assets/{'/'.join(parts[:i + 1])}"
                     for i in range(skip, len(parts))]
        if not ancestors:
            return []
        kind = self.asset_type(ancestors[-1])
        if kind is not None:
            if kind not in ("FOLDER", "IMAGE_COLLECTION"):
                raise ConfigError(f"{ancestors[-1]} is an {kind}, not a folder or an image "
                                  "collection: choose another --asset-id")
            return []
        ee = self._ee()
        created = []
        for ancestor in ancestors:
            asset_kind = parent_type if ancestor == ancestors[-1] else "FOLDER"
            try:
                self._call(f"creating {ancestor}", ee.data.createAsset, {"type": asset_kind},
                           ancestor)
            except EarthEngineError as exc:
                if http_status(exc).code != 409:  # 409: it exists (made by someone else)
                    raise
                continue
            created.append(ancestor)
            logger.info("created %s %s", asset_kind.lower().replace("_", " "), ancestor)
        return created

    def start_ingestion(self, manifest: dict[str, Any], overwrite: bool) -> Ingestion:
        """Start ``image:import``; not repeated after an ambiguous failure (see EESession)."""
        ee = self._ee()
        request_id = str(ee.data.newTaskId()[0])  # made locally, no request
        started = self._call("starting the ingestion", ee.data.startIngestion, request_id,
                             manifest, overwrite, idempotent=False)
        return Ingestion(request_id, str(started["id"]), str(started["name"]))

    def import_external(self, manifest: dict[str, Any], overwrite: bool) -> Any:
        ee = self._ee()
        return self._call("image:importExternal", ee.data.startExternalImageIngestion,
                          manifest, overwrite, idempotent=False)

    def operation_status(self, operation: str) -> dict[str, Any]:
        """State, progress (0..1) and error of a long-running operation (by name)."""
        ee = self._ee()
        return operation_status(self._call("reading the ingestion status",
                                           ee.data.getOperation, operation))

    def share(self, asset: str, readers: Sequence[str] = (), public: bool = False
              ) -> dict[str, Any]:
        """Add readers (and everyone, with ``public``) to the asset's IAM policy.

        A read-modify-write of the whole policy, retried as one unit: the policy written back
        carries the etag that was read, so a concurrent change is refused (409 ABORTED) and
        the unit starts over from a fresh read instead of dropping the other change.
        Owners, writers and existing readers are kept (``setAssetAcl`` would replace them).
        """
        ee = self._ee()

        def update() -> dict[str, Any]:
            policy = ee.data.getIamPolicy(asset)
            wanted = with_readers(policy, readers, public)
            return policy if wanted == policy else ee.data.setIamPolicy(asset, wanted)

        return self._call(f"sharing {asset}", update)


def with_readers(policy: Mapping[str, Any], readers: Sequence[str], public: bool
                 ) -> dict[str, Any]:
    """``policy`` with ``readers`` (and ``allUsers``) in its viewer binding; all else kept."""
    out = copy.deepcopy(dict(policy))
    members = [*readers, *(["allUsers"] if public else [])]
    bindings = out.setdefault("bindings", [])
    viewer = next((b for b in bindings if b.get("role") == VIEWER and "condition" not in b),
                  None)
    if viewer is None:
        if not members:
            return out
        viewer = {"role": VIEWER, "members": []}
        bindings.append(viewer)
    viewer.setdefault("members", [])
    viewer["members"] += [m for m in dict.fromkeys(members) if m not in viewer["members"]]
    return out


def connect(project: str | None, ee_module: Any | None = None) -> EarthEngineAssets:
    """An authenticated seam for ``project`` (or around an already initialised ``ee``)."""
    if ee_module is not None:
        return EarthEngineAssets(EESession(project, transport=EETransport(ee_module, project),
                                           without_account=PUBLISH_WITHOUT_ACCOUNT))
    return EarthEngineAssets(EESession(project, high_volume=False,
                                       without_account=PUBLISH_WITHOUT_ACCOUNT).initialize())


def check_external_bucket(uri: str, client: Any | None = None,
                          warn: Callable[[str], None] = logger.warning) -> None:
    """Refuse a bucket Earth Engine cannot serve COG-backed assets from, before any EE call.

    ``warn`` receives what is only advised (the storage class).
    """
    try:
        info = files.bucket_info(uri, client)
    except StorageError as exc:
        raise ConfigError(f"cannot read the bucket of {uri} to check its location ({exc}); "
                          "COG-backed assets need a readable bucket") from exc
    check = judge_external_bucket(info.location, info.data_locations, info.storage_class,
                                  info.location_type)
    if check.problems:
        raise ConfigError(
            f"gs://{info.name} cannot back an Earth Engine COG asset: "
            f"{'; '.join(check.problems)}. Copy the COGs to a conforming bucket "
            "(--gcs-prefix) or use --mode ingest.")
    for advice in check.advice:
        warn(f"gs://{info.name}: {advice}")


def judge_external_bucket(location: str | None, data_locations: Sequence[str] | None,
                          storage_class: str | None, location_type: str | None = None
                          ) -> BucketCheck:
    """The documented rule for COG-backed assets, applied to a bucket's metadata.

    Accepted: the ``US`` multi-region, ``US-CENTRAL1``, the predefined dual-region ``NAM4``
    (US-CENTRAL1 + US-EAST1), and a configurable dual-region (location ``US``, two data
    locations) whose regions include US-CENTRAL1. Any other class than STANDARD is only
    advised against: Earth Engine reads the COGs on every request, and colder classes charge
    for each read and for early deletion.
    """
    location = (location or "").upper()
    members = [m.upper() for m in (data_locations or [])]
    kind = (location_type or "").lower()
    storage_class = (storage_class or "").upper()
    if members:
        ok = location == "US" and EXTERNAL_REGION in members
    elif kind == "dual-region" and location not in ("NAM4",):
        ok = False  # a dual-region whose regions are not known cannot be vouched for
    else:
        ok = location in ("US", EXTERNAL_REGION, "NAM4")
    problems, advice = [], []
    if not ok:
        where = f"{location or 'unknown'}" + (f" ({', '.join(members)})" if members else "")
        problems.append(f"its location is {where}; Earth Engine reads COGs only from the US "
                        "multi-region, US-CENTRAL1, or a US dual-region that includes "
                        "US-CENTRAL1")
    if storage_class != EXTERNAL_STORAGE_CLASS:
        advice.append(f"its storage class is {storage_class or 'unknown'}; Google recommends "
                      "STANDARD for COG-backed assets (colder classes charge per read)")
    return BucketCheck(tuple(problems), tuple(advice))


def cog_properties(path: str) -> dict[str, str]:
    with files.open_raster(path) as ds:
        return ds.tags()


def publish(request: PublishRequest, out_dir: str | os.PathLike, *, dry_run: bool = False,
            assets: EarthEngineAssets | None = None, echo: Callable[[str], None] | None = None,
            poll_seconds: float = 10.0, sleep: Callable[[float], None] = time.sleep,
            progress: bool = True) -> PublishResult:
    """Upload, validate, create the parents, start the asset creation, share, write the script.

    Args:
        request: what to publish.
        out_dir: local folder receiving ``<name>.manifest.json`` and ``<name>.js``.
        dry_run: only build, validate, save and print the manifest and the script.
        assets: the Earth Engine seam (default: :func:`connect` to ``request.project``).
        echo: where the manifest, the script and progress lines go (default: this module's
            logger at INFO; ``isamap-publish`` passes ``print``, they are its result).
        poll_seconds: task polling interval when waiting.
        sleep: the wait between polls (tests pass a no-op).
        progress: show the ingestion progress bar.
    """
    echo = echo or logger.info
    name = asset_name(request.asset_id, request.project)
    readers = check_readers(request)  # validated before anything is uploaded
    tags = cog_properties(request.class_path)
    month = request.month or tags.get("month") or None
    uris = {kind: target_uri(path, request.gcs_prefix, dry_run)
            for kind, path in (("class", request.class_path), ("probability", request.prob_path))}
    classes = tuple(c for c in tags.get("classes", "pervious,impervious").split(",") if c)
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
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = name.rsplit("/", 1)[-1]
    manifest_path = _write_text(out / f"{stem}.manifest.json", json.dumps(manifest, indent=2))
    script_path = _write_text(out / f"{stem}.js", script)
    echo(f"# Earth Engine {request.mode} manifest ({manifest_path}):")
    echo(json.dumps(manifest, indent=2))
    echo(f"# Code Editor script ({script_path}):")
    echo(script)
    adds = footprint(1, [request.class_path, request.prob_path], request.mode)
    echo(f"# assets: {check_caps(adds)}")
    echo(f"# sharing: {sharing_line(readers, request.public)}")
    if dry_run:
        echo("# dry run: nothing uploaded, no Earth Engine call made")
        return PublishResult(name, manifest, script, manifest_path, script_path)
    if request.mode == "external":  # reads the bucket's metadata only
        for uri in uris.values():
            check_external_bucket(uri, warn=echo)
    assets = assets or connect(request.project)
    created = assets.ensure_parents(name)  # the first Earth Engine call: access before uploads
    for parent in created:
        echo(f"created folder {parent}")
    quota = assets.project_quota(name)
    if quota:
        echo(f"# assets: {check_caps(adds, quota)}")
    for kind, path in (("class", request.class_path), ("probability", request.prob_path)):
        if not files.is_gcs(path):
            echo(f"uploading {path} -> {uris[kind]}")
            files.upload_file(Path(path), uris[kind])
    task_id = operation = None
    if request.mode == "external":
        assets.import_external(manifest, request.overwrite)
        state = "COMPLETED"
        echo(f"created COG-backed asset {name}")
    else:
        ingestion = assets.start_ingestion(manifest, request.overwrite)
        task_id, operation, state = ingestion.task_id, ingestion.operation, "SUBMITTED"
        echo(f"started ingestion task {task_id} for {name}")
        if request.wait:
            state = wait_for_ingestion(assets, operation, poll_seconds, sleep=sleep,
                                       progress=progress)
    if readers or request.public:
        if state in FINISHED:
            assets.share(name, readers, request.public)
            echo(f"shared {name} with {', '.join([*readers, *(['allUsers'] * request.public)])}")
        else:
            echo(f"not shared yet (task {state}); when it finishes run: earthengine acl ch "
                 f"{acl_ch_arguments(readers, request.public)} {name}")
    return PublishResult(name, manifest, script, manifest_path, script_path, task_id, state,
                         operation, tuple(created))


def wait_for_ingestion(assets: EarthEngineAssets, operation: str, poll_seconds: float = 10.0,
                       timeout: float = 6 * 3600, *,
                       sleep: Callable[[float], None] = time.sleep,
                       progress: bool = True) -> str:
    """Poll an ingestion operation until it ends; the bar shows the progress it reports."""
    deadline = time.monotonic() + timeout
    task_id = operation.rsplit("/", 1)[-1]
    with progress_bar(total=100, desc=f"ingest {task_id[:8]}", unit="%",
                      disable=not progress) as bar:
        while True:
            status = assets.operation_status(operation)
            state = str(status.get("state", "UNKNOWN"))
            bar.update(max(0, round(100 * float(status.get("progress", 0.0))) - bar.n))
            bar.set_postfix_str(state)
            if state in FINISHED:
                return state
            if state in ENDED_BADLY:
                raise EarthEngineError(f"ingestion task {task_id} {state}: "
                                       f"{status.get('error_message') or 'no message'}")
            if time.monotonic() > deadline:
                raise EarthEngineError(f"ingestion task {task_id} still {state} after "
                                       f"{timeout / 3600:.0f} h; check the Tasks tab")
            sleep(poll_seconds)


def sharing_line(readers: Sequence[str], public: bool) -> str:
    """Who will read what is published: the dry run and the real run say it before uploading."""
    if public:
        return ("PUBLIC: readable by everyone (allUsers), its properties (model, bands, "
                "metrics, month) too" + (f"; also shared with {', '.join(readers)}"
                                          if readers else ""))
    if readers:
        return f"shared with {', '.join(readers)}; not public"
    return "private: readable by the project's members only (--public or --reader to share)"


def acl_ch_arguments(readers: Sequence[str], public: bool) -> str:
    """The ``earthengine acl ch`` flags granting read access (it keeps other bindings too)."""
    flags = [f"{'-g' if r.split(':', 1)[0] == 'group' else '-u'} {r.split(':', 1)[1]}:R"
             for r in readers]
    return " ".join([*flags, *(["-u allUsers:R"] if public else [])])


def check_readers(request: PublishRequest) -> list[str]:
    """The readers to share with, refused (before any upload) when one lacks its kind."""
    bad = [r for r in request.readers if ":" not in r]
    if bad:
        raise ConfigError(f"readers {bad} need a kind prefix, e.g. 'user:a@b.com', "
                          "'group:team@b.com' or 'serviceAccount:...'")
    return list(request.readers)


def target_uri(path: str, gcs_prefix: str | None, dry_run: bool) -> str:
    """Where a COG is ingested from: itself on gs://, else its upload under ``gcs_prefix``.

    A dry run without a prefix gets a visible placeholder instead of an error, so the printed
    manifest is complete.
    """
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


def _write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda handle: handle.write(text.encode()))
