"""The pretrained encoders isamap knows: one entry each, and the one way their files are loaded.

An entry says what a user must know to use an encoder (its input bands and their order, how
they are normalised, the processing level it was pretrained on, its licence, where its
authors publish the file) and what isamap checks before using a file: its SHA-256. The
product never downloads anything: ``isamap-train --encoder NAME=PATH`` names the file, and
:func:`load_encoder` refuses a missing file, one of other bytes, or one whose weights do not
fit the architecture, each in one line saying what to get and where.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Literal

import torch
from torch import nn

from core.digest import file_sha256
from core.errors import ModelError
from training.models.encoders.galileo import GalileoEncoder
from training.models.encoders.presto import Presto

log = logging.getLogger(__name__)

Level = Literal["L1C", "L2A"]


@dataclass(frozen=True)
class EncoderEntry:
    """One pretrained encoder: what it takes, where it comes from, how its file is checked.

    Attributes:
        name: the name ``--encoder NAME=PATH`` takes.
        sha256: of the published file's bytes; any other file is refused.
        file_name: the published file's name.
        source: where a user downloads it (repository, commit, path).
        licence: the weights' licence.
        bands: the isamap band names it reads, in the order its input takes them; bands a
            stack lacks are masked (Presto) or left out (Galileo) with their whole group
            (:data:`S2_GROUPS`), never invented.
        normalisation: how raw values become its input (as its authors do it).
        level: the Sentinel-2 processing level it was pretrained on.
        level_note: how isamap feeds it the project's L2A composites.
        dim: features per pixel it gives.
        build: the architecture of the whole file (loaded ``strict=True``).
        encoder_of: the encoder part of that architecture (what a fused model keeps).
    """

    name: str
    sha256: str
    file_name: str
    source: str
    licence: str
    bands: tuple[str, ...]
    normalisation: str
    level: Level
    level_note: str
    dim: int
    build: Callable[[], nn.Module]
    encoder_of: Callable[[nn.Module], nn.Module]

    def where(self) -> str:
        """One clause saying where the file comes from and what it must be."""
        return (f"download {self.file_name} from {self.source} ({self.licence}); "
                f"expected sha256 {self.sha256}")


PRESTO = EncoderEntry(
    name="presto",
    sha256="559c9d76f525bdf2dd3774da8b1e7f1510769b73baacac12e9e4d8d5c67fbe65",
    file_name="default_model.pt",
    source="https://github.com/nasaharvest/presto at commit 13173d0, data/default_model.pt",
    licence="MIT",
    bands=("VV", "VH", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12"),
    normalisation=("S1 (dB + 25) / 25; S2 reflectance (DN / 10000) as is; NDVI (B8 - B4) / "
                   "(B8 + B4) computed; ERA5, SRTM and Dynamic World masked; location token "
                   "from the grid's centre; month of each timestep"),
    level="L1C",
    level_note=("pretrained on top-of-atmosphere S2 (its exporter's band list holds B10, "
                "which only L1C has); isamap's L2A reflectance is fed as it is, unshifted"),
    dim=128,
    build=Presto,
    encoder_of=lambda model: model.get_submodule("encoder"),
)

GALILEO_NANO = EncoderEntry(
    name="galileo-nano",
    sha256="eab6acacf527886a508a555bc24efe4b4a2cf91b162e84cd1c4a1807e942180c",
    file_name="encoder.pt",
    source=("https://github.com/nasaharvest/galileo at commit 0f0b5b9, "
            "data/models/nano/encoder.pt"),
    licence="MIT",
    bands=("VV", "VH", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12"),
    normalisation=("each S1 / S2 band (x - (mean - 2 std)) / (4 std) with the pretraining "
                   "statistics (S2 in DN); NDVI and the other groups masked; location token "
                   "from the grid's centre; month of the timestep"),
    level="L1C",
    level_note=("pretrained on top-of-atmosphere S2 (S2_HARMONIZED); isamap's L2A "
                "reflectance is fed as it is, unshifted"),
    dim=128,
    build=GalileoEncoder,
    encoder_of=lambda model: model,
)

#: Every encoder ``--encoder NAME=PATH`` takes, by name.
ENCODERS: Mapping[str, EncoderEntry] = MappingProxyType(
    {e.name: e for e in (PRESTO, GALILEO_NANO)})


def encoder_entry(name: str) -> EncoderEntry:
    """The entry of ``name``, or one line naming the known encoders."""
    try:
        return ENCODERS[name]
    except KeyError:
        raise ModelError(f"--encoder {name!r} is not an encoder isamap knows; give one of "
                         f"{', '.join(ENCODERS)} as NAME=PATH") from None


def input_columns(entry: EncoderEntry, bands: Sequence[str],
                  input_mean: Sequence[float] | None, input_std: Sequence[float] | None,
                  ) -> tuple[list[int], Sequence[float], Sequence[float]]:
    """Positions of the input bands ``entry`` reads, and the statistics, checked present.

    The encoder reads reflectance, recovered from the normalised input with its statistics
    (``input_mean``, ``input_std``), and needs at least one of its Sentinel-2 bands: an
    input without them is refused (:class:`ModelError`).
    """
    if input_mean is None or input_std is None:
        raise ModelError(f"the {entry.name} encoder needs the input statistics to recover "
                         "reflectance (input_mean, input_std)")
    columns = [i for i, b in enumerate(bands) if b in entry.bands]
    whole = [g for g in (*S2_GROUPS, S1_GROUP) if all(b in bands for b in g)]
    if not any(bands[i].startswith("B") for i in columns) or not whole:
        raise ModelError(f"the {entry.name} encoder reads Sentinel-2 bands and Sentinel-1's in "
                         f"groups ({', '.join('+'.join(g) for g in (*S2_GROUPS, S1_GROUP))}), "
                         f"each only when all its bands are there, and needs a Sentinel-2 band; "
                         f"the input's bands {list(bands)} do not give that: give --bands with "
                         "a whole group (B2,B3,B4,B8 for example)")
    unread = tuple(bands[i] for i in columns if not any(bands[i] in g for g in whole))
    if unread:
        _say_unread(entry.name, unread, tuple("+".join(g) for g in whole))
    return columns, input_mean, input_std


@functools.cache  # once per process, not once per member of a joined model
def _say_unread(name: str, unread: tuple[str, ...], read: tuple[str, ...]) -> None:
    log.warning("the %s encoder does not read %s: their groups are incomplete (it reads %s); "
                "the U-Net beside it reads every band", name, ", ".join(unread), "; ".join(read))


#: the Sentinel-2 band groups both encoders embed as one token each, and Sentinel-1's; a group
#: is read only when every band of it is there (Presto masks it, Galileo leaves it out:
#: ``presto.GROUPS``, ``galileo.ST_GROUPS``)
S2_GROUPS: tuple[tuple[str, ...], ...] = (("B2", "B3", "B4"), ("B5", "B6", "B7"), ("B8",),
                                          ("B8A",), ("B11", "B12"))
S1_GROUP: tuple[str, ...] = ("VV", "VH")


def parse_encoder(text: str) -> tuple[EncoderEntry, str]:
    """``"presto=PATH"`` -> (entry, path), refused in one line when malformed."""
    name, sep, path = text.lstrip().partition("=")  # " presto=..." from a quoted flag
    if not sep or not path:
        raise ModelError(f"--encoder {text!r} must be NAME=PATH, e.g. "
                         "presto=weights/default_model.pt")
    return encoder_entry(name.strip()), path


def load_encoder(entry: EncoderEntry, path: str | os.PathLike) -> nn.Module:
    """The pretrained encoder of ``entry`` from its published file, checked, in eval mode.

    Raises:
        ModelError: the file is missing (or a folder), is not the published file (SHA-256),
            or its weights do not fit the architecture; one line, saying where to get the file.
    """
    given = f"--encoder {entry.name}={path}"
    if Path(path).is_dir():  # the folder the file was downloaded into
        inside = Path(path) / entry.file_name
        if inside.is_file():
            raise ModelError(f"{given} is a folder; give the file in it: "
                             f"--encoder {entry.name}={inside}")
        raise ModelError(f"{given} is a folder, without {entry.file_name}; give the file "
                         f"itself: {entry.where()}")
    if not Path(path).is_file():
        raise ModelError(f"{given}: no such file; {entry.where()}")
    digest = file_sha256(path)
    if digest != entry.sha256:
        other = next((e.name for e in ENCODERS.values() if e.sha256 == digest), None)
        hint = f" (it is the published {other} file: give --encoder {other}=PATH)" if other \
            else ""
        raise ModelError(f"{given}: sha256 {digest} is not the published {entry.name} "
                         f"file's{hint}; {entry.where()}")
    return load_weights(entry, path)


def load_weights(entry: EncoderEntry, path: str | os.PathLike) -> nn.Module:
    """``entry``'s architecture with the state dict in ``path`` (``weights_only``, strict)."""
    given = f"--encoder {entry.name}={path}"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, or pickled code: detail under --debug
        raise ModelError(f"{given}: not a state dict torch can read safely; "
                         f"{entry.where()}") from exc
    model = entry.build()
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise ModelError(f"{given}: its weights do not fit the {entry.name} architecture; "
                         f"{entry.where()}") from exc
    return entry.encoder_of(model).eval()
