#!/usr/bin/python3
"""One-thread forward cost per pass as CPU time, ours against ONNX Runtime (and optionally a base
build of bench_forward), for a loaded machine where wall-clock times swing with preemption.

Per engine, model and batch: the user + system CPU time of a process making N + 1 passes minus
that of a process making 1 pass, divided by N (no warm-up passes: the single-pass process pays the
same loading and first-pass costs). Rounds are interleaved with the engine order rotating; the
table gives the median over rounds with [min-max], and ORT's time / ours (> 1 = we are faster).

Run: /usr/bin/python3 bench/forward_cpu.py [--bin build/bench/bench_forward] [--base BIN]
         [--rounds 5] [--models resnet,ocr-cls,...] [--batches 1,8] [--npm bench/zoo/cache]
         [--npm-data bench/zoo/data] [--out bench/results/forward_cpu.json]
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_ORT = os.path.join(ROOT, "tests", "node", "run_ort.js")
# name -> (model file, input .npy); "zoo:" paths are under tests/fixtures/zoo, the others under
# --npm / --npm-data.
MODELS = {
    "resnet": ("zoo:resnet_dyn.onnx", "zoo:resnet_x.npy"),
    "ocr-cls": ("ocr/ch_ppocr_mobile_v2.0_cls_infer.onnx", "ocr_cls_calib.npy"),
    "ocr-rec": ("ocr/ch_PP-OCRv4_rec_infer.onnx", "ocr_rec_calib.npy"),
    "ocr-det": ("ocr/ch_PP-OCRv4_det_infer.onnx", "ocr_det_calib.npy"),
    "oww-embedding": ("oww/embedding_model.onnx", "oww_mel_calib.npy"),
}
# passes per process at batch 1 (divided by the batch, at least 2)
PASSES_B1 = {"resnet": 1000, "ocr-cls": 400, "ocr-rec": 16, "ocr-det": 24, "oww-embedding": 400}


def cpu_of(cmd):
    """User + system CPU seconds of one child process (and its threads)."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed ({status}): {' '.join(cmd)}\n{err}")
    return ru.ru_utime + ru.ru_stime


def command(engine, bins, model, x, n, out):
    if engine == "ort":
        return ["node", RUN_ORT, model, out, "--threads", "1", "--warmup", "0", "--bench", str(n), x]
    return [bins[engine], model, "--threads", "1", "--input", x, "--batch", str(np.load(x).shape[0]),
            "--warmup", "0", "--iters", str(n)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "bench", "bench_forward"))
    ap.add_argument("--base", help="bench_forward of another build (engine 'base')")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--models", default="resnet,ocr-cls,ocr-rec,ocr-det,oww-embedding")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--npm", default=os.path.join(ROOT, "bench", "zoo", "cache"))
    ap.add_argument("--npm-data", default=os.path.join(ROOT, "bench", "zoo", "data"))
    ap.add_argument("--det-size", default="160x320", help="ocr-det input crop HxW")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "forward_cpu.json"))
    a = ap.parse_args()
    bins = {"ours": a.bin}
    engines = ["ours", "ort"]
    if a.base:
        bins["base"] = a.base
        engines = ["base", "ours", "ort"]
    models = a.models.split(",")
    batches = [int(b) for b in a.batches.split(",")]
    tmp = tempfile.mkdtemp(prefix="fwd_cpu_")
    inputs = {}
    for m in models:
        mf, xf = MODELS[m]
        mpath = os.path.join(ROOT, "tests", "fixtures", "zoo", mf[4:]) if mf.startswith("zoo:") else \
            os.path.join(a.npm, mf)
        xpath = os.path.join(ROOT, "tests", "fixtures", "zoo", xf[4:]) if xf.startswith("zoo:") else \
            os.path.join(a.npm_data, xf)
        x = np.load(xpath).astype(np.float32)
        if m == "ocr-det":
            h, w = (int(v) for v in a.det_size.split("x"))
            x = x[:, :, :h, :w]
        for b in batches:
            reps = -(-b // x.shape[0])
            xb = np.ascontiguousarray(np.concatenate([x] * reps)[:b])
            p = os.path.join(tmp, f"{m}_{b}.npy")
            np.save(p, xb)
            inputs[(m, b)] = (mpath, p)
    samples = {}
    out = os.path.join(tmp, "out.npy")
    for r in range(a.rounds):
        for (m, b), (mpath, x) in inputs.items():
            n = max(2, PASSES_B1[m] // b)
            order = engines[r % len(engines):] + engines[:r % len(engines)]
            for e in order:
                one = cpu_of(command(e, bins, mpath, x, 1, out))
                many = cpu_of(command(e, bins, mpath, x, n + 1, out))
                samples.setdefault((m, b, e), []).append((many - one) / n * 1e3)
        print(f"round {r + 1}/{a.rounds} done", flush=True)
    rows = []
    print("| model | batch | passes | " + " | ".join(f"{e} ms" for e in engines) + " | " +
          " | ".join(f"ORT/{e}" for e in engines if e != "ort") + " |")
    print("|---|---:|---:|" + "---:|" * (2 * len(engines) - 1))
    for (m, b) in inputs:
        row = {"model": m, "batch": b, "passes": max(2, PASSES_B1[m] // b), "rounds": a.rounds}
        for e in engines:
            s = samples[(m, b, e)]
            row[e] = {"median": statistics.median(s), "min": min(s), "max": max(s), "samples": s}
        for e in engines:
            if e != "ort":
                row[f"ort_over_{e}"] = row["ort"]["median"] / row[e]["median"]
        rows.append(row)
        cells = [f"{row[e]['median']:.3f} [{row[e]['min']:.3f}-{row[e]['max']:.3f}]" for e in engines]
        ratios = [f"{row[f'ort_over_{e}']:.2f}" for e in engines if e != "ort"]
        print(f"| {m} | {b} | {row['passes']} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    with open(a.out, "w") as f:
        json.dump({"what": __doc__.split("\n\n")[1].replace("\n", " "), "engines": {e: bins.get(e, "node "
                   "tests/node/run_ort.js --threads 1 (onnxruntime-node)") for e in engines},
                   "load_average": os.getloadavg(), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
