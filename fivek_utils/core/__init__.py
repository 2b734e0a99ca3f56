"""Layer 0, the core: configuration and paths, where the kit runs, the supported dependency versions,
how much the commands say, atomic writes, the labels and the 5K rule, the metrics and the figures.
Imports nothing else of the kit, and never Keras or TensorFlow."""
