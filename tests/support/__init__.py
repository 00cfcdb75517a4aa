"""Helpers shared by the test modules: real rasters, small models, Earth Engine graph readers.

Test modules import from here, never from one another; fixtures stay in the conftest files.
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# the installed packages, foundation first (setup.cfg); tests that read every library module use it
LIBRARY_PACKAGES = ("core", "contract", "gee_export", "engine", "training", "inference", "cli")
