"""How a pipeline's workers reach Earth Engine: a picklable session factory and the images.

Beam workers (Dataflow's, or the DirectRunner's processes) share nothing with the launching
process but what pickles. A :class:`SessionFactory` opens each worker's
:class:`~gee_export.ee.session.EESession` there (:class:`EarthEngineProject` for the real
service, :class:`testing.fake_server.StackSessions` in tests), and the launcher serializes the
recipe's images once (:class:`SerializedImages`, the JSON expression earthengine-api itself sends)
for each worker to load after its session is open. The export's and the map's pipelines both use
them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from gee_export.ee.session import EESession


class SessionFactory(Protocol):
    """Opens the Earth Engine session of one worker (must pickle: it travels to the workers)."""

    def __call__(self) -> EESession: ...


@dataclass(frozen=True)
class EarthEngineProject:
    """The real service: an initialised :class:`EESession` of ``project`` on each worker.

    Attributes:
        project: the Google Cloud project registered for Earth Engine.
        application_default: use the worker's own service account (Dataflow); False uses the
            credentials of ``earthengine authenticate`` (the DirectRunner on a laptop).
    """

    project: str | None
    application_default: bool = False
    workload_tag: str | None = None  # the command's run, named on every worker's requests

    def __call__(self) -> EESession:
        return EESession(project=self.project, application_default=self.application_default,
                         workload_tag=self.workload_tag).initialize()


@dataclass(frozen=True)
class SerializedImages:
    """The stack and the optional fine label, as earthengine-api's JSON expressions."""

    image: str
    fine_label: str | None = None

    @classmethod
    def of(cls, image: Any, fine_label: Any = None) -> SerializedImages:
        return cls(image.serialize(), fine_label.serialize() if fine_label is not None else None)

    def load(self) -> tuple[Any, Any]:
        """The images back (earthengine-api must be initialised, which a session does)."""
        import ee

        image = ee.Image(ee.deserializer.fromJSON(self.image))
        fine = ee.Image(ee.deserializer.fromJSON(self.fine_label)) if self.fine_label else None
        return image, fine
