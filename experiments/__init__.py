"""Experiments of the papers, run on the library as a user would: ``python -m experiments.<name>``.

They sit above the library (like ``benchmarks/``) and nothing in ``gee_export``, ``training``
or ``inference`` imports them. Sample data is found through one option,
:func:`experiments.data.add_data_root_argument` (``--data-root``, default
``$ISAMAP_SHARED_DATA`` or ``../shared/data``).

May import: every package of the project.
"""
