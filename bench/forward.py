#!/usr/bin/python3
"""Forward throughput of our executor against PyTorch (CPU, eager, no_grad) and ONNX Runtime on
the zoo fixtures, at the same thread count, as ratios. Every measurement is a fresh process (no
engine's idle threads spin while another one is timed); models, batches, thread counts and engines
are interleaved and repeated, and the table gives the median over repetitions with its spread.

Pretrained npm models (PaddleOCR cls/rec/det, openWakeWord embedding; the single-input models of
bench/zoo) join with --npm DIR (bench/zoo's cache, e.g. ZOO_DIR) and --npm-data DIR (its inputs):
the same file and the same input samples for every engine; PyTorch has no build of them and is
skipped there. --base BIN adds the engine "base": another build of bench_forward (e.g. of the
previous commit), for before/after figures in the same run.

Run: /usr/bin/python3 bench/forward.py [--bin build/bench/bench_forward] [--threads 1,2]
         [--reps 5] [--iters 10] [--warmup 3] [--models resnet,mobilenetv2,vit] [--batches 32,1]
         [--engines ours,torch,ort] [--npm DIR --npm-data DIR [--npm-models ocr-cls,...]] [--base BIN]
Writes bench/results/forward.json (every sample and the summary) and prints the table.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZOO = os.path.join(ROOT, "tests", "fixtures", "zoo")
RUN_ORT = os.path.join(ROOT, "tests", "node", "run_ort.js")
RESULTS = os.path.join(ROOT, "bench", "results", "forward.json")
ENGINES = ("ours", "torch", "ort")
# name -> (model file under --npm, input .npy under --npm-data): single-input pretrained models.
NPM_MODELS = {
    "ocr-cls": ("ocr/ch_ppocr_mobile_v2.0_cls_infer.onnx", "ocr_cls_calib.npy"),
    "ocr-rec": ("ocr/ch_PP-OCRv4_rec_infer.onnx", "ocr_rec_calib.npy"),
    "ocr-det": ("ocr/ch_PP-OCRv4_det_infer.onnx", "ocr_det_calib.npy"),
    "oww-embedding": ("oww/embedding_model.onnx", "oww_mel_calib.npy"),
}


def torch_worker(name, batch, threads, warmup, iters, x_path):
    """Times PyTorch on the model rebuilt by make_zoo (same seeds, same weights); prints JSON."""
    import numpy as np
    import torch
    sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
    import make_zoo
    torch.set_num_threads(threads)
    model = make_zoo.build(name)[0]
    model.eval()
    x = torch.from_numpy(np.load(x_path))
    assert x.shape[0] == batch
    times = []
    with torch.no_grad():
        for i in range(warmup + iters):
            t0 = time.perf_counter()
            model(x)
            dt = time.perf_counter() - t0
            if i >= warmup:
                times.append(dt * 1e3)
    med = statistics.median(times)
    print(json.dumps({"model": name, "batch": batch, "threads": threads, "ms_per_run": med,
                      "min_ms": min(times), "samples_per_s": batch / med * 1e3,
                      "runtime": f"torch {torch.__version__}"}))


def tiled_input(name, batch, tmpdir, src=None):
    """The samples of src (default <name>_x.npy of the zoo fixtures) tiled to `batch` rows, saved
    once per (model, batch)."""
    import numpy as np
    path = os.path.join(tmpdir, f"{name}_b{batch}.npy")
    if not os.path.exists(path):
        x = np.load(src or os.path.join(ZOO, f"{name}_x.npy"))
        reps = -(-batch // x.shape[0])
        np.save(path, np.ascontiguousarray(np.concatenate([x] * reps)[:batch]))
    return path


def run_json(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def model_file(args, name):
    if name in NPM_MODELS and args.npm:
        return os.path.join(args.npm, NPM_MODELS[name][0])
    return os.path.join(ZOO, f"{name}_dyn.onnx")


def measure(engine, args, name, batch, threads, x_path, tmpdir):
    onnx = model_file(args, name)
    if engine in ("ours", "base"):
        r = run_json([args.bin if engine == "ours" else args.base, onnx, "--batch", str(batch),
                      "--threads", str(threads), "--input", x_path, "--warmup", str(args.warmup),
                      "--iters", str(args.iters)])
    elif engine == "torch":
        r = run_json([sys.executable, os.path.abspath(__file__), "--torch-worker", name, str(batch),
                      str(threads), str(args.warmup), str(args.iters), x_path])
    else:
        r = run_json(["node", RUN_ORT, onnx, os.path.join(tmpdir, "ort_out.npy"), "--bench", str(args.iters),
                      "--warmup", str(args.warmup), "--threads", str(threads), x_path])
        r["ms_per_run"] = r["median_ms"]
    return r["ms_per_run"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "bench", "bench_forward"))
    ap.add_argument("--threads", default=str(os.cpu_count()), help="thread counts, comma-separated")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--models", default="resnet,mobilenetv2,vit")
    ap.add_argument("--batches", default="32,1")
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--out", default=RESULTS)
    ap.add_argument("--npm", default=None, help="bench/zoo model cache: adds the pretrained npm models")
    ap.add_argument("--npm-data", default=None, help="bench/zoo inputs (ocr_cls_calib.npy, ...)")
    ap.add_argument("--npm-models", default=",".join(NPM_MODELS))
    ap.add_argument("--base", default=None, help="another bench_forward build: adds the engine 'base'")
    ap.add_argument("--torch-worker", nargs=6, metavar=("MODEL", "BATCH", "THREADS", "WARMUP", "ITERS", "X"))
    args = ap.parse_args()
    if args.torch_worker:
        n, b, t, w, i, x = args.torch_worker
        torch_worker(n, int(b), int(t), int(w), int(i), x)
        return
    models = [m for m in args.models.split(",") if m]
    batches = [int(b) for b in args.batches.split(",")]
    thread_counts = [int(t) for t in args.threads.split(",")]
    engines = args.engines.split(",")
    if args.base and "base" not in engines:
        engines.append("base")
    npm = []
    if args.npm:
        if not args.npm_data:
            ap.error("--npm needs --npm-data")
        npm = [m for m in args.npm_models.split(",") if m]
        for m in npm:
            if m not in NPM_MODELS:
                ap.error(f"--npm-models: unknown model {m} (known: {', '.join(NPM_MODELS)})")
    samples = {}  # (model, batch, threads, engine) -> [ms per run, one per repetition]
    with tempfile.TemporaryDirectory() as tmpdir:
        for rep in range(args.reps):
            for name in models + npm:
                src = os.path.join(args.npm_data, NPM_MODELS[name][1]) if name in npm else None
                for batch in batches:
                    x_path = tiled_input(name, batch, tmpdir, src)
                    for threads in thread_counts:
                        # Rotate the engine order so no engine always runs right after the same one.
                        eng = [e for e in engines if not (e == "torch" and name in npm)]
                        order = eng[rep % len(eng):] + eng[:rep % len(eng)]
                        for engine in order:
                            ms = measure(engine, args, name, batch, threads, x_path, tmpdir)
                            samples.setdefault((name, batch, threads, engine), []).append(ms)
            print(f"rep {rep + 1}/{args.reps} done", file=sys.stderr)

    rows = []
    for name in models + npm:
        for batch in batches:
            for threads in thread_counts:
                row = {"model": name, "batch": batch, "threads": threads}
                for engine in engines:
                    if (name, batch, threads, engine) not in samples:
                        continue
                    s = samples[(name, batch, threads, engine)]
                    med = statistics.median(s)
                    row[engine] = {"ms_per_run": med, "samples_per_s": batch / med * 1e3, "min_ms": min(s),
                                   "max_ms": max(s), "spread": (max(s) - min(s)) / med, "reps_ms": s}
                for ref in ("torch", "ort", "base"):
                    if "ours" in row and ref in row:
                        row[f"ratio_vs_{ref}"] = row[ref]["ms_per_run"] / row["ours"]["ms_per_run"]
                        # Best-of-reps ratio: less sensitive to load from other processes.
                        row[f"ratio_vs_{ref}_min"] = row[ref]["min_ms"] / row["ours"]["min_ms"]
                rows.append(row)

    refs = [r for r in ("torch", "ort", "base") if r in engines]
    hdr = f"{'model':14s} {'batch':>5s} {'thr':>3s}"
    for e in engines:
        hdr += f" {e + ' ms':>10s} {'±':>5s}"
    hdr += "  " + "  ".join(f"ours/{r}" for r in refs) + "  (throughput ratios; median, best-of-reps in brackets)"
    print(hdr)
    for r in rows:
        line = f"{r['model']:14s} {r['batch']:5d} {r['threads']:3d}"
        for e in engines:
            if e in r:
                line += f" {r[e]['ms_per_run']:10.3f} {100 * r[e]['spread']:4.0f}%"
            else:
                line += f" {'-':>10s} {'':>5s}"
        for ref in refs:
            if f"ratio_vs_{ref}" in r:
                line += f"  {r[f'ratio_vs_{ref}']:5.2f} [{r[f'ratio_vs_{ref}_min']:4.2f}]"
            else:
                line += "     -       "
        print(line)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"threads": thread_counts, "reps": args.reps, "iters": args.iters, "warmup": args.warmup,
                   "host_cpus": os.cpu_count(), "load_avg_end": os.getloadavg(),
                   "note": "ms_per_run = median over reps of each process's median per-run time; "
                           "spread = (max - min) / median over reps; ratio = their ms / our ms",
                   "rows": rows}, f, indent=1)
    print(f"wrote {os.path.relpath(args.out, ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
