#!/bin/bash
# Full-scale experiments side by side on one GPU (memory grows on demand, no preallocation).
# Each argument is a chain of experiments run one after another; chains run concurrently.
# Every run is cut at LIMIT seconds; its folder (without data.zarr, which is large) and log are
# packed into $OUT/results.tgz.
#   scripts/device_experiments.sh LIMIT "rate-learning" "rate-balanced rate-modular" ...
# RESUME_FROM=folder (an unpacked results.tgz of an earlier call): runs finished there are
# skipped, interrupted ones continue with --resume (experiments that keep partial results).
# SET_<experiment with _ for ->="--set a=1 --set b=2" adds options to one experiment.
# Wall times reported inside the summaries are those of a shared GPU.
set -u
limit=$1; shift
runs=/tmp/r
mkdir -p "$runs"
[ -n "${RESUME_FROM:-}" ] && cp -a "$RESUME_FROM"/. "$runs"/
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
start=$(date +%s)
for chain in "$@"; do
    (
        for exp in $chain; do
            left=$(( limit - ($(date +%s) - start) ))
            [ -f "$runs/$exp/summary.json" ] && { echo "finished earlier" >> "$runs/$exp.log"; continue; }
            [ "$left" -gt 10 ] || { echo "no time left for $exp" > "$runs/$exp.log"; continue; }
            resume=""; [ -d "$runs/$exp/.partial" ] && resume="--resume"
            var="SET_$(echo "$exp" | tr - _)"
            t0=$(date +%s)
            # shellcheck disable=SC2086
            timeout "$left" python3 -m neurocircuits run "$exp" --scale full --out "$runs/$exp" \
                $resume ${!var:-} >> "$runs/$exp.log" 2>&1
            echo "exit $? after $(( $(date +%s) - t0 )) s" >> "$runs/$exp.log"
        done
    ) &
done
wait
for exp in $(echo "$@"); do
    echo "== $exp: $(tail -n 1 "$runs/$exp.log")"
    [ -f "$runs/$exp/summary.json" ] && cat "$runs/$exp/summary.json"
done
rm -rf "$runs"/*/data.zarr
tar czf "${OUT:-/tmp}/results.tgz" -C "$runs" .
