"""The engine room: how a model runs fast on this machine, for training and inference alike.

Devices, precisions and memory layouts from user options (``devices``), how one configuration
runs and the sole owner of torch's thread count (``execution``), ``--precision auto``
measured inside its budget (``autotune``), the whole choice of how an inference model runs
decided in one place (``choice``), a model compiled for inference (``compiled``), int8 inference
(``quantize``), the C allocator's setting (``allocator``), the file of measured choices later
runs look up (``autotune_cache``), the distributed set-up (``distributed``), seeds and random state
(``seeding``) and the model-output convention (``outputs``).

May import: ``core``, torch; nothing else of the project (the data contract,
models, losses, data and inference sit above it and hand it what it runs).
"""
