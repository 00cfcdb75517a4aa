"""A raster read with a per-band linear map: a later date normalised onto an earlier one.

``isamap-predict --normalise-to`` (:mod:`inference.predict.change_inputs`) predicts the later
date's stack through :class:`LinearSource`, each band's fitted gain and offset applied as it is
read (:func:`inference.predict.change.fit_relative_normalisation`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from inference.predict.sources import MaskedFileSource


class LinearSource:
    """A raster read with a per-band linear map applied: ``value * gain + offset``.

    What predicts a later date normalised onto an earlier one
    (:func:`inference.predict.change.fit_relative_normalisation`). ``maps`` holds
    ``{band index (1-based): (gain, offset)}``; bands not named are read as they are. NaN
    (nodata) stays NaN.
    """

    def __init__(self, path: str, maps: dict[int, tuple[float, float]], identity: str) -> None:
        self._inner = MaskedFileSource(path, identity=identity)
        self.identity = identity
        self.maps = dict(maps)
        inner = self._inner
        self.width, self.height, self.count = inner.width, inner.height, inner.count
        self.transform, self.crs, self.descriptions = inner.transform, inner.crs, \
            inner.descriptions
        self.nodatavals = inner.nodatavals

    def tags(self) -> dict[str, str]:
        return self._inner._ds.tags()

    def read(self, indexes: Sequence[int], window: Any = None, out_dtype: str = "float32",
             out: np.ndarray | None = None) -> np.ndarray:
        return self._mapped(self._inner.read(indexes, window, out_dtype, out), indexes)

    def sample(self, indexes: Sequence[int], max_side: int) -> np.ndarray:
        return self._mapped(self._inner.sample(indexes, max_side), indexes)

    def _mapped(self, data: np.ndarray, indexes: Sequence[int]) -> np.ndarray:
        """``data`` (bands ``indexes``, float32) with the mapped bands' gain and offset applied.

        In place, as two rounded operations, as
        :func:`~inference.predict.change.apply_normalisation` computes them.
        """
        for k, index in enumerate(indexes):
            if index in self.maps:
                gain, offset = self.maps[index]
                data[k] *= np.float32(gain)
                data[k] += np.float32(offset)
        return data

    def close(self) -> None:
        self._inner.close()

    def __enter__(self) -> LinearSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
