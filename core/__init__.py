"""The core every package may use, independent of remote sensing.

Errors, commands, retry, version, months, JSON, content digests, storage, the output lock, the
user's cache folder, the off switch of environment variables, C kernels
built on first use, the Earth Engine session.

May import: nothing else of the project (the standard library and third-party packages only).
"""
