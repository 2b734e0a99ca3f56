"""ImageNet-21k EfficientNetV2 weights for the keras.applications backbones, in four steps:

- `sources`: every checkpoint under every name (Kaggle Models handle and version, TF Hub URL),
  feature widths, errors; no TensorFlow.
- `fetch`: find or download the official SavedModel.
- `convert`: map it onto the Keras backbone, prove it with the self-check, write the weights and
  their report.
- `cache`: `resolve_pretrained`, a trusted cached conversion or a fresh one.
- `standin`: a random SavedModel in the official layout, for offline demos and tests.

Nothing is imported here, so reading `sources` never starts TensorFlow.
"""
