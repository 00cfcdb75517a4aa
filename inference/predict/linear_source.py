"""A raster read with a per-band linear map: a later date normalised onto an earlier one.

``isamap-predict --normalise-to`` (:mod:`inference.predict.change.inputs`) predicts the later
date's stack through :class:`LinearSource`, each band's fitted gain and offset applied as it is
read (:func:`inference.predict.change.arrays.fit_relative_normalisation`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from inference.predict.sources import MaskedFileSource


class LinearSource(MaskedFileSource):
    """A raster read with a per-band linear map applied: ``value * gain + offset``.

    What predicts a later date normalised onto an earlier one
    (:func:`inference.predict.change.arrays.fit_relative_normalisation`). ``maps`` holds
    ``{band index (1-based): (gain, offset)}``; bands not named are read as they are. NaN
    (nodata) stays NaN. Its content is keyed by ``identity`` (the stack and the fit), never
    by the stack's own fingerprint: the normalised bands are other values.
    """

    def __init__(self, path: str, maps: dict[int, tuple[float, float]], identity: str) -> None:
        super().__init__(path, identity=identity)
        self.content, self.maps = identity, dict(maps)

    def read(self, indexes: Sequence[int], window: Any = None, out_dtype: str = "float32",
             out: np.ndarray | None = None,
             out_shape: tuple[int, ...] | None = None) -> np.ndarray:
        return self._mapped(super().read(indexes, window, out_dtype, out, out_shape), indexes)

    def sample(self, indexes: Sequence[int], max_side: int) -> np.ndarray:
        return self._mapped(super().sample(indexes, max_side), indexes)

    def _mapped(self, data: np.ndarray, indexes: Sequence[int]) -> np.ndarray:
        """``data`` (bands ``indexes``, float32) with the mapped bands' gain and offset applied.

        In place, as two rounded float32 operations (``data * gain + offset``).
        """
        for k, index in enumerate(indexes):
            if index in self.maps:
                gain, offset = self.maps[index]
                data[k] *= np.float32(gain)
                data[k] += np.float32(offset)
        return data
