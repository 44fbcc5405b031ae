#!/usr/bin/env bash
# Wheels for bench/gpu_throughput.py on a GPU machine whose Python (3.12, x86-64) has torch,
# pandas, pyarrow, scikit-learn and scipy but not Ray or Optuna:
#
#   bench/pack_wheels.sh DIR          # here, with pip access
#   python3 bench/gpu_throughput.py --wheels DIR     # there
#
# Ray's wheel (~79 MB) is repacked without its Java jars and RLlib (unused here) to stay under the
# 64 MiB a device call may carry.
set -euo pipefail
out=${1:?usage: bench/pack_wheels.sh DIR}
mkdir -p "$out"
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d "$out" \
    ray==2.60.0 optuna alembic sqlalchemy mako colorlog greenlet jsonschema jsonschema-specifications \
    referencing rpds-py tensorboardX harmonypy rich markdown-it-py mdurl pygments pydantic pydantic-core \
    annotated-types typing-inspection typing-extensions
python3 - "$out" <<'EOF'
import pathlib, sys, zipfile

out = pathlib.Path(sys.argv[1])
for wheel in out.glob("ray-2.60.0-*.whl"):
    slim = wheel.with_suffix(".slim")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as dst:
        for item in src.infolist():
            if item.filename.startswith(("ray/jars/", "ray/rllib/")):
                continue
            dst.writestr(item, src.read(item.filename))
    slim.replace(wheel)  # RECORD still lists the dropped files; pip installs what is there
EOF
du -sh "$out"
