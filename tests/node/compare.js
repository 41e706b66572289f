#!/usr/bin/env node
// Checks every fixture model (tests/fixtures/digits and zoo) under ONNX Runtime against the PyTorch
// outputs stored beside it: max |ort - torch| relative to max |torch| must stay <= TOLERANCE.
// Usage: node compare.js [--fixtures DIR] [--json OUT.json]; exit 1 if any check fails.
'use strict';

const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');
const { readNpy, makeFeeds, sessionOptions } = require('./run_ort.js');

const TOLERANCE = 1e-4;
// Floor for the elementwise relative error's denominator, relative to max |torch|, so that
// near-zero reference entries do not dominate the reported figure.
const ELEMENT_FLOOR = 1e-3;

function errors(got, ref) {
  let maxAbs = 0;
  let maxRef = 0;
  for (let i = 0; i < ref.length; i++) maxRef = Math.max(maxRef, Math.abs(ref[i]));
  let maxElem = 0;
  const floor = ELEMENT_FLOOR * maxRef;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(got[i] - ref[i]);
    if (!(d <= maxAbs)) maxAbs = d;   // also catches NaN
    maxElem = Math.max(maxElem, d / Math.max(Math.abs(ref[i]), floor));
  }
  return { max_abs: maxAbs, max_ref: maxRef, rel: maxAbs / (maxRef || 1), max_elem_rel: maxElem };
}

function cases(fixtures) {
  const out = [];
  const digits = path.join(fixtures, 'digits');
  const meta = JSON.parse(fs.readFileSync(path.join(digits, 'meta.json'), 'utf8'));
  for (const [name, m] of Object.entries(meta.models)) {
    out.push({ model: path.join(digits, m.files.static), inputs: { input: path.join(digits, m.input_1) },
               ref: path.join(digits, `${name}_out_1.npy`) });
    out.push({ model: path.join(digits, m.files.dynamic), inputs: { input: path.join(digits, m.input) },
               ref: path.join(digits, `${name}_out_test.npy`) });
  }
  const zoo = path.join(fixtures, 'zoo');
  const manifest = JSON.parse(fs.readFileSync(path.join(zoo, 'manifest.json'), 'utf8'));
  for (const m of manifest.models) {
    for (const f of m.files) {
      out.push({ model: path.join(zoo, f.file), inputs: { [m.input.name]: path.join(zoo, m.input.file) },
                 ref: path.join(zoo, m.output.file) });
    }
  }
  return out;
}

async function main() {
  const argv = process.argv.slice(2);
  let fixtures = path.join(__dirname, '..', 'fixtures');
  let jsonOut = null;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--fixtures') fixtures = argv[++i];
    else if (argv[i] === '--json') jsonOut = argv[++i];
    else { console.error(`compare: unknown argument ${argv[i]}`); process.exit(2); }
  }
  const results = [];
  let passed = 0;
  let failed = 0;
  for (const c of cases(fixtures)) {
    const rel = path.relative(fixtures, c.model);
    try {
      const session = await ort.InferenceSession.create(c.model, sessionOptions(1, 'all'));
      const arrays = {};
      for (const [name, file] of Object.entries(c.inputs)) arrays[name] = readNpy(file);
      const res = await session.run(makeFeeds(ort, session, arrays));
      const got = res[session.outputNames[0]];
      const ref = readNpy(c.ref);
      if (got.dims.join('x') !== ref.shape.join('x')) {
        throw new Error(`shape ${got.dims} != reference ${ref.shape}`);
      }
      const e = errors(got.data, ref.data);
      const ok = e.rel <= TOLERANCE;
      ok ? passed++ : failed++;
      results.push({ model: rel, ok, ...e });
      console.log(`${ok ? 'ok  ' : 'FAIL'} ${rel.padEnd(34)} max_abs=${e.max_abs.toExponential(2)} ` +
                  `rel=${e.rel.toExponential(2)} elem_rel=${e.max_elem_rel.toExponential(2)}`);
    } catch (err) {
      failed++;
      results.push({ model: rel, ok: false, error: err.message });
      console.log(`FAIL ${rel}: ${err.message}`);
    }
  }
  if (jsonOut) {
    fs.writeFileSync(jsonOut, JSON.stringify({ runtime: `onnxruntime-node ${ort.env.versions.common}`,
                                               tolerance: TOLERANCE, results }, null, 1) + '\n');
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => { console.error(`compare: error: ${e.message}`); process.exit(1); });
