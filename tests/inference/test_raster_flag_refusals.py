"""Every raster flag's unreadable file is refused by the one refusal, naming its flag.

assess --map, --keep-product, --compare-with and the spectral rule's stacks kept their own
wording (no flag for --map, no "it is not a raster"): core.storage.files.raster_refusal now.
"""

from __future__ import annotations

import pytest
from affine import Affine

from core.errors import InputDataError
from inference.assess.strata import class_names, read_strata
from inference.predict.change.inputs import check_class_map
from inference.predict.change.spectral import spectral_stacks
from inference.predict.keep.inputs import check_product

GRID = ((8, 8), Affine(10, 0, 500000, 0, -10, 4000000), "EPSG:32650")


READERS = {  # what reads each flag's file, given its path
    "class names (--map)": ("--map", lambda path: class_names(path)),
    "strata (--map)": ("--map", lambda path: read_strata(path, ("pervious", "impervious"))),
    "--keep-product": ("--keep-product", lambda path: check_product(path)),
    "--compare-with": ("--compare-with", lambda path: check_class_map(
        path, ("pervious", "impervious"), *GRID)),
    "spectral stacks": ("--earlier-stack", lambda path: spectral_stacks(path, path, ("B2",),
                                                                        *GRID)),
}


@pytest.mark.parametrize("reader", list(READERS))
def test_each_raster_flag_says_a_text_file_is_not_a_raster_and_a_folder_is_one(tmp_path,
                                                                               reader):
    flag, read = READERS[reader]
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    with pytest.raises(InputDataError) as refused:
        read(str(text))
    line = str(refused.value)
    assert line.startswith(f"{flag} {text} cannot be read (") and len(line.splitlines()) == 1
    assert "): it is not a raster; give " in line
    folder = tmp_path / "adir"
    folder.mkdir()
    with pytest.raises(InputDataError, match=f"^{flag} {folder} is a folder, not a file; "):
        read(str(folder))
