"""Data pruning (Sorscher et al. 2022): k-means prototypes and the supervised scores they are
compared with, subset selection, and the jobs (prune, train on a subset, pruning curves)."""
