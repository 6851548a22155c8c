"""advmeta.tune: the Ray layer, and only that.

The runner (:mod:`advmeta.tune.runner`: ``run``, the one road of ``advmeta sweep`` and
``advmeta tune`` — plan, lock, run, finish — and the planned trials as Ray Tune trainables with
fractional resources), the Ray session (:mod:`advmeta.tune.session`), the progress line
(:mod:`advmeta.tune.progress`), the experiment loggers (:mod:`advmeta.tune.loggers`), the
claims' further blocks of episodes (:mod:`advmeta.tune.extend`) and the episode banks made with
Ray Data (:mod:`advmeta.tune.banks`). What runs is planned without Ray (:mod:`advmeta.plan`); a
trial's own work is its family's (:mod:`advmeta.families`).

Installed as ``advmeta.tune`` from the repository's top-level ``tune/`` folder. Ray is imported
only here and in the modules below it.
"""
