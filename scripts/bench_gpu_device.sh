#!/usr/bin/env bash
# `fivek bench gpu --backend jax` on a GPU machine that has JAX (with CUDA) but neither TensorFlow
# nor Keras, and no internet: Keras travels as wheels, the kit as its source tree.
#
#   scripts/bench_gpu_device.sh wheels        here, with PyPI: the .venv's Keras and the two Keras
#                                             dependencies such a machine lacks (namex, optree) as
#                                             CPython 3.12 wheels, into .whl/ (git-ignored, ~3 MB)
#   scripts/bench_gpu_device.sh run [ARGS]    there, from the checkout's root, with .whl/ beside it:
#                                             installs .whl/ into a temporary folder and runs the
#                                             model part (ARGS go to `fivek bench gpu`, e.g. --tiny);
#                                             copies reports/bench/gpu.json (gpu-tiny.json with
#                                             --tiny) and the log to $OUT when it is set
#
# Then, here: copy gpu.json into reports/bench/ and run
#   .venv/bin/fivek bench gpu --backend jax --part pipeline
# which adds the tf.data pipeline's images per core of this CPU and the cores that keep the GPU fed.
#
# Settings (environment): PYTHON (default python3), WHEELS (default .whl), PY_VERSION for `wheels`
# (default 3.12), SITE (where `run` installs the wheels, default a new temporary folder), BUDGET_S
# (`run`: start no new configuration after this many seconds, default 400).
set -euo pipefail

cmd=${1:-}
shift || true
PYTHON=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}

case "$cmd" in
wheels)
  VENV_PY=${VENV_PY:-.venv/bin/python}
  versions=$("$VENV_PY" - <<'EOF'
from importlib.metadata import version
print(" ".join(f"{p}=={version(p)}" for p in ("keras", "namex", "optree")))
EOF
)
  rm -rf "$WHEELS" && mkdir -p "$WHEELS"
  platforms=()
  for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
  done
  # shellcheck disable=SC2086  # $versions is a list of requirements
  "$VENV_PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version "${PY_VERSION:-3.12}" \
    --implementation cp "${platforms[@]}" -d "$WHEELS" $versions
  ls -l "$WHEELS"
  ;;
run)
  [ -n "$(ls "$WHEELS"/*.whl 2>/dev/null)" ] || { echo "no wheels in $WHEELS: run '$0 wheels' where PyPI is reachable" >&2; exit 2; }
  SITE=${SITE:-$(mktemp -d)}
  "$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl
  export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}" KERAS_BACKEND=jax PYTHONUNBUFFERED=1
  tiny=0
  for a in "$@"; do [ "$a" = "--tiny" ] && tiny=1; done
  # a full-size run on a CPU would take hours: refuse unless JAX sees a GPU (--tiny is fine anywhere)
  "$PYTHON" - "$tiny" <<'EOF'
import sys
import jax
devices = jax.devices()
print("jax", jax.__version__, devices)
if sys.argv[1] != "1" and devices[0].platform != "gpu":
    sys.exit(f"JAX sees no GPU ({devices}); not running the full-size benchmark")
EOF
  log=${OUT:-reports/bench}/bench-gpu.log  # --verbose: JAX's and XLA's messages in it too, not in a gpu.log left there
  mkdir -p "$(dirname "$log")" reports/bench
  set +e
  "$PYTHON" -m fivek_utils.cli bench gpu --verbose --backend jax --part model --budget-s "${BUDGET_S:-400}" "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  result=reports/bench/gpu.json
  [ "$tiny" = 1 ] && result=reports/bench/gpu-tiny.json
  if [ -n "${OUT:-}" ] && [ -f "$result" ]; then
    cp "$result" "$OUT"/
  fi
  exit "$rc"
  ;;
*)
  sed -n '2,20p' "$0" >&2
  exit 2
  ;;
esac
