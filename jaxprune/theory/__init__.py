"""Teacher-student perceptron theory of data pruning (Sorscher et al. 2022, Fig. 1)."""
