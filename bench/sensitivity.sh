#!/bin/sh
# Driver for bench_sensitivity (bench/sensitivity.c): builds it in $BUILD
# (default build-bench, Release), runs every fixture and estimator from the
# repository root, prints the table and writes bench/results/sensitivity.json.
# OMP_WAIT_POLICY defaults to passive: on a shared 2-core machine libgomp's
# spinning workers otherwise make a 1 ms forward pass take ~60 ms, which would
# swamp both the estimator costs and the bench's own wall time.
# Extra arguments go to bench_sensitivity (e.g. --only cnn --bits 4:8).
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build-bench}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j2 --target bench_sensitivity >/dev/null
mkdir -p bench/results
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
if [ $# -eq 0 ]; then
    exec "$BUILD/bench/bench_sensitivity" --json bench/results/sensitivity.json
fi
exec "$BUILD/bench/bench_sensitivity" "$@"
