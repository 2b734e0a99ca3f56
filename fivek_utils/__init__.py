"""fivek_utils: the helper package behind the fivek notebooks and the `fivek` command line.

Public functions are re-exported here and imported lazily, so `import fivek_utils` (and the
command line) stays fast until a function that needs TensorFlow is used.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    # configuration and paths
    "Config": "config", "ConfigError": "config", "load_yaml": "config", "params_for": "config",
    "PROJ_ROOT": "config", "DATA_DIR": "config", "SYNTH_DATA_DIR": "config", "MODELS_DIR": "config",
    "REPORTS_DIR": "config", "FIGURES_DIR": "config", "SUBMISSIONS_DIR": "config", "PROCESSED_DATA_DIR": "config",
    "resolve_path": "config", "data_root": "config",
    "detect_environment": "environment", "resolve_data_dir": "environment",
    # data
    "load_meta": "data", "read_meta": "data", "apply_label_rules": "data", "label_array": "data",
    "label_counts": "data", "load_labels": "data", "split_paths": "data", "stratify_key": "data", "DataValidationError": "data",
    "REAL_LABELS_FILE": "resources",
    "open_rgb": "images", "read_image": "images", "letterbox": "images", "load_images": "images",
    "decode_images": "images", "perceptual_hashes": "images", "duplicate_groups": "images", "ImageReadError": "images",
    "describe_dataset": "describe", "image_table": "describe",
    "generate_dataset": "synth",
    # splits
    "make_folds": "folds", "holdout_split": "folds", "save_folds": "folds", "fold_table": "folds",
    "duplicate_group_ids": "folds",
    # models and weights
    "build_model": "models", "build_backbone": "models", "set_trainable": "models", "set_dropout": "models",
    "combine_5k": "models", "decide_5k": "models", "get_backbone": "models", "HEADS": "models",
    "resolve_pretrained": "weights", "convert_savedmodel": "weights", "export_automl_savedmodel": "automl_export",
    # training and evaluation
    "load_training_data": "training", "train_two_phase": "training", "predict_probs": "training",
    "MaskedBinaryCrossentropy": "training", "warmup_cosine": "training", "load_best": "training",
    "make_train_dataset": "pipeline", "make_predict_dataset": "pipeline",
    "evaluate": "metrics", "tune_thresholds": "metrics", "f1_curves": "metrics", "truth_5k": "metrics",
    "gradcam": "explain",
    "prediction_table": "errors", "confident_mistakes": "errors", "read_scenes": "errors",
    "error_breakdown": "errors", "plot_error_breakdown": "errors", "plot_mistakes": "errors",
    "load_ensemble": "inference", "predict_split": "inference", "predict_tta": "inference",
    "write_submission": "submission", "check_submission": "submission", "SubmissionError": "submission",
    "save_run": "runs", "load_metrics": "runs", "compare_runs": "runs", "predictions_frame": "runs",
    # accelerators
    "setup_accelerator": "accel", "Accelerator": "accel",
    # plots
    "plot_label_balance": "plots", "plot_cooccurrence": "plots", "plot_image_sizes": "plots",
    "plot_gallery": "plots", "plot_history": "plots", "plot_confusions": "plots",
    "plot_f1_thresholds": "plots", "plot_heatmaps": "plots", "save_figure": "plots",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name == "io":  # the atomic-write helpers, as fk.io.atomic_write_csv(...)
        return importlib.import_module(".io", __name__)
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fivek_utils' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
