#!/usr/bin/python3
"""Per-layer Hutchinson traces Tr(H_ll) of the mean cross-entropy, ours (bench_hessian, i.e.
ba_grad_session_hvp) against PyTorch double backward on the same model, data, labels, batches
and probes, as a time ratio.

PyTorch runs the ONNX graph itself through the ONNX -> torch interpreter of
tests/fixtures/make_grad_refs.py in float32 (same weights, same graph, BN already folded), with
every layer weight a leaf. Per batch it builds grads = autograd.grad(loss, W, create_graph=True)
once, then for each probe and layer Hv_l = autograd.grad(grads[l], W[l], v_l, retain_graph=True):
the same block-diagonal products H_ll v_l that ours computes ("torch"). For reference the table
also gives PyHessian's cheaper all-layer probe, Hv = autograd.grad(grads, W, v) once per probe,
whose per-layer v_lᵀ(Hv)_l carry the cross terms v_lᵀ H_lk v_k ("torch all-layer"; not the same
estimate, so not the ratio's denominator).

Ours computes each sample vᵀH_ll v with ba_grad_session_vhv: an exact forward-over-reverse HVP
(model/grad_hvp.c), which for layers whose downstream ops are all linear in the perturbation on
the base point's pattern (conv/gemm with one perturbed operand, ReLU/Clip masks, pools, adds,
reshapes) reduces to (J v)ᵀ ∇²L (J v), a tangent forward only; `--hvp` in bench_hessian uses
v · ba_grad_session_hvp instead (also timed here, "ours hvp").

Every timing is a fresh process; engines and repetitions are interleaved; the table gives the
median over repetitions of the probe loop only (forward, gradients and HVPs; not model loading
or interpreter start). With one thread the ratio is taken on process CPU time, which other
processes' load on a shared machine inflates far less than wall time (both are in the JSON).
The traces of ours and torch use the same Rademacher probes, so they agree to float32 rounding
and the HVP's step error: the "trace rel diff" column checks that the two compute the same thing.

Run: /usr/bin/python3 bench/hessian.py [--bin build/bench/bench_hessian] [--threads 1]
         [--probes 8] [--reps 3] [--models cnn,mlp,resnet,vit]
Writes bench/results/hessian.json (every sample and the summary) and prints the table.

--defaults checks what `bitalloc sensitivity` does by default instead: every digits-MLP layer against
the exact trace for seeds 0..9 (the default's Gauss-Newton split is exact there: within 1e-5, no
probe), and the time on --time-model before (--before BIN) and after (--after BIN, default
build/bitalloc) with the probes and the worst relative standard error of each; writes
bench/results/hessian_defaults.json.
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
FIX = os.path.join(ROOT, "tests", "fixtures")
RESULTS = os.path.join(ROOT, "bench", "results", "hessian.json")
# the default is exact on the digits MLP (Gauss-Newton part only): float32 rounding
EXACT_REL = 1e-5
PROBE_SEED = 20240611

# name -> (onnx, inputs .npy, labels .npy or None (= argmax of the FP logits), batch)
MODELS = {
    "mlp": ("digits/mlp_dyn.onnx", "digits/calib_x_flat.npy", "digits/calib_y.npy", 256),
    "cnn": ("digits/cnn_dyn.onnx", "digits/calib_x.npy", "digits/calib_y.npy", 256),
    "resnet": ("zoo/resnet_dyn.onnx", "zoo/calib_img32.npy", None, 32),
    "vit": ("zoo/vit_dyn.onnx", "zoo/calib_img32.npy", None, 32),
    "mobilenetv2": ("zoo/mobilenetv2_dyn.onnx", "zoo/calib_img32.npy", None, 32),
}
ENGINES = ("ours", "ours_hvp", "torch", "torch_all")


def torch_setup(onnx_path, threads):
    import onnx
    import torch
    from onnx import numpy_helper
    sys.path.insert(0, FIX)
    import make_grad_refs
    torch.set_num_threads(threads)
    model = onnx.load(onnx_path)
    params = {}
    for init in model.graph.initializer:
        params[init.name] = torch.from_numpy(numpy_helper.to_array(init).copy())
    in_name = [i.name for i in model.graph.input if i.name not in params][0]

    def run(x):
        return make_grad_refs.run_onnx(model, {in_name: x}, params, dtype=torch.float32)[0]
    return params, run


def torch_worker(a):
    """Times PyTorch's probe loop; prints JSON {seconds, traces}."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    params, run = torch_setup(a.model, a.threads)
    layers = json.loads(a.layers)
    W = [params[n].requires_grad_(True) for n, _ in layers]
    x = torch.from_numpy(np.load(a.x).astype(np.float32))
    y = torch.from_numpy(np.load(a.y).astype(np.int64))
    probes = np.load(a.probe_file)
    P, N = probes.shape[0], x.shape[0]
    vs = []
    for p in range(P):
        off, row = 0, []
        for (n, k), w in zip(layers, W):
            row.append(torch.from_numpy(probes[p, off:off + k].reshape(w.shape).copy()))
            off += k
        vs.append(row)
    tr = [0.0] * len(W)
    c0, t0 = time.process_time(), time.perf_counter()
    for b0 in range(0, N, a.batch):
        xb, yb = x[b0:b0 + a.batch], y[b0:b0 + a.batch]
        z = run(xb)
        loss = F.cross_entropy(z.reshape(-1, z.shape[-1]), yb)
        grads = torch.autograd.grad(loss, W, create_graph=True)
        wgt = xb.shape[0] / N
        for p in range(P):
            if a.mode == "block":
                for l in range(len(W)):
                    (hv,) = torch.autograd.grad(grads[l], W[l], vs[p][l], retain_graph=True)
                    tr[l] += wgt * float((vs[p][l] * hv).sum()) / P
            else:
                hvs = torch.autograd.grad(grads, W, vs[p], retain_graph=True)
                for l in range(len(W)):
                    tr[l] += wgt * float((vs[p][l] * hvs[l]).sum()) / P
        del grads, loss, z
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"seconds": secs, "cpu_seconds": cpu, "traces": tr, "threads": torch.get_num_threads(),
                      "runtime": f"torch {torch.__version__}"}))


