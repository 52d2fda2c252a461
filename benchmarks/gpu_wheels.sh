#!/usr/bin/env bash
# Wheels for a GPU machine whose Python (3.12, PyTorch with CUDA preinstalled, no internet)
# lacks the pipeline's own dependencies: Snakemake 9, Hydra, netCDF4 and everything they
# pull in, at the versions installed here. Run it on a machine with the package index, from
# the repository root; it fills .whl/ (git-ignored), which benchmarks/gpu_check.sh installs
# from. Packages the GPU image already has (torch, numpy, scipy, pandas, xarray, matplotlib,
# seaborn, ...) are left out, so that its CUDA build of torch is the one used.
#
# Usage: bash benchmarks/gpu_wheels.sh [python-version (default 3.12)]
set -euo pipefail
cd "$(dirname "$0")/.."
PYV=${1:-3.12}
PY=${PYTHON:-python3}
mkdir -p .whl
# the dependency closure of what the pipeline needs beyond the GPU image, with the versions
# of this environment (pip install -e ".[repro]" first)
$PY - "$@" > .whl/requirements.txt <<'PYEOF'
import re
from importlib.metadata import distribution, PackageNotFoundError
ROOTS = ["snakemake", "hydra-core", "omegaconf", "netCDF4", "snakemake-executor-plugin-slurm"]
IMAGE = {"torch", "numpy", "scipy", "pandas", "xarray", "matplotlib", "seaborn", "tqdm",
         "pyyaml", "jinja2", "markupsafe", "packaging", "requests", "urllib3", "idna",
         "certifi", "charset-normalizer", "psutil", "attrs", "typing-extensions", "pillow",
         "contourpy", "cycler", "fonttools", "kiwisolver", "pyparsing", "python-dateutil",
         "six", "filelock", "fsspec", "sympy", "mpmath", "networkx", "setuptools", "triton",
         "tabulate", "wrapt", "rich", "pygments", "markdown-it-py", "mdurl", "h5py", "tzdata",
         "pytz", "narwhals"}  # checked against the image's package list (2026-11-17):
# platformdirs, jsonschema and its dependencies are not in it, so they are carried
def norm(n): return re.sub(r"[-_.]+", "-", n).lower()
seen, todo = {}, list(ROOTS)
while todo:
    name = norm(todo.pop())
    if name in seen or name in IMAGE or name.startswith("nvidia-"):
        continue
    try:
        dist = distribution(name)
    except PackageNotFoundError:
        continue
    seen[name] = dist.version
    for req in dist.requires or []:
        if "extra ==" in req:
            continue
        todo.append(re.split(r"[ ;<>=!~\[(]", req.strip())[0])
for name, version in sorted(seen.items()):
    print(f"{name}=={version}")
PYEOF
echo "$(wc -l < .whl/requirements.txt) packages: $(tr '\n' ' ' < .whl/requirements.txt)"
PLAT="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64"
while read -r req; do
    # a binary wheel for the GPU machine's Python, else a pure-Python wheel built here
    # shellcheck disable=SC2086
    $PY -m pip download -q --no-deps --only-binary=:all: --python-version "$PYV" \
        --implementation cp $PLAT -d .whl "$req" 2>/dev/null \
    || $PY -m pip wheel -q --no-deps -w .whl "$req" \
    || { echo "no wheel for $req" >&2; exit 1; }
done < .whl/requirements.txt
du -sh .whl
