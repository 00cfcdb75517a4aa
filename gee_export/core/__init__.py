"""The core every package may use: errors, retry, version, months, JSON, storage, the EE session.

May import: nothing else of the project (the standard library and third-party packages only).
"""
