"""The Earth Engine REST service at the HTTP layer, for tests of the real earthengine-api client.

earthengine-api 1.7 sends every call through google-api-python-client: a discovery document
describes the REST methods, and every call ends in ``http.request(uri, method, body, headers)``
on the transport given to ``ee.Initialize(http_transport=...)``, which must return an
``(httplib2.Response, bytes)`` pair. :class:`EarthEngineHttp` is that transport, so everything
above it (ee.data, ee.batch, googleapiclient's request building, its retry loop, the
translation of HTTP errors into ``EEException``) is the real client, unpatched.

It answers the client's set-up requests itself: the discovery request with a document built
offline from the one the wheel ships (``ee/tests/cloud_api_discovery_document.json``, a v1alpha
description without schemas: its paths are moved to ``v1`` and ``image:importExternal``, which
it lacks, is added in the shape of ``image:import``), the algorithm list with the wheel's
``ee/tests/algorithms.json`` (already a ListAlgorithmsResponse), and the deprecated-asset
catalogue that ``ee.Initialize`` reads through urllib (:func:`urllib_opener`) with
:data:`DEPRECATED_CATALOG`. Every other request, on either endpoint (the standard or the
high-volume one), goes to the attached :class:`~tests.support.ee_rest.FakeEarthEngine` (its
resources, :mod:`tests.support.ee_rest`; its pixels and profiles,
:mod:`tests.support.ee_compute`) with its headers and host; with none attached it is refused
with HTTP 401, as the service refuses a request that carries no credentials. Answers are JSON,
except computePixels' pixels, which go back as the bytes of their format.
"""

from __future__ import annotations

import copy
import io
import json
import re
import urllib.request
import urllib.response
from email.message import Message
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from tests.support.ee_compute import PixelAnswer
from tests.support.ee_rest import FakeEarthEngine, Request, error_body

__all__ = ["EarthEngineHttp", "FakeEarthEngine", "algorithms", "discovery_document",
           "urllib_opener"]

API_ROOT = "https://earthengine.googleapis.com/"
VERSION = "v1"
DEPRECATED_CATALOG_URL = ("https://storage.googleapis.com/earthengine-stac/catalog/"
                          "catalog_deprecated.json")
# The deprecated-asset catalogue as ee.deprecation reads it: STAC links flagged "deprecated",
# titled with the asset id (checked 2026-11: GLO30 deprecated since 2026-07-09).
DEPRECATED_CATALOG = {
    "type": "Catalog", "id": "GEE_catalog_deprecated",
    "links": [{"rel": "child", "title": "COPERNICUS/DEM/GLO30", "deprecated": True,
               "href": "https://earthengine-stac.storage.googleapis.com/catalog/COPERNICUS/"
                       "COPERNICUS_DEM_GLO30.json",
               "gee:replacement_id": "COPERNICUS/DEM/GLO30_2024_1"}],
}
NO_CREDENTIALS = ("Request is missing required authentication credential. Expected OAuth 2 "
                  "access token, login cookie or other valid authentication credential.")


def _wheel_file(name: str) -> Path:
    import ee

    return Path(ee.__file__).parent / "tests" / name


@lru_cache(maxsize=1)
def discovery_document() -> str:
    """The v1 discovery document, built offline from the v1alpha one the wheel ships."""
    doc = json.loads(_wheel_file("cloud_api_discovery_document.json").read_text())
    doc["version"] = VERSION
    text = json.dumps(doc).replace('"v1alpha/', f'"{VERSION}/')
    doc = json.loads(text)
    image = doc["resources"]["projects"]["resources"]["image"]["methods"]
    external = copy.deepcopy(image["import"])
    external.update(id="earthengine.projects.image.importExternal",
                    path=f"{VERSION}/{{+project}}/image:importExternal",
                    flatPath=f"{VERSION}/projects/{{projectsId}}/image:importExternal")
    image["importExternal"] = external
    return json.dumps(doc)


@lru_cache(maxsize=1)
def algorithms() -> bytes:
    return _wheel_file("algorithms.json").read_bytes()


class EarthEngineHttp:
    """An ``httplib2.Http``-shaped transport answering as the Earth Engine REST service."""

    def __init__(self) -> None:
        self.service: FakeEarthEngine | None = None

    def request(self, uri: str, method: str = "GET", body: Any = None,
                headers: dict[str, str] | None = None, redirections: int = 5,
                connection_type: Any = None) -> tuple[Any, bytes]:
        import httplib2

        parts = urlsplit(uri)
        query = dict(parse_qsl(parts.query))
        if "$discovery" in parts.path:
            return _response(200), discovery_document().encode()
        path = unquote(parts.path).lstrip("/")
        assert path.startswith(f"{VERSION}/"), f"request outside the {VERSION} API: {uri}"
        path = path[len(VERSION) + 1:]
        if method == "GET" and re.fullmatch(r"projects/[^/]+/algorithms", path):
            return _response(200), algorithms()
        if self.service is None:
            return _response(401), json.dumps(error_body(401, NO_CREDENTIALS)).encode()
        status, payload = self.service.handle(Request(
            method.upper(), path, query, json.loads(body) if body else None,
            {name.lower(): value for name, value in (headers or {}).items()}, parts.netloc))
        assert isinstance(status, int)
        if isinstance(payload, PixelAnswer):
            return httplib2.Response({"status": status, "content-type": payload.content_type,
                                      **self.service.headers, **payload.headers}), payload.data
        return httplib2.Response({"status": status, "content-type": "application/json",
                                  **self.service.headers}), json.dumps(payload).encode()


def _response(status: int) -> Any:
    import httplib2

    return httplib2.Response({"status": status, "content-type": "application/json"})


class _CatalogHandler(urllib.request.BaseHandler):
    """Serves the deprecated-asset catalogue to ``urllib.request.urlopen`` (nothing else)."""

    handler_order = 100  # before urllib's own HTTPS handler, which would go to the network

    def https_open(self, req: urllib.request.Request) -> Any:
        if req.full_url != DEPRECATED_CATALOG_URL:
            return None  # not ours: the next handler (the real network) answers
        data = json.dumps(DEPRECATED_CATALOG).encode()
        headers = Message()
        headers["Content-Type"] = "application/json"
        response = urllib.response.addinfourl(io.BytesIO(data), headers, req.full_url, 200)
        response.msg = "OK"  # read by urllib's error processor
        return response


def urllib_opener() -> urllib.request.OpenerDirector:
    """A urllib opener that serves :data:`DEPRECATED_CATALOG` at its catalogue address."""
    return urllib.request.build_opener(_CatalogHandler())
