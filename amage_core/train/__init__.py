"""Training station: fit models on leak-free cross-validation splits and write run directories.

- ``splits``: subject-level outer folds and inner validation split, stratified by age;
- ``scaler``: the age scaler (fit on training rows only);
- ``dataset``: the PyG dataset over a prepared cohort;
- ``loop``: fit one model on one split (checkpoints, resume, early stopping), predict;
- ``checkpoint``: the checkpoint file (weights-only, written atomically) and the state a resumed
  fit continues from;
- ``cv``: ``cross_validate`` (protocols, cross-cohort, the run directory);
- ``distributed``: DistributedDataParallel under torchrun;
- ``rundir``: the run-directory format shared with ``amage_core.baselines``;
- ``command``: the ``amage train`` command line.
"""
