#!/usr/bin/env python
"""Export co-registered Sentinel-1/2 patches: ``python export_patches.py --region wuhan``.

A thin wrapper around ``cli.export.main`` (also installed as ``isamap-export``); run with
``--help`` for every option and ``--dry-run`` to see the plan without contacting Earth Engine.
"""

import sys

from cli.export import main

if __name__ == "__main__":
    sys.exit(main())
