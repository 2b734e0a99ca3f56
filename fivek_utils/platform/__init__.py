"""Layer 4, platform: accelerators (strategies, mixed precision, XLA) and the Kaggle bundle."""
