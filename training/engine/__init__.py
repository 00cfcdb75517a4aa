"""The run engine: how a model runs on this machine, for training and inference alike.

Devices, precisions and memory layouts from user options (``devices``), how one configuration
runs and the sole owner of torch's thread count (``execution``), ``--precision auto``
(``autotune``), a model compiled for inference (``compiled``), int8 inference (``quantize``),
how busy other work keeps the cores (``load``), the machine's measured peak (``peak``), the
files of measured records later runs look up (``records``), the distributed set-up
(``distributed``), seeds and random state (``seeding``) and the model-output convention
(``outputs``).

May import: ``gee_export.core``, torch; nothing else of the project (models, losses, data and
inference sit above it).
"""
