"""``--setup-file``: what Dataflow workers install, built by Beam's own stager, offline.

Staged as isamap's pyproject.toml, the sdist required torch (and its CUDA libraries) of an
export's workers, and every version floated: constraints.txt was read by nobody there.
"""

from __future__ import annotations

import sys
import tarfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from core.pipeline_options import RunnerConfig
from core.worker_package import closure, read_constraints, write_worker_package
from tests.support import REPO_ROOT
from tests.support.import_graph import read_tree

DATAFLOW = {"project": "p", "region": "us-central1", "temp_location": "gs://b/tmp"}


def sdist_metadata(setup_py, tmp_path) -> tuple[list[str], list[str]]:
    """Requires-Dist and file names of the sdist Beam's stager builds from ``setup_py``."""
    stager = pytest.importorskip("apache_beam.runners.portability.stager")
    tarball = stager.Stager._build_setup_package(str(setup_py), str(tmp_path / "dist"), None)
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
        info = next(n for n in names if n.endswith("PKG-INFO") and n.count("/") == 1)
        meta = Parser().parsestr(tar.extractfile(info).read().decode())
    return meta.get_all("Requires-Dist") or [], names


def test_an_exports_workers_get_no_torch_and_every_version_constraints_txt_pins(tmp_path):
    setup_py = write_worker_package(REPO_ROOT / "pyproject.toml", needs_torch=False,
                                    folder=tmp_path / "worker")
    requires, files = sdist_metadata(setup_py, tmp_path)
    pins = read_constraints(REPO_ROOT / "constraints.txt")
    names = {Requirement(r).name.lower().replace("_", "-") for r in requires}
    assert "torch" not in names and not any(n.startswith("nvidia-") for n in names)
    assert {"earthengine-api", "google-cloud-storage", "numpy", "rasterio"} <= names
    for line in requires:  # each exactly as tested
        req = Requirement(line)
        assert line == pins[req.name.lower().replace("_", "-")], line
    assert any(f.endswith("gee_export/ee/beam_export.py") for f in files)
    assert not any("/training/" in f or "/inference/" in f for f in files)


def test_every_module_an_export_worker_imports_is_installed_by_its_requirements(tmp_path):
    """The third-party imports of core, contract and gee_export (lazy ones too) all come with
    a distribution of the worker's requirement list (or with Python itself)."""
    from importlib.metadata import packages_distributions

    from core.worker_package import worker_requirements

    required = {Requirement(r).name.lower().replace("_", "-")
                for r in worker_requirements(REPO_ROOT, left_out=("torch",))}
    owners = packages_distributions()
    import ast

    missing = set()
    for module in read_tree(REPO_ROOT, ("core", "contract", "gee_export")).values():
        for node in ast.walk(ast.parse(module.source)):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.module
                     and not node.level else [])
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in ("core", "contract", "gee_export"):
                    continue
                dists = {d.lower().replace("_", "-") for d in owners.get(top, [top])}
                if not dists & required and top != "apache_beam":  # Beam: the SDK image's own
                    missing.add(f"{module.path.name}: {top}")
    assert not missing


def test_a_markers_requirement_for_another_platform_is_not_followed():
    graph = {"a": [Requirement("b"), Requirement("winonly; sys_platform == 'win32'"),
                   Requirement("dev; extra == 'test'")], "b": [Requirement("torch")],
             "torch": [Requirement("nvidia-cublas")]}
    assert closure([Requirement("a")], ("torch",), lambda n: graph.get(n, [])) == ["a", "b"]


def test_dataflow_with_a_setup_file_stages_the_worker_package_instead():
    runner = RunnerConfig("dataflow", setup_file=str(REPO_ROOT / "pyproject.toml"), **DATAFLOW)
    staged = runner.for_workers(needs_torch=False)
    (arg,) = [a for a in staged.beam_args() if a.startswith("--setup_file=")]
    assert arg.endswith("/setup.py") and "isamap-worker-" in arg
    text = Path(arg.split("=", 1)[1]).read_text()
    assert "torch" not in text and "earthengine-api==" in text
    mapping = runner.for_workers(needs_torch=True)
    assert "'torch==" in Path(str(mapping.setup_file)).read_text()
    direct = RunnerConfig("direct", setup_file="pyproject.toml")
    assert direct.for_workers(needs_torch=False) is direct  # nothing staged on this machine


def test_a_setup_file_outside_an_isamap_checkout_is_refused_in_one_line(tmp_path):
    from core.errors import ConfigError

    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'other'\n")
    runner = RunnerConfig("dataflow", setup_file=str(tmp_path / "pyproject.toml"), **DATAFLOW)
    with pytest.raises(ConfigError, match=r"holds no setup\.cfg and constraints\.txt"):
        runner.for_workers(needs_torch=False)


def test_a_temporary_worker_package_is_removed_when_its_process_exits(tmp_path):
    """Every --setup-file run, dry runs included, left an isamap-worker-* folder behind (a new
    user's walk counted about 90 in the temporary folder)."""
    import os
    import subprocess
    import sys

    script = ("import sys; from core.worker_package import write_worker_package; "
              "print(write_worker_package(sys.argv[1], needs_torch=False).parent)")
    done = subprocess.run([sys.executable, "-c", script, str(REPO_ROOT / "pyproject.toml")],
                          cwd=REPO_ROOT, capture_output=True, text=True, check=True,
                          env={**os.environ, "TMPDIR": str(tmp_path)})
    folder = done.stdout.strip().splitlines()[-1]
    assert folder.startswith(str(tmp_path)) and not os.path.exists(folder)
