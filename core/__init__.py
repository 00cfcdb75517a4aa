"""The core every package may use, independent of remote sensing.

Errors, commands and their parsers, config files, progress, retry, version, months, JSON,
content digests, storage (a local folder or ``gs://``, one atomic writer), the output lock, the
user's cache folder, the off switch of environment variables, the request limit and the Beam
runner options that both the export and the map share.

May import: nothing else of the project (the standard library and third-party packages only).
"""
