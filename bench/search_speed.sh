#!/bin/sh
# Evaluations per second of `bitalloc search` (ilp+evo), two builds side by side, with the plans
# compared byte for byte. Usage:
#   bench/search_speed.sh BEFORE_BITALLOC AFTER_BITALLOC [REPS]
# Models: the digits CNN (512 calibration samples), the zoo ResNet (32 images) and, when
# bench/zoo/cache holds it (bench/zoo/fetch.sh; ZOO_DIR/ZOO_DATA override), PaddleOCR's direction
# classifier on 32 rendered lines. Sensitivity `weight` (no Hessian) keeps the ILP seed cheap, so the
# time is the evolution's; evals/s = measured evaluations / timing.evaluate_s (each on all of the
# search split; the multi-fidelity stages cut some short). One thread (OMP_NUM_THREADS=1).
# Prints one row per model and build (best of REPS runs, default 3) and whether the plans match.
set -eu
before=$1
after=$2
reps=${3:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
zoo=${ZOO_DIR:-$root/bench/zoo/cache}
zdata=${ZOO_DATA:-$root/bench/zoo/data}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

set -- \
    "digits-cnn|$root/tests/fixtures/digits/cnn_dyn.onnx|$root/tests/fixtures/digits/calib_x.npy|6|8" \
    "zoo-resnet|$root/tests/fixtures/zoo/resnet_dyn.onnx|$root/tests/fixtures/zoo/calib_img32.npy|4|6"
if [ -f "$zoo/ocr/ch_ppocr_mobile_v2.0_cls_infer.onnx" ] && [ -f "$zdata/ocr_cls_calib.npy" ]; then
    set -- "$@" "ocr-cls|$zoo/ocr/ch_ppocr_mobile_v2.0_cls_infer.onnx|$zdata/ocr_cls_calib.npy|4|6"
fi
printf '| model | build | evaluations | evaluate_s (best of %s) | evals/s | plan identical |\n|---|---|---|---|---|---|\n' "$reps"
for spec in "$@"; do
    IFS='|' read -r name model data gens off <<EOF2
$spec
EOF2
    for which in before after; do
        bin=$before
        [ "$which" = after ] && bin=$after
        best=
        for r in $(seq "$reps"); do
            rm -f "$tmp/$which.db"
            "$bin" search "$model" --data "$data" --budget avg-bits=4 --sensitivity weight \
                --generations "$gens" --offspring "$off" --study bench --db "$tmp/$which.db" \
                --plan-out "$tmp/$name-$which.json" --format json -q > "$tmp/out.json"
            s=$(/usr/bin/python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['timing']['evaluate_s'], d['measured'])" "$tmp/out.json")
            set -- $s
            if [ -z "$best" ] || [ "$(echo "$1 < $best" | bc -l)" = 1 ]; then best=$1; fi
            n=$2
        done
        same=-
        if [ "$which" = after ]; then
            if cmp -s "$tmp/$name-before.json" "$tmp/$name-after.json"; then same=yes; else same=NO; fi
        fi
        printf '| %s | %s | %s | %.3f | %.1f | %s |\n' "$name" "$which" "$n" "$best" "$(echo "$n / $best" | bc -l)" "$same"
    done
done
