"""The suite's contracts: run settings, the results format and the random-stream plan.

Dependency-free (the standard library only), so that every layer can import them:
``datasets``, ``models``, ``estimators`` and ``plots`` import none of each other,
``training`` builds on all of them, and all of them may read these three modules.

* ``contracts.settings``: every setting of a run, declared once (``Settings``); the
  run (``RunConfig``), the grid of a sweep (``Grid``), the driver's flags, the
  integrity checks and the report's grid section derive from it.
* ``contracts.results``: file names, ``metrics.csv`` and ``summary.csv`` columns,
  run ids: what ``training`` writes and ``plots`` reads.
* ``contracts.streams``: which seed and which purpose code feeds which random draw.
"""
