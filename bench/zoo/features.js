#!/usr/bin/env node
// Makes the inputs of the zoo models that take another model's output, with ONNX Runtime as the
// reference: openWakeWord's chain (speech -> melspectrogram -> 76-frame windows -> embedding ->
// 16/34-embedding windows for the wake-word heads) and silero VAD's streaming states (each 512-sample
// chunk with the state the model carried into it). Usage: node features.js MODELS_DIR DATA_DIR
'use strict';

const path = require('path');
const ort = require(path.join(__dirname, '../../tests/node/node_modules/onnxruntime-node'));
const { readNpy, writeNpy } = require('../../tests/node/run_ort.js');

const MEL_WINDOW = 76;   // frames per embedding window (openWakeWord)
const MEL_STEP = 8;      // frames between windows (openWakeWord's 80 ms hop)
const VAD_CHUNK = 512;   // samples per silero VAD call at 16 kHz
const SR = 16000;

const OWW_WINDOWS = 128; // samples per split of each wake-word input (a search validates on the last quarter)

function pick(n, k) {     // k indices spread evenly over [0, n)
  const out = [];
  for (let i = 0; i < k; i++) out.push(Math.floor((i * n) / k));
  return out;
}

// a in a fixed pseudo-random order (Fisher-Yates on a 32-bit LCG), so that any contiguous part of a
// file (a search's validation part, its low-fidelity blocks) spans the whole stream.
function shuffled(a, seed) {
  const out = a.slice();
  let s = seed >>> 0;
  for (let i = out.length - 1; i > 0; i--) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const j = Math.floor((s / 4294967296) * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

function stack(rows, rowLen) {
  const a = new Float32Array(rows.length * rowLen);
  rows.forEach((r, i) => a.set(r, i * rowLen));
  return a;
}

async function oww(models, data, split) {
  const stream = readNpy(path.join(data, `speech_stream_${split}.npy`)).data;
  const mel = await ort.InferenceSession.create(path.join(models, 'oww/melspectrogram.onnx'));
  const r = await mel.run({ input: new ort.Tensor('float32', Float32Array.from(stream), [1, stream.length]) });
  const spec = r[mel.outputNames[0]];
  const frames = spec.dims[2];
  const s = spec.data.map((v) => v / 10 + 2);   // openWakeWord's scaling of the mel output
  const wins = [];
  for (let f = 0; f + MEL_WINDOW <= frames; f += MEL_STEP) wins.push(s.subarray(f * 32, (f + MEL_WINDOW) * 32));
  const emb = await ort.InferenceSession.create(path.join(models, 'oww/embedding_model.onnx'));
  const all = stack(wins, MEL_WINDOW * 32);
  const e = await emb.run({ [emb.inputNames[0]]: new ort.Tensor('float32', all, [wins.length, MEL_WINDOW, 32, 1]) });
  const E = e[emb.outputNames[0]].data;         // [W, 1, 1, 96]
  const sel = shuffled(pick(wins.length, Math.min(OWW_WINDOWS, wins.length)), 1);
  writeNpy(path.join(data, `oww_mel_${split}.npy`), 'float32', [sel.length, MEL_WINDOW, 32, 1],
    stack(sel.map((i) => wins[i]), MEL_WINDOW * 32));
  for (const T of [16, 34]) {
    const rows = [];
    for (let w = 0; w + T <= wins.length; w++) rows.push(E.subarray(w * 96, (w + T) * 96));
    const pk = shuffled(pick(rows.length, Math.min(OWW_WINDOWS, rows.length)), T);
    writeNpy(path.join(data, `oww_emb${T}_${split}.npy`), 'float32', [pk.length, T, 96],
      stack(pk.map((i) => rows[i]), T * 96));
  }
}

// Runs silero VAD over the stream, keeping the chunks and the states carried into them.
async function vad(models, data, split, file, stateNames, stateShape, tag) {
  const stream = readNpy(path.join(data, `speech_stream_${split}.npy`)).data;
  const sess = await ort.InferenceSession.create(path.join(models, file));
  const n = stateShape.reduce((a, b) => a * b, 1);
  let states = stateNames.map(() => new Float32Array(n));
  const chunks = [];
  const kept = stateNames.map(() => []);
  for (let o = 0; o + VAD_CHUNK <= stream.length; o += VAD_CHUNK) {
    const x = Float32Array.from(stream.subarray(o, o + VAD_CHUNK), (v) => v / 32768);
    chunks.push(x);
    states.forEach((st, i) => kept[i].push(st));
    const feeds = { input: new ort.Tensor('float32', x, [1, VAD_CHUNK]),
      sr: new ort.Tensor('int64', BigInt64Array.from([BigInt(SR)]), []) };
    stateNames.forEach((nm, i) => { feeds[nm] = new ort.Tensor('float32', states[i], stateShape); });
    const r = await sess.run(feeds);
    states = stateNames.map((nm, i) => Float32Array.from(r[sess.outputNames[1 + i]].data));
  }
  const sel = pick(chunks.length, 64);
  writeNpy(path.join(data, `${tag}_x_${split}.npy`), 'float32', [sel.length, VAD_CHUNK], stack(sel.map((i) => chunks[i]), VAD_CHUNK));
  stateNames.forEach((nm, k) => {
    // state [layers, B, H]: the sample axis is 1
    const [L, , H] = stateShape;
    const a = new Float32Array(L * sel.length * H);
    sel.forEach((i, b) => { for (let l = 0; l < L; l++) a.set(kept[k][i].subarray(l * H, (l + 1) * H), (l * sel.length + b) * H); });
    writeNpy(path.join(data, `${tag}_${nm}_${split}.npy`), 'float32', [L, sel.length, H], a);
  });
}

async function main() {
  const [models, data] = process.argv.slice(2);
  for (const split of ['calib', 'test']) {
    await oww(models, data, split);
    await vad(models, data, split, 'vad/silero_vad_v5.onnx', ['state'], [2, 1, 128], 'vad5');
    await vad(models, data, split, 'oww/silero_vad.onnx', ['h', 'c'], [2, 1, 64], 'vadl');
  }
  console.log('features in', data);
}

main().catch((e) => { console.error(e.message || e); process.exit(1); });
