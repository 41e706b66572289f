#!/usr/bin/env node
// Reference runner: runs an ONNX model with ONNX Runtime (CPU) on .npy inputs and writes the
// first output (or --output NAME) as .npy; with --bench, prints JSON timings. The .npy reader and
// writer are exported for compare.js. Usage: see USAGE below.
'use strict';

const fs = require('fs');
const path = require('path');

const USAGE = `usage: node run_ort.js MODEL.onnx OUT.npy [options] (IN.npy | name=IN.npy ...)
  --threads N      intra-op threads (default 1)
  --bench ITERS    time ITERS runs after --warmup runs and print JSON (mean ms per run)
  --warmup N       untimed runs before timing (default 3)
  --output NAME    output to save (default: the model's first output)
  --opt LEVEL      graph optimization: disabled|basic|extended|all (default all)
  --config K=V     a session config entry (repeatable), e.g.
                   session.qdq_matmulnbits_accuracy_level=0 (fp32 compute in the MatMulNBits
                   that ORT fuses DequantizeLinear -> MatMul into; ORT's default 4 computes in int8)
  --per-sample     run one sample at a time (axis 0 of every input of rank >= 1) and stack the
                   outputs: for models whose batch dimension is fixed at 1
A single positional IN.npy feeds the model's first input. Inputs whose dtype differs from the
model's (e.g. float64 data for a float32 input) are converted.`;

const EXIT_USAGE = 2;
const EXIT_RUNTIME = 1;
const NPY_MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]);  // "\x93NUMPY"
const NPY_ALIGN = 64;  // header + preamble padded to this, as NumPy does

// numpy descr (without byte order) <-> ORT tensor type and JS typed array.
const DTYPES = {
  f4: { ort: 'float32', array: Float32Array },
  f8: { ort: 'float64', array: Float64Array },
  i8: { ort: 'int64', array: BigInt64Array },
  i4: { ort: 'int32', array: Int32Array },
  i2: { ort: 'int16', array: Int16Array },
  i1: { ort: 'int8', array: Int8Array },
  u8: { ort: 'uint64', array: BigUint64Array },
  u4: { ort: 'uint32', array: Uint32Array },
  u2: { ort: 'uint16', array: Uint16Array },
  u1: { ort: 'uint8', array: Uint8Array },
  b1: { ort: 'bool', array: Uint8Array },
};
const ORT_TO_DESCR = Object.fromEntries(Object.entries(DTYPES).map(([k, v]) => [v.ort, k]));

class UsageError extends Error {}

// Parses a .npy file (format v1, v2 or v3, little-endian or single-byte, C order).
function readNpy(file) {
  const buf = fs.readFileSync(file);
  if (buf.length < 10 || !buf.subarray(0, 6).equals(NPY_MAGIC)) {
    throw new UsageError(`${file}: not a .npy file (bad magic)`);
  }
  const major = buf[6];
  let headerLen;
  let offset;
  if (major === 1) {
    headerLen = buf.readUInt16LE(8);
    offset = 10;
  } else if (major === 2 || major === 3) {
    if (buf.length < 12) throw new UsageError(`${file}: truncated .npy header`);
    headerLen = buf.readUInt32LE(8);
    offset = 12;
  } else {
    throw new UsageError(`${file}: unsupported .npy version ${major}`);
  }
  if (offset + headerLen > buf.length) throw new UsageError(`${file}: truncated .npy header`);
  const header = buf.toString(major === 3 ? 'utf8' : 'latin1', offset, offset + headerLen);
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header);
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header);
  const shape = /'shape'\s*:\s*\(([^)]*)\)/.exec(header);
  if (!descr || !fortran || !shape) throw new UsageError(`${file}: malformed .npy header: ${header}`);
  if (fortran[1] === 'True') throw new UsageError(`${file}: Fortran-order arrays are not supported`);
  const order = descr[1][0];
  const kind = descr[1].slice(1);
  const dt = DTYPES[kind];
  if (!dt) throw new UsageError(`${file}: unsupported dtype '${descr[1]}'`);
  if (order === '>' && dt.array.BYTES_PER_ELEMENT > 1) {
    throw new UsageError(`${file}: big-endian arrays are not supported`);
  }
  const dims = shape[1].split(',').map((s) => s.trim()).filter((s) => s.length).map(Number);
  const count = dims.reduce((a, b) => a * b, 1);
  const dataStart = offset + headerLen;
  const nbytes = count * dt.array.BYTES_PER_ELEMENT;
  if (buf.length - dataStart < nbytes) {
    throw new UsageError(`${file}: truncated data (${buf.length - dataStart} of ${nbytes} bytes)`);
  }
  // Copy into an aligned buffer: the file's data offset need not be aligned for the type.
  const data = new dt.array(count);
  Buffer.from(data.buffer).set(buf.subarray(dataStart, dataStart + nbytes));
  return { dtype: dt.ort, shape: dims, data };
}

