"""Layer 3, workflows: what the notebooks and the command line do end to end - run folders, the
k-fold ensemble, predicting a submission, error analysis, running the notebooks, benchmarks."""
