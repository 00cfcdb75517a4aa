# Install isamap where it is missing (a fresh Colab runtime); a no-op in a set-up checkout.
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from packaging.version import InvalidVersion, Version


class InstallStopped(Exception):
    """Why isamap cannot be installed: shown in one line, without a traceback."""

    def _render_traceback_(self):  # IPython (Jupyter, Colab) prints these lines instead
        return [f"InstallStopped: {self}"]


def newest_wheel(*folders):
    """The isamap wheel of the highest version in ``folders`` (0.10.0 over 0.9.0), else None."""
    found = []
    for folder in folders:
        for path in folder.glob("isamap-*.whl"):
            try:
                found.append((Version(path.name.split("-")[1]), path))
            except InvalidVersion:
                continue
    return str(max(found)[1]) if found else None


def isamap_source():
    """ISAMAP_SOURCE, else the clone around here or in /content/isamap, else an uploaded wheel."""
    if os.environ.get("ISAMAP_SOURCE"):
        return os.environ["ISAMAP_SOURCE"]
    for folder in (Path.cwd(), *Path.cwd().parents, Path("/content/isamap")):
        setup = folder / "setup.cfg"
        if setup.is_file() and "name = isamap" in setup.read_text():
            return str(folder)
    return newest_wheel(Path.cwd(), Path("/content"))


def install(source):
    """pip-install isamap with the Earth Engine and notebook extras from ``source``."""
    extras = "[ee,notebooks]"
    requirement = f"isamap{extras} @ {source}" if "://" in source else f"{source}{extras}"
    print(f"installing {requirement}")
    if subprocess.run([sys.executable, "-m", "pip", "install", "-q", requirement]).returncode:
        raise InstallStopped(f"pip could not install {requirement} (its message is above); "
                             "fix that, or set ISAMAP_SOURCE to another wheel, folder or pip URL "
                             "of isamap, then run this cell again")


if importlib.util.find_spec("gee_export") is None:
    source = isamap_source()
    if source is None:
        raise InstallStopped(
            "isamap is not installed here and no wheel or clone of it was found: upload its "
            "wheel (`make wheel` in a clone writes dist/isamap-*.whl) to the Files panel, clone "
            "your repository into /content/isamap, or set ISAMAP_SOURCE to a pip URL of it; "
            "then run this cell again")
    install(source)
else:
    print("isamap is installed: nothing to do")