// Writes a .npy (format 1.0) from an ORT type name, a shape and a typed array.
function writeNpy(file, dtype, shape, data) {
  const kind = ORT_TO_DESCR[dtype];
  if (!kind) throw new Error(`cannot write tensors of type ${dtype} as .npy`);
  const order = DTYPES[kind].array.BYTES_PER_ELEMENT === 1 ? '|' : '<';
  const shapeStr = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '${order}${kind}', 'fortran_order': False, 'shape': ${shapeStr}, }`;
  const preamble = NPY_MAGIC.length + 2 + 2;
  const pad = NPY_ALIGN - ((preamble + header.length + 1) % NPY_ALIGN);
  header += ' '.repeat(pad % NPY_ALIGN) + '\n';
  const head = Buffer.alloc(preamble);
  NPY_MAGIC.copy(head, 0);
  head[6] = 1;
  head[7] = 0;
  head.writeUInt16LE(header.length, 8);
  const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  fs.writeFileSync(file, Buffer.concat([head, Buffer.from(header, 'latin1'), body]));
}

// Converts a typed array to the element type an ORT input expects.
function convert(arr, fromType, toType) {
  if (fromType === toType) return arr;
  const target = DTYPES[ORT_TO_DESCR[toType]];
  if (!target) throw new UsageError(`model input type ${toType} is not supported`);
  const out = new target.array(arr.length);
  const toBig = target.array === BigInt64Array || target.array === BigUint64Array;
  for (let i = 0; i < arr.length; i++) {
    const v = arr[i];
    out[i] = toBig ? BigInt(Math.trunc(Number(v))) : Number(v);
  }
  return out;
}

const OPT_LEVELS = new Set(['disabled', 'basic', 'extended', 'all']);

function sessionOptions(threads, opt, config) {
  const o = {
    executionProviders: ['cpu'],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: opt,
  };
  // "a.b.c=v" -> extra: {a: {b: {c: "v"}}}, which onnxruntime-node flattens back into "a.b.c"
  for (const [key, value] of config || []) {
    o.extra = o.extra || {};
    const parts = key.split('.');
    let node = o.extra;
    for (const p of parts.slice(0, -1)) node = node[p] = node[p] || {};
    node[parts[parts.length - 1]] = value;
  }
  return o;
}

// ORT's reported element type of every model input (null where the binding does not say).
function inputTypes(session) {
  const types = {};
  const meta = session.inputMetadata || [];
  session.inputNames.forEach((name, i) => {
    const m = Array.isArray(meta) ? meta[i] : meta[name];
    types[name] = m && m.isTensor !== false && m.type ? m.type : null;
  });
  return types;
}

// Builds the feeds of `session` from { name: npyArray } (already parsed).
function makeFeeds(ort, session, arrays) {
  const types = inputTypes(session);
  const feeds = {};
  for (const [name, arr] of Object.entries(arrays)) {
    if (!session.inputNames.includes(name)) {
      throw new UsageError(`model has no input '${name}' (inputs: ${session.inputNames.join(', ')})`);
    }
    const want = types[name] || arr.dtype;
    feeds[name] = new ort.Tensor(want, convert(arr.data, arr.dtype, want), arr.shape);
  }
  const missing = session.inputNames.filter((n) => !(n in feeds));
  if (missing.length) throw new UsageError(`missing data for input(s): ${missing.join(', ')}`);
  return feeds;
}

function parseArgs(argv) {
  const a = { threads: 1, bench: 0, warmup: 3, output: null, opt: 'all', config: [], perSample: false, inputs: [], pos: [] };
  for (let i = 0; i < argv.length; i++) {
    const s = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new UsageError(`${s} needs a value`);
      return argv[++i];
    };
    const int = (v, min) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < min) throw new UsageError(`${s}: expected an integer >= ${min}, got '${v}'`);
      return n;
    };
    if (s === '--threads') a.threads = int(next(), 1);
    else if (s === '--bench') a.bench = int(next(), 1);
    else if (s === '--warmup') a.warmup = int(next(), 0);
    else if (s === '--output') a.output = next();
    else if (s === '--per-sample') a.perSample = true;
    else if (s === '--config') {
      const kv = next();
      const eq = kv.indexOf('=');
      if (eq <= 0) throw new UsageError(`--config: expected KEY=VALUE, got '${kv}'`);
      a.config.push([kv.slice(0, eq), kv.slice(eq + 1)]);
    }
    else if (s === '--opt') {
      a.opt = next();
      if (!OPT_LEVELS.has(a.opt)) throw new UsageError(`--opt: unknown level '${a.opt}'`);
    } else if (s === '-h' || s === '--help') throw new UsageError('');
    else if (s.startsWith('--')) throw new UsageError(`unknown option ${s}`);
    else a.pos.push(s);
  }
  if (a.pos.length < 3) throw new UsageError('need MODEL.onnx, OUT.npy and at least one input');
  a.model = a.pos[0];
  a.out = a.pos[1];
  for (const s of a.pos.slice(2)) {
    const eq = s.indexOf('=');
    a.inputs.push(eq > 0 ? { name: s.slice(0, eq), file: s.slice(eq + 1) } : { name: null, file: s });
  }
  if (a.inputs.length > 1 && a.inputs.some((x) => x.name === null)) {
    throw new UsageError('with several inputs, give each as name=IN.npy');
  }
  return a;
}

async function main() {
  let args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (e) {
    if (e instanceof UsageError) {
      if (e.message) console.error(`run_ort: error: ${e.message}`);
      console.error(USAGE);
      process.exit(EXIT_USAGE);
    }
    throw e;
  }
  const ort = require('onnxruntime-node');
  const session = await ort.InferenceSession.create(args.model, sessionOptions(args.threads, args.opt, args.config));
  const arrays = {};
  for (const inp of args.inputs) arrays[inp.name || session.inputNames[0]] = readNpy(inp.file);
  const feeds = makeFeeds(ort, session, arrays);
  const outName = args.output || session.outputNames[0];
  if (!session.outputNames.includes(outName)) {
    throw new UsageError(`model has no output '${outName}' (outputs: ${session.outputNames.join(', ')})`);
  }
  if (args.perSample) {
    await runPerSample(ort, session, arrays, outName, args.out);
    return;
  }
  let result = await session.run(feeds, [outName]);
  if (args.bench > 0) {
    for (let i = 0; i < args.warmup; i++) result = await session.run(feeds, [outName]);
    const times = [];
    for (let i = 0; i < args.bench; i++) {
      const t0 = process.hrtime.bigint();
      result = await session.run(feeds, [outName]);
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    const mean = times.reduce((a, b) => a + b, 0) / times.length;
    const sorted = [...times].sort((a, b) => a - b);
    const sd = Math.sqrt(times.reduce((a, t) => a + (t - mean) ** 2, 0) / times.length);
    console.log(JSON.stringify({
      model: path.basename(args.model), runtime: `onnxruntime-node ${ort.env.versions.common}`,
      threads: args.threads, warmup: args.warmup, iters: args.bench,
      mean_ms: mean, median_ms: sorted[Math.floor(sorted.length / 2)], min_ms: sorted[0], std_ms: sd,
      batch: Object.values(feeds)[0].dims[0] ?? null,
    }));
  }
  const t = result[outName];
  writeNpy(args.out, t.type, t.dims, t.data);
}

// Feeds sample i of every batched input (axis 0; 0-d inputs as they are) and stacks the outputs.
async function runPerSample(ort, session, arrays, outName, outFile) {
  const n = Math.max(...Object.values(arrays).map((a) => (a.shape.length ? a.shape[0] : 1)));
  const parts = [];
  let dims = null;
  let type = null;
  for (let i = 0; i < n; i++) {
    const one = {};
    for (const [name, a] of Object.entries(arrays)) {
      if (!a.shape.length) {
        one[name] = a;
        continue;
      }
      const per = a.data.length / a.shape[0];
      one[name] = { dtype: a.dtype, shape: [1, ...a.shape.slice(1)], data: a.data.slice(i * per, (i + 1) * per) };
    }
    const r = (await session.run(makeFeeds(ort, session, one), [outName]))[outName];
    parts.push(r.data);
    dims = r.dims;
    type = r.type;
  }
  const per = parts[0].length;
  const all = new parts[0].constructor(per * n);
  parts.forEach((p, i) => all.set(p, i * per));
  writeNpy(outFile, type, [n * (dims[0] || 1), ...dims.slice(1)], all);
}

module.exports = { readNpy, writeNpy, convert, makeFeeds, sessionOptions, UsageError };

if (require.main === module) {
  main().catch((e) => {
    console.error(`run_ort: error: ${e.message}`);
    process.exit(e instanceof UsageError ? EXIT_USAGE : EXIT_RUNTIME);
  });
}