def prepare(name, bin_path, threads, nprobes, tmpdir):
    """Layers (ours, model order), labels and probes files for one model."""
    import numpy as np
    import torch
    onnx_rel, x_rel, y_rel, batch = MODELS[name]
    onnx_path = os.path.join(FIX, onnx_rel)
    out = subprocess.run([bin_path, onnx_path, "--list"], check=True, capture_output=True, text=True).stdout
    layers = [(l["name"], l["params"]) for l in json.loads(out)["layers"]]
    x_path = os.path.join(FIX, x_rel)
    if y_rel:
        y = np.load(os.path.join(FIX, y_rel)).astype(np.int64)
    else:   # CE on the FP model's own argmax, as the estimator does without labels
        _, run = torch_setup(onnx_path, threads)
        with torch.no_grad():
            z = run(torch.from_numpy(np.load(x_path).astype(np.float32)))
        y = z.reshape(-1, z.shape[-1]).argmax(-1).numpy().astype(np.int64)
    y_path = os.path.join(tmpdir, f"{name}_y.npy")
    np.save(y_path, y)
    total = sum(k for _, k in layers)
    rng = np.random.default_rng(PROBE_SEED)
    probes = (rng.integers(0, 2, (nprobes, total)) * 2 - 1).astype(np.float32)
    p_path = os.path.join(tmpdir, f"{name}_probes.npy")
    np.save(p_path, probes)
    return {"onnx": onnx_path, "x": x_path, "y": y_path, "probes": p_path, "batch": batch, "layers": layers,
            "samples": int(np.load(x_path, mmap_mode="r").shape[0]), "params": total}


def run_ours(bin_path, cfg, threads, hvp=False):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([bin_path, cfg["onnx"], cfg["x"], cfg["y"], cfg["probes"], str(cfg["batch"]),
                          "--threads", str(threads)] + (["--hvp"] if hvp else []),
                         check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_torch(cfg, threads, mode):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", "--model", cfg["onnx"],
                          "--x", cfg["x"], "--y", cfg["y"], "--probe-file", cfg["probes"], "--batch", str(cfg["batch"]),
                          "--threads", str(threads), "--mode", mode, "--layers", json.dumps(cfg["layers"])],
                         check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def sens_json(bitalloc, model, data, labels=None, seed=0, extra=()):
    """`bitalloc sensitivity --format json` in a fresh process; returns (table, CPU s, wall s)."""
    cmd = [bitalloc, "sensitivity", model, "--data", data, "--format", "json", "--seed", str(seed)] + list(extra)
    if labels:
        cmd += ["--labels", labels]
    t0, c0 = time.time(), os.times()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_WAIT_POLICY": "passive"}).stdout
    c1 = os.times()
    return json.loads(out), (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system), \
        time.time() - t0


