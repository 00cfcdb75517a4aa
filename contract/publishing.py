"""How maps are published as Earth Engine assets: one value for every publishing command.

``isamap-publish`` (one image) and ``isamap-map --publish`` (an ImageCollection, one image per
date) take the same options: the asset's Cloud project, where local COGs are uploaded, who may
read the assets, whether existing ones are replaced and whether to wait for the ingestion.
:class:`PublishOptions` carries them from the command down to the publishers
(:mod:`inference.publish.image`, :mod:`inference.publish.collection`), and through
``isamap-map``'s request (:class:`inference.mapping.request.MapRequest`), which lies below the
publishers; its readers are checked when it is made, before anything is mapped or uploaded.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import ConfigError
from core.storage import files


@dataclass(frozen=True)
class PublishOptions:
    """Where and how assets are published.

    Attributes:
        project: Cloud project of the assets whose names are relative (``isamap/wuhan``).
        gcs_prefix: ``gs://bucket/prefix`` local COGs are uploaded to (Earth Engine ingests
            only from Cloud Storage).
        public: readable by everyone (``allUsers``).
        readers: extra readers, each with its kind (``user:a@b.com``, ``group:...``,
            ``serviceAccount:...``).
        overwrite: replace assets that already exist.
        wait: block until the ingestion tasks finish (needed before sharing an ingestion).

    Raises:
        ConfigError: a reader without its kind prefix, a ``gcs_prefix`` that is no
            ``gs://bucket[/prefix]`` of a valid bucket name (:func:`check_gcs_prefix`).
    """

    project: str | None = None
    gcs_prefix: str | None = None
    public: bool = False
    readers: tuple[str, ...] = ()
    overwrite: bool = False
    wait: bool = False

    def __post_init__(self) -> None:
        bad = [r for r in self.readers if ":" not in r]
        if bad:
            raise ConfigError(f"readers {bad} need a kind prefix, e.g. 'user:a@b.com', "
                              "'group:team@b.com' or 'serviceAccount:...'")
        if self.gcs_prefix:  # none given: publishing local COGs says it needs one
            check_gcs_prefix(self.gcs_prefix)

    @property
    def shared(self) -> bool:
        """Whether anyone beyond the project's members is to read the assets."""
        return bool(self.readers) or self.public


def check_gcs_prefix(gcs_prefix: str) -> str:
    """``--gcs-prefix`` checked: ``gs://bucket[/prefix]`` of a valid bucket name.

    Returns the prefix without its last ``/``.

    Raises:
        ConfigError: not a Cloud Storage address, or a bucket name Cloud Storage refuses
            (:func:`core.storage.files.bucket_name_problem`).
    """
    bucket = gcs_prefix[len("gs://"):].split("/", 1)[0] if files.is_gcs(gcs_prefix) else ""
    if not bucket:
        raise ConfigError(f"--gcs-prefix {gcs_prefix} is not a Cloud Storage address; give "
                          "gs://bucket/prefix (Earth Engine ingests only from there)")
    problem = files.bucket_name_problem(bucket)
    if problem:
        raise ConfigError(f"--gcs-prefix {gcs_prefix}: {problem}; give gs://BUCKET/PREFIX of "
                          "a bucket you can write to")
    return gcs_prefix.rstrip("/")
