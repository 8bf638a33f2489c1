"""Evaluation: metrics, the evaluate stage's report, classical baselines, variant-effect scoring, extrapolation."""

#: the classical baselines (:mod:`longdna.eval.baselines`), named as their runs are; here, free of NumPy,
#: because the Snakefile declares their outputs
BASELINES = ("majority", "kmer_lr", "onehot_lr")
