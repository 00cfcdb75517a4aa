"""The built wheel installs into a clean venv and runs, and states ranges instead of pins.

A user installs the wheel, not the checkout: a module left out of the package list, a
dependency missing from ``install_requires`` or a pinned torch that would replace theirs (Colab's
CUDA build) only shows there. The test builds the wheel from a copy of the sources (no stale
``build/`` can leak into it), installs it into a new venv with ``--no-index``, so nothing is
downloaded, and lets pip resolve every requirement against the development environment's
packages, which the venv sees through a folder of links (the checkout's own editable install
left out). Then it runs console scripts and the first steps of the demo from outside the
checkout, so the checkout cannot stand in for the installed package.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

PACKAGES = ("core", "contract", "gee_export", "engine", "training", "inference", "cli")
FAKES = "testing"  # beside the packages in the checkout, never in the wheel
SOURCES = ("setup.cfg", "pyproject.toml", "README.md", "LICENSE")
# the wheel and its venv are made once, on the worker that runs every test reading them
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("packaging_wheel")]


def _run(*args: str | os.PathLike, cwd: Path, timeout: int = 300) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PIP_NO_INDEX": "1",
                                                "PIP_FIND_LINKS": "", "PYTHONPATH": ""})
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        shutil.copy2(REPO_ROOT / name, src / name)
    for package in (*PACKAGES, FAKES):
        shutil.copytree(REPO_ROOT / package, src / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", dist, src, cwd=src)
    (built,) = dist.glob("isamap-*.whl")
    return built


@pytest.fixture(scope="module")
def clean_venv(tmp_path_factory, wheel) -> Path:
    root = tmp_path_factory.mktemp("venv")
    venv = root / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=root)
    python = venv / "bin" / "python"
    site = Path(subprocess.check_output(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        text=True).strip())
    # The development environment's packages, minus this checkout's editable install.
    deps = root / "deps"
    deps.mkdir()
    dev_site = Path(sysconfig.get_paths()["purelib"])
    for entry in dev_site.iterdir():
        if not entry.name.lower().startswith(("isamap", "__editable__", "_isamap")):
            (deps / entry.name).symlink_to(entry)
    (site / "dev_environment.pth").write_text(f"{deps}\n")
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-index",
         "--no-build-isolation", "-q", wheel, cwd=root)
    return venv


def test_wheel_holds_the_packages_and_no_tests_or_fakes(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names if not n.startswith("isamap-")}
    assert tops == set(PACKAGES)
    assert not [n for n in names if "fake_server" in n or "fake_quota" in n], "test fakes shipped"
    for package in PACKAGES:
        sources = {p.relative_to(REPO_ROOT).as_posix()
                   for p in (REPO_ROOT / package).rglob("*.py")}
        assert sources <= set(names), f"left out of the wheel: {sorted(sources - set(names))}"


def test_wheel_states_ranges_not_pins(wheel):
    with zipfile.ZipFile(wheel) as zf:
        meta_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(zf.read(meta_name).decode())
    requires = meta.get_all("Requires-Dist")
    base = [r for r in requires if "extra ==" not in r]
    torch = [r for r in base if r.split(">")[0].split("<")[0].split("=")[0].strip() == "torch"]
    assert torch and "==" not in torch[0] and ">=" in torch[0], torch
    assert not [r for r in base if "==" in r], "the package pins; pins go in constraints.txt"


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_wheel_carries_the_apache_license(wheel):
    with zipfile.ZipFile(wheel) as zf:
        licence = [n for n in zf.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        assert licence, "LICENSE is not in the wheel (setup.cfg license_files)"
        text = zf.read(licence[0]).decode()
    assert text == (REPO_ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text


def test_every_dependency_is_pinned_for_development_and_hdf5_is_an_extra(wheel):
    with zipfile.ZipFile(wheel) as zf:
        meta_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(zf.read(meta_name).decode())
    pinned = {_requirement_name(line) for line in
              (REPO_ROOT / "constraints.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    requires = meta.get_all("Requires-Dist")
    # every extra make setup installs; the notebooks' extra is for a hosted runtime
    names = {_requirement_name(r) for r in requires if "notebooks" not in r}
    assert names - pinned == set(), f"not pinned in constraints.txt: {sorted(names - pinned)}"
    base = {_requirement_name(r) for r in requires if "extra ==" not in r}
    assert "h5py" not in base, "only the experiments read hdf5: h5py belongs to an extra"
    assert any(_requirement_name(r) == "h5py" and "experiments" in r for r in requires)


def test_installed_wheel_runs_outside_the_checkout(clean_venv, tmp_path):
    python = clean_venv / "bin" / "python"
    where = _run(python, "-c", "import core, contract, gee_export, engine, training, inference, "
                 "cli; print(*(m.__file__ for m in (core, contract, gee_export, engine, "
                 "training, inference, cli)))",
                 cwd=tmp_path)
    assert all(str(clean_venv) in path for path in where.split()), where
    for script in ("isamap-export", "isamap-map"):
        assert "usage:" in _run(clean_venv / "bin" / script, "--help", cwd=tmp_path)
    out = tmp_path / "demo"
    _run(clean_venv / "bin" / "isamap-demo", "--out", out, "--size", "384", "--until",
         "quicklooks", "-q", cwd=tmp_path)
    assert (out / "quicklooks" / "composite_rgb.png").stat().st_size > 0
