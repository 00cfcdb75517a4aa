"""Fakes for the tests and benchmarks only: the fake Earth Engine pixel server and its quota.

Never installed (``setup.cfg`` packages leave it out) and never imported by the library. May
import everything; nothing but ``tests/`` and ``benchmarks/`` imports it.
"""
