#!/usr/bin/env bash
# Many workers on one study (docs/worker.md): measurements per second of one
# `search --method ilp+evo` on the digits CNN with 1, 2 and 4 workers on a
# private PostgreSQL cluster, against the same search alone on an SQLite file,
# and the database's share per measurement (PostgreSQL with 1 worker minus
# SQLite, over the measurements). Each configuration runs REPEAT times; the
# shortest wall time counts (the machine may be shared). Checks that every
# run's plan equals SQLite's.
#
#   bench/workers.sh [BUILD_DIR]     env: GENS (10), KIDS (16), REPEAT (3), WORKERS ("1 2 4")
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
B=$PWD/$BUILD/bitalloc
F=$PWD/tests/fixtures/digits
GENS=${GENS:-10} KIDS=${KIDS:-16} REPEAT=${REPEAT:-3} WORKERS=${WORKERS:-"1 2 4"}
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$BIN/initdb" ] || { echo "workers.sh: PostgreSQL server binaries not found (install postgresql-15)" >&2; exit 2; }
export OPENBLAS_NUM_THREADS=1

T=$(mktemp -d /tmp/ba_bench_workers.XXXXXX)
AS=()
if [ "$(id -u)" = 0 ]; then chown postgres "$T"; AS=(runuser -u postgres --); fi
PORT=$((20000 + $$ % 30000))
stop() { "${AS[@]}" "$BIN/pg_ctl" -D "$T/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$T"; }
trap stop EXIT
"${AS[@]}" "$BIN/initdb" -D "$T/data" -A trust -U bitalloc --no-sync --no-instructions >/dev/null
"${AS[@]}" "$BIN/pg_ctl" -D "$T/data" -l "$T/log" -w -o "-k $T -p $PORT -c listen_addresses=''" start >/dev/null
url() { echo "postgresql:///$1?host=$T&port=$PORT&user=bitalloc"; }
newdb() { "$BIN/createdb" -h "$T" -p "$PORT" -U bitalloc "$1"; }

ARGS=(search --method ilp+evo "$F/cnn_dyn.onnx" --data "$F/calib_x.npy" --labels "$F/calib_y.npy"
      --budget avg-bits=4 --bits 2,3,4,8 --sensitivity act --generations "$GENS" --offspring "$KIDS"
      --seed 7 --study bench)
now() { date +%s.%N; }
calc() { awk "BEGIN { print $1 }"; }
best() { sort -g | head -1; }

# The sensitivity is cached per database: every run starts from a warm cache so only the search counts.
warm() { "$B" --db "$1" -q "${ARGS[@]}" --generations 1 --offspring 1 --study warm >/dev/null; }

sqlite_times=()
for r in $(seq "$REPEAT"); do
  db=$T/s$r.db
  warm "$db"
  t0=$(now); "$B" --db "$db" -q "${ARGS[@]}" --plan-out "$T/ref$r.json" >/dev/null; t1=$(now)
  sqlite_times+=("$(calc "$t1 - $t0")")
done
cp "$T/ref1.json" "$T/ref.json"
M=$(sqlite3 "$T/s1.db" "select count(*) from memo m join studies s on s.id = m.study_id where s.name = 'bench'")
ts=$(printf '%s\n' "${sqlite_times[@]}" | best)
printf 'digits CNN, ilp+evo %s x %s, %s measurements, best of %s runs (%s cores)\n' "$GENS" "$KIDS" "$M" "$REPEAT" "$(nproc)"
printf '%-22s %8s %12s\n' "run" "wall s" "meas./s"
printf '%-22s %8.2f %12.1f\n' "SQLite, 1 process" "$ts" "$(calc "$M / $ts")"
declare -A pgt
for n in $WORKERS; do
  times=()
  for r in $(seq "$REPEAT"); do
    name=w${n}_$r; newdb "$name"; u=$(url "$name")
    warm "$u"
    t0=$(now)
    "$B" --db "$u" -q "${ARGS[@]}" --plan-out "$T/$name.0.json" >/dev/null &
    pids=($!)
    if [ "$n" -gt 1 ]; then
      until "$B" --db "$u" studies 2>/dev/null | grep -q '^bench '; do sleep 0.02; done
      for i in $(seq 2 "$n"); do "$B" --db "$u" -q worker --study bench --plan-out "$T/$name.$i.json" >/dev/null & pids+=($!); done
    fi
    for p in "${pids[@]}"; do wait "$p"; done
    t1=$(now)
    for f in "$T/$name".*.json; do cmp -s "$f" "$T/ref.json" || { echo "workers.sh: $f differs from SQLite's plan" >&2; exit 1; }; done
    times+=("$(calc "$t1 - $t0")")
  done
  pgt[$n]=$(printf '%s\n' "${times[@]}" | best)
  printf '%-22s %8.2f %12.1f\n' "PostgreSQL, $n worker(s)" "${pgt[$n]}" "$(calc "$M / ${pgt[$n]}")"
done
if [ -n "${pgt[1]:-}" ]; then
  printf 'database share per measurement, PostgreSQL (1 worker) - SQLite: %.2f ms\n' \
    "$(calc "(${pgt[1]} - $ts) * 1000 / $M")"
fi
echo "every plan equals SQLite's"
