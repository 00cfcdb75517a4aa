"""Earth Engine ImageManifest for the prediction COGs, and a validator of its documented schema.

The manifest is what ``ee.data.startIngestion`` (``earthengine upload image --manifest``) and
``ee.data.startExternalImageIngestion`` (``image:importExternal``, COG-backed assets) take. The
validator checks every field against the ImageManifest reference (field names and types of
ImageManifest, Tileset, ImageSource, TilesetBand, TilesetMaskBand, MissingData, the
PyramidingPolicy and DataType enums, RFC 3339 times, ``projects/*/assets/**`` names), so a
typo is caught offline instead of after an upload and a queued task.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from core.errors import ConfigError
from core.months import month_range
from core.storage import files
from inference.cog.maps import BAND_IDS, NODATA

Mode = Literal["ingest", "external"]

PYRAMIDING_POLICIES = ("PYRAMIDING_POLICY_UNSPECIFIED", "MEAN", "SAMPLE", "MIN", "MAX", "MODE",
                       "MEDIAN")
DATA_TYPES = ("DATA_TYPE_UNSPECIFIED", "INT8", "UINT8", "INT16", "UINT16", "INT32", "UINT32",
              "FLOAT", "DOUBLE")
_FIELDS: dict[str, set[str]] = {
    "ImageManifest": {"name", "properties", "uriPrefix", "tilesets", "bands", "maskBands",
                      "footprint", "missingData", "pyramidingPolicy", "startTime", "endTime",
                      "skipMetadataRead", "memo"},
    "Tileset": {"id", "sources", "dataType", "crs"},
    "ImageSource": {"uris", "affineTransform"},
    "TilesetBand": {"id", "tilesetId", "tilesetBandIndex", "missingData", "pyramidingPolicy"},
    "TilesetMaskBand": {"tilesetId", "bandIds"},
    "MissingData": {"values"},
}
_PROJECT_ID = re.compile(r"^[a-z][a-z0-9-]{3,61}[a-z0-9]$")  # 5-63 lower-case characters
_PATH_PART = re.compile(r"^[A-Za-z0-9_-]+$")
_BAND_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,99}$")
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
_POLICY = {"class": "MODE", "probability": "MEAN"}
_TILESET = {"class": "isa_class", "probability": "isa_probability"}


def asset_name(asset_id: str, project: str | None = None) -> str:
    """Full ``projects/<p>/assets/<path>`` name of an asset id, checked (see below).

    Accepts a full name, a legacy ``users/...`` id, or a path inside ``project``.

    Raises:
        ConfigError: naming the rule the id breaks (:func:`asset_name_problem`).
    """
    asset_id = asset_id.strip().strip("/")
    if asset_id.startswith("projects/"):
        name = asset_id
    elif asset_id.startswith("users/"):
        name = f"projects/earthengine-legacy/assets/{asset_id}"
    elif not project:
        raise ConfigError(f"asset id {asset_id!r} is relative; give the full "
                          "'projects/<project>/assets/<path>' or pass --project")
    else:
        name = f"projects/{project}/assets/{asset_id}"
    problem = asset_name_problem(name)
    if problem:
        raise ConfigError(f"asset id {asset_id!r} is not a valid Earth Engine asset name: "
                          f"{problem}")
    return name


def asset_name_problem(name: str) -> str | None:
    """Which rule of Earth Engine asset names ``name`` breaks (None: none).

    ``projects/<project>/assets/<folder>/.../<asset>``: the project a Cloud project id
    (lower-case letters, digits and hyphens, 5-63 characters, starting with a letter), each
    folder and the asset a non-empty run of letters, digits, ``_`` and ``-``.
    """
    parts = name.split("/")
    if len(parts) < 4 or parts[0] != "projects" or parts[2] != "assets":
        return "it is not 'projects/<project>/assets/<path>' (or 'users/<user>/<path>')"
    project, path = parts[1], parts[3:]
    if not _PROJECT_ID.match(project):
        if project != project.lower():
            why = "has upper-case letters; project ids are lower case"
        elif not 5 <= len(project) <= 63:
            why = f"is {len(project)} characters long; project ids have 5 to 63"
        else:
            why = ("is no Cloud project id (lower-case letters, digits and hyphens, starting "
                   "with a letter)")
        return f"the project {project!r} {why}"
    if "" in path:
        return ("it has an empty folder name ('//' or a '/' at the end); separate folders "
                "with a single '/'")
    for part in path:
        if not _PATH_PART.match(part):
            bad = sorted({c for c in part if not re.match(r"[A-Za-z0-9_-]", c)})
            shown = ", ".join("a space" if c == " " else repr(c) for c in bad)
            return (f"the name {part!r} holds {shown}; asset and folder names take only "
                    "letters, digits, '_' and '-'")
    return None


def check_asset_name(name: str, what: str = "asset") -> str:
    """``name`` if Earth Engine accepts it as an asset name, else a one-line ConfigError.

    Checked before any work: a region called "Wuhan city" would otherwise be mapped for
    hours and refused at publication.
    """
    problem = asset_name_problem(name)
    if problem:
        raise ConfigError(f"{what} name {name!r} is not a valid Earth Engine asset name: "
                          f"{problem} (rename the region or --publish target)")
    return name


def flat_properties(values: Mapping[str, Any]) -> dict[str, str | float | int | bool]:
    """Asset properties: scalars kept, anything nested flattened to ``a_b`` keys."""
    out: dict[str, str | float | int | bool] = {}
    for key, value in values.items():
        key = re.sub(r"[^A-Za-z0-9_]", "_", str(key))
        if isinstance(value, Mapping):
            out.update({f"{key}_{k}": v for k, v in flat_properties(value).items()})
        elif isinstance(value, (bool, int, float, str)):
            out[key] = value
        elif value is not None:
            out[key] = str(value)
    return out


def build_manifest(name: str, uris: Mapping[str, str], *, month: str | None,
                   properties: Mapping[str, Any], mode: Mode = "ingest") -> dict[str, Any]:
    """The ImageManifest of an ISA map: one tileset per COG, bands in that order.

    ``uris`` maps ``"class"``/``"probability"`` to the COGs' gs:// URIs; 255 is missing data.

    Class bands pyramid by MODE (a zoomed-out pixel is still a real class), probabilities by
    MEAN. COG-backed (external) images read the COGs' own overviews, which :mod:`cog` built
    with the same rules.
    """
    tilesets, bands = [], []
    for kind in ("class", "probability"):
        if kind not in uris:
            continue
        tileset = _TILESET[kind]
        tilesets.append({"id": tileset, "sources": [{"uris": [uris[kind]]}]})
        band: dict[str, Any] = {"id": BAND_IDS[kind], "tilesetId": tileset,
                                "tilesetBandIndex": 0, "missingData": {"values": [NODATA]}}
        if mode == "ingest":
            band["pyramidingPolicy"] = _POLICY[kind]
        bands.append(band)
    manifest: dict[str, Any] = {"name": name, "tilesets": tilesets, "bands": bands,
                                "properties": flat_properties(properties)}
    if month:
        manifest["startTime"], manifest["endTime"] = month_range(month)
    return manifest


def validate_manifest(manifest: Mapping[str, Any], mode: Mode = "ingest") -> None:
    """Raise ConfigError listing every way ``manifest`` departs from the ImageManifest schema."""
    errors: list[str] = []
    _fields(manifest, "ImageManifest", "manifest", errors)
    name = manifest.get("name")
    problem = asset_name_problem(name) if isinstance(name, str) else "it is not a string"
    if problem:
        errors.append(f"name {name!r}: {problem}")
    tileset_ids: list[str] = []
    for i, tileset in enumerate(_list(manifest, "tilesets", errors, required=True)):
        where = f"tilesets[{i}]"
        if not _fields(tileset, "Tileset", where, errors):
            continue
        tileset_ids.append(str(tileset.get("id", "")))
        if tileset.get("dataType", "UINT8") not in DATA_TYPES:
            errors.append(f"{where}.dataType {tileset['dataType']!r} not in {DATA_TYPES}")
        sources = tileset.get("sources")
        if not isinstance(sources, list) or not sources:
            errors.append(f"{where}.sources must be a non-empty list")
            continue
        if mode == "external" and len(sources) != 1:
            errors.append(f"{where}: a COG-backed image takes exactly one COG per tileset")
        for j, source in enumerate(sources):
            if not _fields(source, "ImageSource", f"{where}.sources[{j}]", errors):
                continue
            source_uris = source.get("uris")
            if not isinstance(source_uris, list) or not source_uris:
                errors.append(f"{where}.sources[{j}].uris must be a non-empty list")
                continue
            for uri in source_uris:
                if not (isinstance(uri, str) and _is_object_uri(uri)):
                    errors.append(f"{where}.sources[{j}] uri {uri!r} is not gs://bucket/object")
    if len(set(tileset_ids)) != len(tileset_ids):
        errors.append(f"tileset ids {tileset_ids} are not unique")
    band_ids: list[str] = []
    for i, band in enumerate(_list(manifest, "bands", errors, required=True)):
        where = f"bands[{i}]"
        if not _fields(band, "TilesetBand", where, errors):
            continue
        band_ids.append(str(band.get("id")))
        if not _BAND_ID.match(str(band.get("id", ""))):
            errors.append(f"{where}.id {band.get('id')!r} is not a valid band name")
        if band.get("tilesetId", "") not in tileset_ids:
            errors.append(f"{where}.tilesetId {band.get('tilesetId')!r} names no tileset")
        index = band.get("tilesetBandIndex", 0)
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            errors.append(f"{where}.tilesetBandIndex must be an integer >= 0, got {index!r}")
        if "pyramidingPolicy" in band and band["pyramidingPolicy"] not in PYRAMIDING_POLICIES:
            errors.append(f"{where}.pyramidingPolicy {band['pyramidingPolicy']!r} not in "
                          f"{PYRAMIDING_POLICIES}")
        if "missingData" in band:
            _missing(band["missingData"], f"{where}.missingData", errors)
    if len(set(band_ids)) != len(band_ids):
        errors.append(f"band ids {band_ids} are not unique")
    for i, mask in enumerate(_list(manifest, "maskBands", errors, required=False)):
        if _fields(mask, "TilesetMaskBand", f"maskBands[{i}]", errors) and \
                mask.get("tilesetId") not in tileset_ids:
            errors.append(f"maskBands[{i}].tilesetId names no tileset")
    if "missingData" in manifest:
        _missing(manifest["missingData"], "missingData", errors)
    if manifest.get("pyramidingPolicy", "MEAN") not in PYRAMIDING_POLICIES:
        errors.append(f"pyramidingPolicy {manifest['pyramidingPolicy']!r} is not an enum value")
    _times(manifest, errors)
    _properties(manifest.get("properties", {}), errors)
    if errors:
        raise ConfigError("invalid Earth Engine image manifest:\n  - " + "\n  - ".join(errors))


def _is_object_uri(uri: str) -> bool:
    """Whether ``uri`` is ``gs://bucket/object`` of a bucket name Cloud Storage allows."""
    bucket, _, key = uri[len("gs://"):].partition("/")
    return (files.is_gcs(uri) and bool(key.strip("/"))
            and files.bucket_name_problem(bucket) is None)


