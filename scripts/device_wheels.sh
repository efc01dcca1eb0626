#!/bin/sh
# Wheels the GPU image lacks (zarr and its needs, tomli-w), for Python 3.12 / x86-64, into .whl/
# (ignored by git). Carry `.whl` in a device call and start its command with:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#       --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD/src
set -eu
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl \
    zarr==3.1.6 numcodecs==0.16.6 donfig==0.8.1.post1 google-crc32c tomli-w
ls .whl
