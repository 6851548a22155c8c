"""The ε calibration: the budget at which a grid's MAML loses to the surrogate's FGSM.

:mod:`advmeta.calibration.search` is the rule and its ladder on a trained model;
:mod:`advmeta.calibration.sweep` is a sweep's calibration job — its MAML trained once, cached in
the sweep folder, the surrogate trained beside it, the model handed over to the grid's MAML trial.
"""
