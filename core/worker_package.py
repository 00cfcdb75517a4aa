"""The package Dataflow workers install for ``--setup-file``: the job's code, pinned as tested.

Beam builds the folder of ``--setup_file`` into an sdist that every worker installs with pip,
dependencies included. Staged as it is, isamap's own ``pyproject.toml`` would make an export's
workers install every base dependency, torch and its CUDA libraries included, although no
export step imports it, each at whatever version the package index offers that day:
``constraints.txt`` (the versions the project is tested with) is read by nobody on a worker.

So the launcher stages a worker package instead (:func:`write_worker_package`): the checkout's
library packages the job imports, and a setuptools script whose ``install_requires`` are the
distributions the job needs, with everything they require in turn, each pinned to the version
``constraints.txt`` names. An export needs the base dependencies but torch, and the ``ee``
extra; a map needs torch too. The closure is read from the installed distributions' metadata
(the launching environment is the tested one), with the markers of a Linux worker.

May import: the rest of ``core``; nothing else of the project.
"""

from __future__ import annotations

import atexit
import configparser
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from core.errors import ConfigError

EXPORT_PACKAGES = ("core", "contract", "gee_export")
"""What an export's workers import (the layers below ``gee_export``)."""

MAP_PACKAGES = ("core", "contract", "gee_export", "engine", "training", "inference")
"""What a map's workers import."""

WORKER_MARKERS = {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
                  "extra": ""}
"""The environment markers of a Dataflow worker (Beam's Linux SDK image)."""


def read_constraints(path: Path) -> dict[str, str]:
    """``constraints.txt`` as canonical name -> its ``name==version`` line."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if not text or text.startswith("-"):
            continue
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue
        pins[canonicalize_name(req.name)] = text
    return pins


def declared(setup_cfg: Path, extras: Sequence[str]) -> list[Requirement]:
    """The base ``install_requires`` of ``setup.cfg`` and those of ``extras``."""
    cfg = configparser.ConfigParser()
    cfg.read(setup_cfg)
    texts = cfg.get("options", "install_requires", fallback="").splitlines()
    for extra in extras:
        texts += cfg.get("options.extras_require", extra, fallback="").splitlines()
    return [Requirement(t.strip()) for t in texts if t.strip() and not t.strip().startswith("#")]


def installed_requires(name: str) -> list[Requirement]:
    """What the installed distribution ``name`` requires (none when it is not installed)."""
    try:
        texts = metadata.distribution(name).requires or []
    except metadata.PackageNotFoundError:
        return []
    return [Requirement(t) for t in texts]


def closure(roots: Iterable[Requirement], left_out: Sequence[str],
            requires: Callable[[str], list[Requirement]] = installed_requires) -> list[str]:
    """Canonical names of ``roots`` and all they require on a worker, but ``left_out``'s.

    A requirement that applies only elsewhere (a Windows-only one, an extra's) is not
    followed; nothing is reached through a left-out distribution.
    """
    skip = {canonicalize_name(n) for n in left_out}
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen or name in skip or (req.marker and not req.marker.evaluate(
                WORKER_MARKERS)):
            continue
        seen.add(name)
        todo += requires(name)
    return sorted(seen)


def worker_requirements(checkout: Path, left_out: Sequence[str] = ("torch",)) -> list[str]:
    """The pinned requirement lines of a worker (see the module docstring).

    Raises:
        ConfigError: ``checkout`` holds no ``setup.cfg`` and ``constraints.txt``.
    """
    setup_cfg, constraints = checkout / "setup.cfg", checkout / "constraints.txt"
    if not (setup_cfg.is_file() and constraints.is_file()):
        raise ConfigError(f"--setup-file stages isamap's checkout to the workers: "
                          f"{checkout} holds no setup.cfg and constraints.txt; give the "
                          "pyproject.toml at the root of an isamap checkout")
    pins = read_constraints(constraints)
    roots = declared(setup_cfg, ("ee",))
    ranges: dict[str, str] = {canonicalize_name(r.name): str(r) for r in roots}
    return [pins.get(name) or ranges.get(name) or name
            for name in closure(roots, left_out)]


SETUP_PY = '''# isamap's worker package for Dataflow (core/worker_package.py builds it at launch).
from setuptools import find_packages, setup

setup(name="isamap", version={version!r}, python_requires=">=3.11",
      packages=find_packages(include={packages!r}),
      install_requires={requires!r})
'''


def write_worker_package(setup_file: str | Path, *, needs_torch: bool,
                         folder: Path | None = None) -> Path:
    """Write the worker package of a job into ``folder`` (a temporary one by default).

    A temporary folder is removed when the process exits (every run, dry runs too, left one).

    Args:
        setup_file: the ``pyproject.toml`` of the isamap checkout (``--setup-file``).
        needs_torch: the workers run a model (a map), so torch comes with its pin.
        folder: where to write it.

    Returns:
        The package's setuptools script: Beam's ``--setup_file``.
    """
    checkout = Path(setup_file).resolve().parent
    requires = worker_requirements(checkout, left_out=() if needs_torch else ("torch",))
    cfg = configparser.ConfigParser()
    cfg.read(checkout / "setup.cfg")
    packages = MAP_PACKAGES if needs_torch else EXPORT_PACKAGES
    if folder is None:  # a folder of this process's own, removed when it exits (the job has
        folder = Path(tempfile.mkdtemp(prefix="isamap-worker-"))  # staged it by then)
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
    for package in packages:
        target = folder / package
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(checkout / package, target,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    setup_py = folder / "setup.py"
    setup_py.write_text(SETUP_PY.format(
        version=cfg.get("metadata", "version", fallback="0"),
        packages=[p for name in packages for p in (name, f"{name}.*")], requires=requires))
    return setup_py
