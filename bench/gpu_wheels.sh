#!/usr/bin/env bash
# Download the wheels bench/gpu_check.sh installs on the GPU machine (bench/gpu_wheels.txt), without
# their dependencies, for that machine's Python: CPython 3.12 on Linux x86-64 by default.
#
#   bench/gpu_wheels.sh                         # → bench/gpu_wheels/ (cp312), what the run tool carries
#   bench/gpu_wheels.sh 3.11 /tmp/wheels311     # the same set for this machine's Python (the CPU dry run)
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:-3.12}"
dest="${2:-bench/gpu_wheels}"
platforms=()
for tag in manylinux_2_{17,24,27,28,31,34,35}_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$tag")
done
mkdir -p "$dest"
grep -v '^\s*#' bench/gpu_wheels.txt | grep -v '^\s*$' | xargs python3 -m pip download --quiet --no-deps \
  --only-binary=:all: --python-version "$version" --implementation cp "${platforms[@]}" --dest "$dest"
du -sh "$dest"
