"""Peak resident memory of this process, for benchmarks that run their measurement as a child.

Not ``ru_maxrss``: Linux carries that over ``exec`` from the forked parent, so a child started
by a parent holding 2 GB reports 2 GB before doing anything (seen in ``bench_mapping.py``).
The kernel's high-water mark of the process's own memory map (``VmHWM``) starts afresh.
"""

from __future__ import annotations

import resource


def peak_rss_gib() -> float:
    """This process's peak RSS in GiB (``VmHWM``; ``ru_maxrss`` where /proc is missing)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**20  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
