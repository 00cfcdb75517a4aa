"""docs/architecture.md is a true map: every library module is named there.

(Every file it names exists: ``tests/test_references.py`` checks that for every page.) A module
counts as named when the page gives its path from the repository root, its path from a folder
the page names (``predict/raster.py`` under "Paths are relative to ``inference/``"), or its
dotted name.
"""

from __future__ import annotations

from pathlib import Path

from tests.support import LIBRARY_PACKAGES, REPO_ROOT

PAGE = REPO_ROOT / "docs" / "architecture.md"


def _named(path: Path, page: str) -> bool:
    rel = path.relative_to(REPO_ROOT)
    dotted = ".".join(rel.with_suffix("").parts)
    tails = ["/".join(rel.parts[i:]) for i in range(1, len(rel.parts) - 1)]
    return (f"`{rel.as_posix()}`" in page or dotted in page
            or any(f"`{tail}`" in page for tail in tails)
            or (len(rel.parts) == 2 and f"`{rel.name}`" in page))


def library_modules() -> list[Path]:
    return sorted(p for package in LIBRARY_PACKAGES for p in (REPO_ROOT / package).rglob("*.py")
                  if p.name != "__init__.py" and "__pycache__" not in p.parts)


def test_every_library_module_is_named_on_the_architecture_page():
    page = PAGE.read_text(encoding="utf-8")
    unnamed = [p.relative_to(REPO_ROOT).as_posix() for p in library_modules()
               if not _named(p, page)]
    assert not unnamed, ("docs/architecture.md does not name these modules (add each to its "
                         "package's table): " + ", ".join(unnamed))


def test_the_check_reads_paths_tails_and_dotted_names():
    module = REPO_ROOT / "inference" / "predict" / "raster.py"
    assert _named(module, "| `inference/predict/raster.py` | ... |")
    assert _named(module, "| `predict/raster.py` | ... |")
    assert _named(module, "see inference.predict.raster")
    assert not _named(module, "| `raster.py` | ... |")  # a bare name is ambiguous below a package
    assert not _named(module, "predict/rasters.py")
