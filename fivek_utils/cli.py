"""The `fivek` command line: headless use of the kit.

    fivek synth --out DIR                 write the synthetic 5K dataset (official layout)
    fivek describe DIR                    JSON summary of a dataset
    fivek run --config configs/demo.yaml  run the notebooks with papermill
    fivek predict / check-submission      inference and submission checks
    fivek kaggle                          bundle the kit for Kaggle
    fivek bench {progressive,predict,pipeline}
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# TensorFlow's C++ start-up notes would bury a one-line error; warnings and errors still show
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


SYNTH_PROFILES_HELP = """\
Synthetic photos in the official Zalo layout (train/ with train_meta.csv and its blank labels,
public_test/), with every photo's truth in scenes.jsonl. Two profiles:

  closeup    head-and-shoulders shots of 1-3 adults side by side; distancing is read from the
             gaps between their shoulders. A face is about a quarter of the photo's longer side
             (median 26%; 14-48% from the 10th to the 90th percentile): 16 px at 64 px, 25 px at
             96, 57 px at 224. The demo's profile: from scratch on 2 CPU cores the EfficientNets
             learn distancing and 5K in minutes (the mask head needs pretrained weights or more).
  realistic  1-6 people seen whole at 2.5-12 m, as in street and CCTV photos. A face is about 6.5%
             of the longer side (3.7-11%): 6 px at 96, 15 px at 224, 25 px at 384. For pretrained
             weights and GPU-sized images; from scratch at 96 px it stays near chance.

Face sizes are after the letterbox to the training size (the longer side becomes that size).
"""


def _cmd_synth(args) -> int:
    from .synth import generate_dataset

    summary = generate_dataset(args.out, n_train=args.n_train, n_test=args.n_test, seed=args.seed, profile=args.profile,
                               workers=args.workers, progress=not args.quiet)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _cmd_describe(args) -> int:
    from .describe import describe_dataset

    print(json.dumps(describe_dataset(args.dir, duplicates=not args.no_duplicates, progress=not args.quiet), indent=2))
    return 0


def _cmd_run(args) -> int:
    from .config import EXECUTED_DIR, FIGURES_DIR, MODELS_DIR, SUBMISSIONS_DIR
    from .runner import run_notebooks

    done = run_notebooks(args.config, args.only, progress=not args.quiet)
    print(f"\n{len(done)} notebook(s) ran. Outputs:")
    print(f"  executed notebooks  {EXECUTED_DIR}")
    print(f"  figures             {FIGURES_DIR}")
    print(f"  models and configs  {MODELS_DIR}")
    print(f"  submissions         {SUBMISSIONS_DIR}")
    return 0


def _cmd_predict(args) -> int:
    from .inference import load_ensemble, predict_split
    from .submission import check_submission, write_submission

    test_dir = Path(args.test_dir)
    metas = sorted(test_dir.glob("*_meta.csv"))
    if len(metas) != 1 or not (test_dir / "images").is_dir():
        raise FileNotFoundError(f"{test_dir} must hold images/ and exactly one *_meta.csv (found {[m.name for m in metas]})")
    split = metas[0].name[: -len("_meta.csv")]
    ensemble = load_ensemble(args.models)
    tta = args.tta or ensemble.tta
    meta = _load_test_meta(test_dir, split, metas[0])
    pred = predict_split(ensemble, meta, tta=tta, batch_size=args.batch_size, progress=not args.quiet)
    out = write_submission(pred.frame, args.out, probabilities=not args.no_probs)
    summary = check_submission(out, metas[0])
    print(json.dumps({**summary, "models": len(ensemble.models), "tta": list(tta), "fallback_rows": len(pred.failed),
                      "seconds": round(pred.seconds, 1), "images_per_second": round(len(meta) / max(pred.seconds, 1e-9), 1)}, indent=2))
    return 0


def _load_test_meta(test_dir: Path, split: str, meta_path: Path):
    """A test folder's meta table, whatever the split folder is called (e.g. /data/private_test)."""
    from .data import DataValidationError, read_meta

    raw, problems = read_meta(meta_path, labelled=False)
    if problems:
        raise DataValidationError("\n".join(p.describe(meta_path, raw) for p in problems))
    raw["path"] = [str(test_dir / "images" / f) for f in raw["fname"]]
    return raw


