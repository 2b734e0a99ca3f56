"""Layer 2, modeling: backbones and the two-head model, the loss, tf.data pipelines, training
(two-phase and progressive), inference and the fold ensemble as one graph, Grad-CAM, and the
ImageNet-21k weights (`pretrained/`). Imports the core and data layers."""
