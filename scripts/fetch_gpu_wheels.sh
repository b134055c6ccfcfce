#!/usr/bin/env bash
# Wheels for scripts/gpu_check.sh on the GPU machine (Python 3.12, Linux x86-64, no internet):
# what lossbench needs beyond the PyTorch, Lightning, torchmetrics, torchvision, scikit-learn,
# pandas, scipy and matplotlib already there. Run it where there is internet; it fills
# scripts/wheels/ (about 6 MB), which gpu_check.sh installs from with pip --no-index.
#
#   scripts/fetch_gpu_wheels.sh [PYTHON_VERSION]     # default 3.12
#
# scripts/wheels/ is not tracked: carry it to the GPU machine with the working tree.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=${PYTHON:-python3}
[[ -x "$HERE/../.venv/bin/python" && -z "${PYTHON:-}" ]] && PY=$HERE/../.venv/bin/python
VERSION=${1:-3.12}
DEST=$HERE/wheels
mkdir -p "$DEST"

# Wheels only, for the GPU machine's Python, without dependencies (they would pull in torch):
# every package needed is named. PyYAML is the one with compiled code.
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$VERSION" \
    --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d "$DEST" \
    "hydra-core>=1.3.2,<1.4" "omegaconf>=2.3,<2.4" PyYAML \
    rich markdown-it-py mdurl pygments \
    pytorch-metric-learning tqdm threadpoolctl packaging \
    "setuptools>=68"

# antlr4-python3-runtime 4.9.3 (what omegaconf 2.3 needs) is published as a source archive
# only: build its pure-Python wheel here.
"$PY" -m pip wheel --quiet --no-deps --no-binary=antlr4-python3-runtime -w "$DEST" \
    "antlr4-python3-runtime==4.9.3"

ls -1 "$DEST"