def defaults_check(a):
    """The default `hessian` sensitivity (SPEC §5): (1) every digits-MLP layer's trace against the
    exact one (tests/fixtures/sens_refs/hessian_exact.json) for seeds 0..9; (2) the time of the
    default run on a --time-model, before (--before binary) and after (--after), in one process
    each, on the same machine in the same run (CPU seconds of the child, and wall)."""
    exact = json.load(open(os.path.join(FIX, "sens_refs", "hessian_exact.json")))["mlp"]
    worst, rows = 0.0, []
    for seed in range(10):
        t, cpu, _ = sens_json(a.after, os.path.join(FIX, "digits/mlp_dyn.onnx"),
                              os.path.join(FIX, "digits/calib_x_flat.npy"), os.path.join(FIX, "digits/calib_y.npy"),
                              seed)
        errs = {l["name"]: l["score"] / exact[l["name"]] - 1 for l in t["layers"]}
        worst = max(worst, max(abs(e) for e in errs.values()))
        rows.append({"seed": seed, "probes": t["layers"][0].get("probes", 0), "rel_err": errs, "cpu_s": cpu})
        print(f"mlp seed {seed}: probes {rows[-1]['probes']}, " +
              ", ".join(f"{k} {v:+.1e}" for k, v in errs.items()))
    within = sum(all(abs(e) <= EXACT_REL for e in r["rel_err"].values()) for r in rows)
    print(f"mlp: {within}/10 seeds with every layer within {EXACT_REL:g} of the exact trace (worst {worst:.2g})")
    timing = {}
    if a.time_model:
        for tag, b in (("after", a.after), ("before", a.before)):
            if not b:
                continue
            t, cpu, wall = sens_json(b, a.time_model, a.time_data)
            probes = sorted({l.get("probes", 0) for l in t["layers"]})
            # relative standard error as the stop rule reads it: against max(|trace|, 1% of the top trace)
            top = max(abs(l["score"]) * l["params"] for l in t["layers"])
            rse = max((l["stderr"] or 0.0) * l["params"] / max(abs(l["score"]) * l["params"], 0.01 * top)
                      for l in t["layers"])
            timing[tag] = {"cpu_s": cpu, "wall_s": wall, "layers": len(t["layers"]), "probes": probes,
                           "worst_rel_se": rse, "scores": {l["name"]: l["score"] for l in t["layers"]}}
            print(f"{os.path.basename(a.time_model)} {tag}: {cpu:.1f} s CPU, {wall:.1f} s wall, "
                  f"{len(t['layers'])} layers, probes {probes}, worst relative standard error {rse:.3g}")
        if "before" in timing and "after" in timing:
            print(f"speedup: {timing['before']['cpu_s'] / timing['after']['cpu_s']:.1f}x CPU, "
                  f"{timing['before']['wall_s'] / timing['after']['wall_s']:.1f}x wall")
    out = os.path.join(ROOT, "bench", "results", "hessian_defaults.json")
    with open(out, "w") as f:
        json.dump({"mlp": rows, "within_exact": within, "exact_rel": EXACT_REL, "timing": timing, "load_avg": os.getloadavg()}, f,
                  indent=1)
    print(f"wrote {os.path.relpath(out, ROOT)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--defaults", action="store_true",
                    help="check the default hessian sensitivity (accuracy on the MLP, time before/after)")
    ap.add_argument("--after", default=os.path.join(ROOT, "build", "bitalloc"))
    ap.add_argument("--before", help="bitalloc binary of the previous version (timing baseline)")
    ap.add_argument("--time-model", help="model timed by --defaults (e.g. ch_ppocr_mobile_v2.0_cls_infer.onnx)")
    ap.add_argument("--time-data", help="its calibration data (e.g. ocr_cls_calib.npy)")
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "bench", "bench_hessian"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--probes", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--models", default="cnn,mlp,resnet,vit,mobilenetv2")
    ap.add_argument("--out", default=RESULTS)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for k in ("model", "x", "y", "probe-file", "layers", "mode"):
        ap.add_argument(f"--{k}", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return torch_worker(a)
    if a.defaults:
        return defaults_check(a)
    names = a.models.split(",")
    samples, summary = [], []
    with tempfile.TemporaryDirectory() as tmp:
        cfgs = {n: prepare(n, a.bin, a.threads, a.probes, tmp) for n in names}
        res = {n: {e: [] for e in ENGINES} for n in names}
        for rep in range(a.reps):
            for n in names:
                order = ENGINES[rep % len(ENGINES):] + ENGINES[:rep % len(ENGINES)]
                for eng in order:
                    if eng.startswith("ours"):
                        r = run_ours(a.bin, cfgs[n], a.threads, hvp=eng == "ours_hvp")
                    else:
                        r = run_torch(cfgs[n], a.threads, "block" if eng == "torch" else "all")
                    res[n][eng].append(r)
                    samples.append({"model": n, "engine": eng, "rep": rep, **r})
                    print(f"  {n:11s} {eng:9s} rep {rep}: {r['cpu_seconds']:.3f} s cpu, {r['seconds']:.3f} s wall",
                          file=sys.stderr)
    key = "cpu_seconds" if a.threads == 1 else "seconds"
    print(f"per-layer Hutchinson traces, {a.probes} probes, {a.threads} thread(s), median of {a.reps} "
          f"({'CPU' if key == 'cpu_seconds' else 'wall'} seconds; speedup = torch / ours)")
    print(f"{'model':11s} {'layers':>6s} {'params':>7s} {'N':>4s} {'ours':>7s} {'torch':>7s} {'speedup':>8s} "
          f"{'range':>11s} {'ours hvp':>8s} {'speedup':>8s} {'wall spd':>8s} {'torch all':>9s} {'trace diff':>10s}")
    for n in names:
        c, r = cfgs[n], res[n]
        med = {e: statistics.median(x[key] for x in r[e]) for e in r}
        wall = {e: statistics.median(x["seconds"] for x in r[e]) for e in r}
        ratios = [t[key] / o[key] for o, t in zip(r["ours"], r["torch"])]
        to, tt, th = r["ours"][0]["traces"], r["torch"][0]["traces"], r["ours_hvp"][0]["traces"]
        rel = max(max(abs(p - q), abs(h - q)) / max(abs(q), 1e-12) for p, q, h in zip(to, tt, th))
        row = {"model": n, "layers": len(c["layers"]), "params": c["params"], "samples": c["samples"],
               "batch": c["batch"], "probes": a.probes, "threads": a.threads, "time": key,
               "ours_s": med["ours"], "ours_hvp_s": med["ours_hvp"], "torch_s": med["torch"],
               "torch_all_layer_s": med["torch_all"], "wall_s": wall,
               "speedup_vs_torch": med["torch"] / med["ours"], "speedup_min": min(ratios),
               "speedup_max": max(ratios), "speedup_hvp_vs_torch": med["torch"] / med["ours_hvp"],
               "wall_speedup_vs_torch": wall["torch"] / wall["ours"], "trace_max_rel_diff": rel,
               "traces_ours": to, "traces_ours_hvp": th, "traces_torch": tt}
        summary.append(row)
        print(f"{n:11s} {len(c['layers']):6d} {c['params']:7d} {c['samples']:4d} {med['ours']:7.3f} "
              f"{med['torch']:7.3f} {row['speedup_vs_torch']:7.2f}x {min(ratios):5.2f}-{max(ratios):4.2f}x "
              f"{med['ours_hvp']:8.3f} {row['speedup_hvp_vs_torch']:7.2f}x {row['wall_speedup_vs_torch']:7.2f}x "
              f"{med['torch_all']:9.3f} {rel:10.1e}")
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"probes": a.probes, "threads": a.threads, "reps": a.reps, "summary": summary,
                   "samples": samples, "runtime": next((x["runtime"] for x in samples if "runtime" in x), None),
                   "nproc": os.cpu_count(), "load_avg": os.getloadavg()}, f, indent=1)
    print(f"wrote {os.path.relpath(a.out, ROOT)}")


if __name__ == "__main__":
    main()
