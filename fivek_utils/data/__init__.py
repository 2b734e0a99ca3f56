"""Layer 1, data: the Zalo layout and its label rules, image decoding, `describe`, the synthetic
dataset, folds and the submission format. Imports only the core; never Keras or TensorFlow."""
