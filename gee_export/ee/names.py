"""Names Earth Engine accepts: task descriptions and the workload tag of a run.

Both are rules of the service that callers would otherwise break in different ways: a task
description holds letters, digits and ``. , : ; _ -`` only, at most 100 characters; a workload
tag 1-63 characters of ``a-z 0-9 - _ .``, starting and ending with a letter or digit.
"""

from __future__ import annotations

import os
import re
import sys
import time
import unicodedata

MAX_DESCRIPTION = 100
_NOT_DESCRIPTION = re.compile(r"[^A-Za-z0-9.,:;_-]+")
_WORKLOAD_TAG = re.compile(r"[^a-z0-9_.-]+")
_RUN_STARTED = time.gmtime()


def task_description(text: str) -> str:
    """``text`` as a task description the export service accepts.

    The service takes letters, digits and ``. , : ; _ -`` only, at most 100 characters
    ("The description must contain only the following characters: a..z, A..Z, 0..9, ...").
    Accents are dropped (São Paulo -> Sao_Paulo), every other run of characters becomes one
    underscore, as the community clients (geetools' ``format_description``) do.
    """
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    cleaned = _NOT_DESCRIPTION.sub("_", ascii_text).strip("_")[:MAX_DESCRIPTION].rstrip("_")
    return cleaned or "isamap_task"


def default_workload_tag(command: str | None = None) -> str:
    """The ``workloadTag`` of this process's requests: the command and the run.

    ``isamap-export-20261124t063012-4242``: the command (``command``, else the program's
    name when it is an isamap command, else ``isamap``), the UTC time the process started and
    its id, within the service's rule (1-63 characters of ``a-z 0-9 - _ .``, starting and
    ending with a letter or digit). Cloud Monitoring groups a project's EECU by this tag.
    """
    name = command or os.path.basename(sys.argv[0] if sys.argv else "")
    name = _WORKLOAD_TAG.sub("-", name.lower().removesuffix(".py")).strip("-_.")
    if not name.startswith("isamap"):
        name = "isamap"
    run = f"{time.strftime('%Y%m%dt%H%M%S', _RUN_STARTED)}-{os.getpid()}"
    return f"{name[:63 - len(run) - 1].rstrip('-_.')}-{run}"
