"""advmeta.tune: the Ray layer (Ray Tune trainables, Ray Data episode banks, grids).

Installed as ``advmeta.tune`` from the repository's top-level ``tune/`` folder. Ray is imported
only here and in the modules below it.
"""
