"""fivek_utils: the helper package behind the fivek notebooks and the `fivek` command line.

The package has five layers, each importing only from itself and the ones before it:

    core/       config and paths, where the kit runs, atomic writes, labels and the 5K rule, metrics, figures
    data/       the Zalo layout and label rules, images, describe, synthetic data, folds, the submission format
    modeling/   backbones, the two-head model, loss, tf.data, training, progressive, inference, Grad-CAM,
                pretrained/ (ImageNet-21k weights)
    workflows/  run folders, k-fold, predict-and-submit, error analysis, the notebook runner, benchmarks
    platform/   accelerators and the Kaggle bundle
    cli.py      the `fivek` command line (all of its argument parsing)

Importing it checks the installed dependency versions against the tested ranges
(core/versions.py) and warns once, plainly, about any outside them.

The names the notebooks use are re-exported here (`import fivek_utils as fk; fk.build_model(...)`)
and imported lazily, so `import fivek_utils` (and the command line) stays fast until something that
needs TensorFlow is used.
"""

from __future__ import annotations

import importlib

from .core.versions import UnsupportedVersionWarning, warn_unsupported

__version__ = "0.1.0"

warn_unsupported()  # one plain warning when an installed dependency is outside the tested versions

_EXPORTS = {
    # core
    "Config": "core.config", "ConfigError": "core.config", "load_yaml": "core.config", "resolve_path": "core.config",
    "data_root": "core.config", "PROJ_ROOT": "core.config", "DATA_DIR": "core.config",
    "PROCESSED_DATA_DIR": "core.config", "SYNTH_DATA_DIR": "core.config", "MODELS_DIR": "core.config",
    "REPORTS_DIR": "core.config", "FIGURES_DIR": "core.config", "SUBMISSIONS_DIR": "core.config",
    "detect_environment": "core.environment", "resolve_data_dir": "core.environment",
    "hold_lock": "core.locks", "FolderBusyError": "core.locks", "DiskFullError": "core.io",
    "HEADS": "core.labels", "combine_5k": "core.labels", "decide_5k": "core.labels",
    "evaluate": "core.metrics", "tune_thresholds": "core.metrics", "f1_curves": "core.metrics",
    "truth_5k": "core.metrics",
    "plot_label_balance": "core.plots", "plot_cooccurrence": "core.plots", "plot_image_sizes": "core.plots",
    "plot_gallery": "core.plots", "plot_history": "core.plots", "plot_confusions": "core.plots",
    "plot_f1_thresholds": "core.plots", "plot_heatmaps": "core.plots", "save_figure": "core.plots",
    # data
    "load_meta": "data.meta", "read_meta": "data.meta", "apply_label_rules": "data.meta", "label_array": "data.meta",
    "label_counts": "data.meta", "load_labels": "data.meta", "split_paths": "data.meta", "stratify_key": "data.meta",
    "DataValidationError": "data.meta",
    "open_rgb": "data.images", "read_image": "data.images", "letterbox": "data.images", "load_images": "data.images",
    "decode_images": "data.images", "perceptual_hashes": "data.images", "duplicate_groups": "data.images",
    "ImageReadError": "data.images",
    "describe_dataset": "data.describe", "image_table": "data.describe",
    "generate_dataset": "data.synth",
    "make_folds": "data.folds", "holdout_split": "data.folds", "save_folds": "data.folds", "fold_table": "data.folds",
    "duplicate_group_ids": "data.folds",
    "write_submission": "data.submission", "check_submission": "data.submission", "SubmissionError": "data.submission",
    "REAL_LABELS_FILE": "resources",
    # modeling
    "build_backbone": "modeling.backbones", "set_trainable": "modeling.backbones", "get_backbone": "modeling.backbones",
    "build_model": "modeling.models", "set_dropout": "modeling.models",
    "MaskedBinaryCrossentropy": "modeling.losses",
    "make_train_dataset": "modeling.pipeline", "make_predict_dataset": "modeling.pipeline",
    "load_training_data": "modeling.training", "train_two_phase": "modeling.training",
    "warmup_cosine": "modeling.optim", "load_best": "modeling.training",
    "predict_probs": "modeling.inference", "predict_tta": "modeling.inference", "ensemble_graph": "modeling.inference",
    "load_ensemble": "modeling.inference", "predict_split": "modeling.inference",
    "gradcam": "modeling.explain",
    "resolve_pretrained": "modeling.pretrained.cache", "convert_savedmodel": "modeling.pretrained.convert",
    "export_automl_savedmodel": "modeling.pretrained.standin",
    # workflows
    "holdout_data": "workflows.runs", "save_run": "workflows.runs", "load_metrics": "workflows.runs",
    "compare_runs": "workflows.runs", "compare_settings": "workflows.runs", "unlike_settings": "workflows.runs", "predictions_frame": "workflows.runs",
    "predict_submission": "workflows.predict",
    "prediction_table": "workflows.error_analysis", "confident_mistakes": "workflows.error_analysis",
    "read_scenes": "data.scenes", "error_breakdown": "workflows.error_analysis",
    "plot_error_breakdown": "workflows.error_analysis", "plot_mistakes": "workflows.error_analysis",
    "detect_dataset": "workflows.faces", "faces_table": "workflows.faces", "plot_faces": "workflows.faces",
    "plot_face_counts": "workflows.faces", "detector_settings": "workflows.faces", "score_dataset": "workflows.faces",
    "plot_face_mistakes": "workflows.face_gallery",
    "load_boxes": "data.face_truth", "score_detections": "data.face_truth",
    "score_face_model": "workflows.face_scores", "plot_face_scores": "workflows.face_scores",
    "face_data": "workflows.face_kfold", "run_face_kfold": "workflows.face_kfold", "FaceFoldsJob": "workflows.face_kfold",
    "stack_kfold": "workflows.stacking", "stack_gain_table": "workflows.stacking", "save_stack": "workflows.stacking",
    "load_stack": "workflows.stacking", "plot_stack_gains": "workflows.stacking",
    "save_kfold_with_stack": "workflows.stacking",
    "build_face_model": "modeling.face_model", "train_face_model": "modeling.face_model",
    "predict_faces": "modeling.face_model", "bag_probabilities": "modeling.face_model",
    "people_features": "data.people", "extract_crops": "data.crops",
    "self_train": "workflows.self_training", "teacher_of_run": "workflows.self_training",
    "plot_self_training": "workflows.self_training", "fill_blanks": "data.pseudo_labels",
    "pseudo_label_quality": "data.pseudo_labels",
    # platform
    "setup_accelerator": "platform.accel", "Accelerator": "platform.accel",
}

# modules the notebooks use whole: `from fivek_utils import kfold as kf`, `fk.io.atomic_write_csv(...)`
_MODULES = {"io": "core.io", "kfold": "workflows.kfold", "progressive": "modeling.progressive"}

__all__ = sorted([*_EXPORTS, "UnsupportedVersionWarning"])


def __getattr__(name: str):
    if name in _MODULES:
        return importlib.import_module(f".{_MODULES[name]}", __name__)
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fivek_utils' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