def _cmd_check(args) -> int:
    from .submission import SubmissionError, check_submission

    try:
        print(json.dumps(check_submission(args.file, args.meta), indent=2))
    except SubmissionError as exc:
        print(f"REJECTED: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_weights(args) -> int:
    from .config import ConfigError

    if args.action == "standin":
        from .automl_export import export_automl_savedmodel

        if not args.out:
            raise ConfigError("weights standin needs --out FOLDER (where to write the SavedModel)")

        export_automl_savedmodel(args.out, variant=args.variant, seed=args.seed)
        print(f"wrote a randomly initialised EfficientNetV2-{args.variant} SavedModel (official layout) to {args.out}")
        return 0
    if args.action == "table":
        from .weights import pretrained_table

        print(pretrained_table())
        return 0
    from .weights import conversion_report, resolve_pretrained

    weights_file, _scale, _offset = resolve_pretrained(args.backbone, args.source)
    print(json.dumps(conversion_report(weights_file), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fivek", description="fivek: Zalo AI 2021 5K Compliance kit")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "synth", help="write the synthetic 5K dataset in the official Zalo layout",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=SYNTH_PROFILES_HELP)
    p.add_argument("--out", required=True, help="dataset root to create (train/, public_test/)")
    p.add_argument("--profile", default="closeup", choices=["closeup", "realistic"],
                   help="how the people are framed (see above; default closeup)")
    p.add_argument("--n-train", type=int, default=1200)
    p.add_argument("--n-test", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0, help="processes (0 = all cores)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("describe", help="print a JSON summary of a dataset in the official layout")
    p.add_argument("dir", help="dataset root holding train/ and/or public_test/")
    p.add_argument("--no-duplicates", action="store_true", help="skip perceptual hashing")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_describe)

    p = sub.add_parser("run", help="run the numbered notebooks with papermill")
    p.add_argument("--config", required=True, help="pipeline YAML, e.g. configs/demo.yaml")
    p.add_argument("--only", nargs="*", help="notebook numbers or names, e.g. --only 01 03")
    p.add_argument("--quiet", action="store_true", help="no per-cell progress bars")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("predict", help="inference only: a test folder -> submission CSV (the competition's predict.sh)")
    p.add_argument("--models", required=True, help="run folder: fold*/model.keras (or model.keras), thresholds.json, config.yaml")
    p.add_argument("--test-dir", required=True, help="folder with images/ and its *_meta.csv, e.g. /data/private_test")
    p.add_argument("--out", required=True, help="submission CSV to write, e.g. /result/submission.csv")
    p.add_argument("--tta", nargs="*", choices=["identity", "flip"],
                   help="augmentations (identity flip); default: those the run's thresholds were tuned with")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--no-probs", action="store_true", help="do not write <out>_probs.csv beside it")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("check-submission", help="validate a submission against its test meta file")
    p.add_argument("file")
    p.add_argument("--meta", required=True, help="the test meta CSV (image_id,fname)")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("weights", help="ImageNet-21k EfficientNetV2 weights: fetch + convert, the source table, or an offline stand-in")
    p.add_argument("action", choices=["convert", "table", "standin"],
                   help="convert: find or download the checkpoint, convert it once and print the conversion report; "
                        "table: the checkpoints with their Kaggle Models versions and feature widths; "
                        "standin: a random SavedModel in the official layout")
    p.add_argument("--backbone", default="EfficientNetV2B0")
    p.add_argument("--source", default="imagenet21k", help="imagenet21k, imagenet21k-ft1k, or a SavedModel folder")
    p.add_argument("--out", help="standin: folder to write")
    p.add_argument("--variant", default="b0", choices=["b0", "b1", "b2", "b3", "s", "m", "l"], help="standin: the EfficientNetV2 size")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_weights)

    from .bench import add_bench_parser
    from .kaggle import add_kaggle_parser

    add_kaggle_parser(sub)
    add_bench_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rc = args.func(args)
        return rc if isinstance(rc, int) else 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one clear line for expected failures, traceback with FIVEK_DEBUG
        from .config import ConfigError
        from .data import DataValidationError
        from .runner import PipelineError

        from .models import ModelConfigError
        from .submission import SubmissionError

        expected = (ConfigError, DataValidationError, PipelineError, FileNotFoundError, ModelConfigError, SubmissionError)
        try:
            from .weights import PretrainedWeightsError

            expected += (PretrainedWeightsError,)
        except ImportError:
            pass
        if isinstance(exc, expected) and not os.environ.get("FIVEK_DEBUG"):
            print(f"fivek {args.command}: {exc}", file=sys.stderr)
            return 2 if not isinstance(exc, PipelineError) else 1
        raise


if __name__ == "__main__":
    sys.exit(main())