def _fields(obj: Any, kind: str, where: str, errors: list[str]) -> bool:
    if not isinstance(obj, Mapping):
        errors.append(f"{where} must be an object ({kind}), got {type(obj).__name__}")
        return False
    unknown = sorted(set(obj) - _FIELDS[kind])
    if unknown:
        errors.append(f"{where} has fields {unknown} that {kind} does not define")
    return True


def _list(obj: Mapping[str, Any], key: str, errors: list[str], required: bool) -> list[Any]:
    value = obj.get(key)
    if value is None:
        if required:
            errors.append(f"{key} is required")
        return []
    if not isinstance(value, list) or (required and not value):
        errors.append(f"{key} must be a{' non-empty' if required else ''} list")
        return []
    return value


def _missing(value: Any, where: str, errors: list[str]) -> None:
    if not _fields(value, "MissingData", where, errors):
        return
    values = value.get("values")
    if not isinstance(values, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        errors.append(f"{where}.values must be a list of numbers, got {values!r}")


def _times(manifest: Mapping[str, Any], errors: list[str]) -> None:
    parsed = {}
    for key in ("startTime", "endTime"):
        if key in manifest:
            value = manifest[key]
            if not isinstance(value, str) or not _RFC3339.match(value):
                errors.append(f"{key} {value!r} is not an RFC 3339 timestamp")
            else:
                parsed[key] = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if len(parsed) == 2 and parsed["endTime"] <= parsed["startTime"]:
        errors.append("endTime must be after startTime")


def _properties(props: Any, errors: list[str]) -> None:
    if not isinstance(props, Mapping):
        errors.append("properties must be an object")
        return
    for key, value in props.items():
        if key in ("system:time_start", "system:time_end"):
            errors.append(f"property {key!r} is deprecated; use startTime/endTime")
        if not isinstance(value, (str, int, float, bool)):
            errors.append(f"property {key!r} must be a string, number or boolean")
