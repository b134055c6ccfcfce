#!/usr/bin/env bash
# lossbench's GPU paths run and measured; the figures as JSON in OUT/gpu_check.json.
#
#   scripts/gpu_check.sh OUT          # on a GPU machine (~6 minutes, at most ~8)
#   scripts/gpu_check.sh --cpu OUT    # the same steps, tiny, on CPU (the tests run this)
#
# What it measures and how: scripts/gpu_check.py's docstring. Exit code 0 when every path
# ended with finite test metrics, 1 when one did not, 2 when it could not start.
#
# Python: $PYTHON, else the repository's .venv, else python3. When that Python lacks what
# lossbench needs (hydra-core, omegaconf, rich, lossbench itself installed) and scripts/wheels/
# exists (scripts/fetch_gpu_wheels.sh fills it where there is internet), the missing packages
# and lossbench from this tree are installed from those wheels alone (pip --no-index) into a
# temporary folder put on PYTHONPATH: nothing is installed into the machine's Python.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
FLAGS=()
if [[ "${1:-}" == "--cpu" ]]; then
    FLAGS+=(--cpu)
    shift
fi
if [[ $# -ne 1 ]]; then
    echo "usage: scripts/gpu_check.sh [--cpu] OUT" >&2
    exit 2
fi
mkdir -p "$1"
OUT=$(cd "$1" && pwd)

if [[ -n "${PYTHON:-}" ]]; then
    PY=$PYTHON
elif [[ -x "$REPO/.venv/bin/python" ]]; then
    PY=$REPO/.venv/bin/python
else
    PY=python3
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"  # not the repository: its lossbench/ has no conf/ until installed

# module to import -> distribution that provides it (lossbench.conf: lossbench installed)
MISSING=$("$PY" - <<'EOF'
import importlib.util
needed = {"yaml": "PyYAML", "antlr4": "antlr4-python3-runtime", "omegaconf": "omegaconf",
          "hydra": "hydra-core", "pygments": "pygments", "mdurl": "mdurl",
          "markdown_it": "markdown-it-py", "rich": "rich", "threadpoolctl": "threadpoolctl",
          "pytorch_metric_learning": "pytorch-metric-learning", "lossbench.conf": "LOSSBENCH"}
def found(name):
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False
print(" ".join(dist for module, dist in needed.items() if not found(module)))
EOF
)
if [[ -n "$MISSING" ]]; then
    if [[ ! -d "$HERE/wheels" ]]; then
        echo "gpu_check: $PY lacks: $MISSING; no $HERE/wheels to install them from" \
             "(run scripts/fetch_gpu_wheels.sh where there is internet)" >&2
        exit 2
    fi
    echo "gpu_check: installing from $HERE/wheels: $MISSING"
    SITE=$WORK/site
    TARGETS=()
    for dist in $MISSING; do
        if [[ $dist == LOSSBENCH ]]; then TARGETS+=("$REPO"); else TARGETS+=("$dist"); fi
    done
    PIP=("$PY" -m pip install --quiet --no-index --find-links "$HERE/wheels" --no-deps
         --target "$SITE")
    # lossbench builds with setuptools: from the wheels (isolated), else the machine's own
    "${PIP[@]}" "${TARGETS[@]}" || "${PIP[@]}" --no-build-isolation "${TARGETS[@]}"
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
    "$PY" -c "import hydra, omegaconf, rich, lossbench.conf" || {
        echo "gpu_check: still cannot import lossbench's needs after installing" >&2
        exit 2
    }
fi

"$PY" "$HERE/gpu_check.py" drive "$OUT" --work "$WORK" "${FLAGS[@]}"
