#!/usr/bin/env bash
# The GPU check (bench/gpu_check.py) in one command, for the device machine's bare image: a venv over
# its own Python (torch, transformers, accelerate, numpy 2.x are there) with the carried wheels
# (bench/gpu_wheels/, made by bench/gpu_wheels.sh) installed offline, then the CUDA-marked tests and
# the LDM throughput sweep, every figure as JSON under $OUT. docs/BENCHMARKS.md "GPU check" has the
# run tool's command line.
#
#   bench/gpu_check.sh                   # on the GPU machine
#   bench/gpu_check.sh --cpu-dry-run     # the same steps on the CPU, tiny sizes
#
# Overrides: T2A_GPU_PYTHON (the base Python, default python3), T2A_GPU_WHEELS (default
# bench/gpu_wheels), T2A_GPU_VENV (default /tmp/t2a-gpu-venv; reused once complete), OUT (default
# bench/out/gpu_check).
set -euo pipefail
cd "$(dirname "$0")/.."
python="${T2A_GPU_PYTHON:-python3}"
wheels="${T2A_GPU_WHEELS:-bench/gpu_wheels}"
venv="${T2A_GPU_VENV:-/tmp/t2a-gpu-venv}"
export OUT="${OUT:-bench/out/gpu_check}"
mkdir -p "$OUT"
started=$(date +%s)
if [ ! -f "$venv/.t2a-ready" ]; then
  if ! ls "$wheels"/*.whl >/dev/null 2>&1; then
    echo "no wheels in $wheels: run bench/gpu_wheels.sh here first, and carry $wheels" >&2
    exit 2
  fi
  rm -rf "$venv"
  # --without-pip: no ensurepip needed; the base Python's own pip installs into the venv (--target).
  if "$python" -m venv --without-pip --system-site-packages "$venv"; then
    run="$venv/bin/python"
    site=$("$run" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    # The device's python3 is itself a venv (/opt/torch/.venv): --system-site-packages reaches the Python
    # under it, not the packages in it. A .pth file adds them after the venv's own (the wheels win).
    "$python" -c 'import site; print("\n".join(site.getsitepackages()))' > "$site/t2a-base.pth"
  else  # no venv module: the wheels in a folder on PYTHONPATH, before the base's packages
    mkdir -p "$venv"
    run="$python"
    site="$venv/site"
  fi
  "$python" -m pip install --quiet --no-index --no-deps --no-compile --disable-pip-version-check \
    --target "$site" "$wheels"/*.whl
  printf '%s\n%s\n' "$run" "$site" > "$venv/.t2a-ready"
fi
run=$(sed -n 1p "$venv/.t2a-ready")
site=$(sed -n 2p "$venv/.t2a-ready")
[ "$run" = "$python" ] && export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
echo "[gpu_check] environment ready in $(( $(date +%s) - started )) s: $run, wheels in $site"
# The project runs from its source tree: pipelines, training, demo and bench import from here.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
set -o pipefail
"$run" bench/gpu_check.py --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_check.log"
