"""The Earth Engine asset calls publishing makes, each through the one session seam.

:class:`EarthEngineAssets` reads an asset's type and its root's quota, creates the folders (or
the ImageCollection) above an asset, starts an ingestion (``image:import``, returning the
server's task id and operation name) or a COG-backed asset (``image:importExternal``), reads an
operation's state and shares an asset (its IAM policy read, extended and written back with its
etag). :func:`wait_for_ingestion` polls an ingestion with a progress bar; :func:`share` applies
the readers of :class:`contract.publishing.PublishOptions` once the assets exist, or says the
``earthengine acl ch`` to run when they do.

Every call goes through :class:`gee_export.ee.session.EESession` (the one seam and the one retry
loop; authentication failures as one clear error).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from contract.publishing import PublishOptions
from core.errors import AuthenticationError, ConfigError, EarthEngineError, QuotaError
from core.progress import progress_bar
from gee_export.ee.session import EESession, EETransport, http_status, operation_status

logger = logging.getLogger(__name__)

PUBLISH_WITHOUT_ACCOUNT = """No account? Publishing needs one; without it, --dry-run writes the
image manifest and the Code Editor script, and the COGs themselves open in any GIS."""
"""What ``isamap-publish`` can do without an Earth Engine account (its authentication advice)."""
PUBLISH_PURPOSE = "publish to Earth Engine"
"""What publishing needs Earth Engine for (``isamap-publish``, ``isamap-map --publish``)."""

ContainerType = Literal["FOLDER", "IMAGE_COLLECTION"]
VIEWER = "roles/viewer"
FINISHED = ("COMPLETED",)
ENDED_BADLY = ("FAILED", "CANCELLED", "CANCEL_REQUESTED")


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
                                           without_account=PUBLISH_WITHOUT_ACCOUNT,
                                           purpose=PUBLISH_PURPOSE))
    return EarthEngineAssets(EESession(project, high_volume=False,
                                       without_account=PUBLISH_WITHOUT_ACCOUNT,
                                       purpose=PUBLISH_PURPOSE).initialize())


def wait_for_ingestion(assets: EarthEngineAssets, operation: str, poll_seconds: float = 10.0, *,
                       sleep: Callable[[float], None] = time.sleep,
                       progress: bool = True) -> str:
    """Poll an ingestion operation until it ends (at most 6 h); the bar shows its progress."""
    deadline = time.monotonic() + 6 * 3600
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
                                       "6 h; check the Tasks tab")
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


def share(assets: EarthEngineAssets, name: str, options: PublishOptions, state: str,
          echo: Callable[[str], None], what: str = "task") -> None:
    """Share ``name`` with the options' readers once its ingestion finished, else say how.

    ``what``: the ingestion's noun in the advice (``task``, or ``tasks`` for a series).
    """
    if not options.shared:
        return
    readers = list(options.readers)
    if state in FINISHED:
        assets.share(name, readers, options.public)
        echo(f"shared {name} with {', '.join([*readers, *(['allUsers'] * options.public)])}")
    else:
        echo(f"not shared yet ({what} {state}); when {'they' if what == 'tasks' else 'it'} "
             f"finish{'' if what == 'tasks' else 'es'} run: earthengine acl ch "
             f"{acl_ch_arguments(readers, options.public)} {name}")
