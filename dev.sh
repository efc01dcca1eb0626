#!/bin/sh
# Bootstrap and run: needs only Python >= 3.11 (and a POSIX shell).
#   ./dev.sh gallery   set up .venv, run the gallery at quick scale -> gallery/index.html
#   ./dev.sh test      set up .venv (with test extras), run the test suite
#   ./dev.sh setup     only set up .venv
set -eu
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
VENV=.venv
STAMP="$VENV/.installed-$(cksum pyproject.toml | cut -d' ' -f1)"

setup() {
    if [ ! -f "$STAMP" ]; then
        "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "neurocircuits needs Python >= 3.11, found " + sys.version.split()[0])'
        [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
        "$VENV/bin/python" -m pip install --quiet --upgrade pip
        "$VENV/bin/python" -m pip install --quiet -e '.[test]'
        rm -f "$VENV"/.installed-*
        touch "$STAMP"
    fi
}

cmd=${1:-help}
[ $# -gt 0 ] && shift
case "$cmd" in
    setup) setup ;;
    gallery) setup; exec "$VENV/bin/neurocircuits" gallery --scale quick --out gallery "$@" ;;
    test) setup; exec "$VENV/bin/python" -m pytest -q "$@" ;;
    *) echo "usage: ./dev.sh gallery|test|setup [args...]" >&2; exit 2 ;;
esac
