#!/usr/bin/python3
"""Plan quality on pretrained third-party ONNX models, measured by an independent quantizer path.

For each model and avg-bits budget B in --bits (default 3,4,5) it builds one plan per method:
  uniform       every layer at B bits (`bitalloc search --method uniform`)
  ilp-hessian   `bitalloc search --method ilp --sensitivity hessian`
  ilp-measured  `bitalloc search --method ilp --sensitivity measured`
  random        `bitalloc search --method random` (best of 1 + G·O draws on the calibration data)
  evopress      an EvoPress-style (1+λ) evolution written here: level-switch mutations (one layer
                up a width, layers of about as many parameters down, so the budget holds), each
                child scored by `bitalloc eval --plan` on the calibration data; as many
                evaluations as ilp+evo makes (1 + G·O)
  ilp+evo       `bitalloc search --method ilp+evo` (hessian seed, G generations × O offspring)
then applies each plan with `bitalloc quantize --format qdq`, runs the QDQ model and the FP model in
ONNX Runtime (tests/node/run_ort.js) on the disjoint *_test.npy split and reports per-sample
test metrics: KL(p_fp ‖ p_q) over the last axis for class outputs (softmax unless the output is
already a distribution), otherwise the relative squared error ‖q − f‖² / mean‖f‖². Each row
gives the mean and a paired bootstrap 95% CI of (method − ilp+evo) over the test samples
(negative = the method beats ilp+evo).

Models come from the zoo (bench/zoo/run.sh fetches them and makes the data):
  ZOO_DIR=/path/to/cache ZOO_DATA=/path/to/data /usr/bin/python3 bench/plan_quality.py \
      [--bin build/bitalloc] [--models ocr-cls,oww-timer,...] [--bits 3,4,5] [--gens 4 --offspring 6]
      [--json bench/results/plan_quality.json]
Prints a Markdown table.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_ORT = os.path.join(ROOT, "tests", "node", "run_ort.js")

# name: (file under ZOO_DIR, input name, data stem under ZOO_DATA, output kind)
MODELS = {
    "ocr-cls": ("ocr/ch_ppocr_mobile_v2.0_cls_infer.onnx", "x", "ocr_cls", "class"),
    "oww-embedding": ("oww/embedding_model.onnx", "input_1", "oww_mel", "regression"),
    "oww-hey-jarvis": ("oww/hey_jarvis_v0.1.onnx", "x.1", "oww_emb16", "regression"),
    "oww-timer": ("oww/timer_v0.1.onnx", "onnx::Flatten_0", "oww_emb34", "regression"),
    "oww-mel": ("oww/melspectrogram.onnx", "input", "speech_1s", "regression"),
}
DEFAULT_MODELS = "ocr-cls,oww-embedding,oww-hey-jarvis,oww-timer"
METHODS = ["uniform", "ilp-hessian", "ilp-measured", "random", "evopress", "ilp+evo"]
LEVELS = [2, 3, 4, 5, 6, 8]


def sh(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(cmd[:3]), r.returncode, r.stderr.strip()[-400:]))
    return r.stdout


def per_sample_flag(model):
    import onnx
    g = onnx.load(model).graph
    ini = {i.name for i in g.initializer}
    d = [i for i in g.input if i.name not in ini][0].type.tensor_type.shape.dim
    return ["--per-sample"] if d and d[0].dim_value == 1 else []


def ort(model, inp, x, out, flags):
    sh(["node", RUN_ORT] + flags + [model, out, "%s=%s" % (inp, x)])
    return np.load(out).astype(np.float64)


def test_metric(f, q, kind):
    """Per-sample metric of q against f (sample axis 0)."""
    n = f.shape[0]
    f2, q2 = f.reshape(n, -1, f.shape[-1]), q.reshape(n, -1, q.shape[-1])
    if kind == "class":
        dist = np.all(f2 >= 0) and np.allclose(f2.sum(-1), 1, atol=1e-3)
        if dist:
            lp, lq = np.log(np.clip(f2, 1e-12, None)), np.log(np.clip(q2, 1e-12, None))
        else:
            lp = f2 - np.log(np.exp(f2 - f2.max(-1, keepdims=True)).sum(-1, keepdims=True)) - f2.max(-1, keepdims=True)
            lq = q2 - np.log(np.exp(q2 - q2.max(-1, keepdims=True)).sum(-1, keepdims=True)) - q2.max(-1, keepdims=True)
        return (np.exp(lp) * (lp - lq)).sum(-1).mean(-1)
    ff, qq = f.reshape(n, -1), q.reshape(n, -1)
    return ((qq - ff) ** 2).sum(1) / max(np.mean((ff ** 2).sum(1)), 1e-30)


def bootstrap_ci(d, reps=2000, seed=0):
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(d), size=(reps, len(d)))
    means = d[idx].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


class Model:
    def __init__(self, name, args, tmp):
        f, self.inp, stem, self.kind = MODELS[name]
        self.name, self.args, self.tmp = name, args, tmp
        self.path = os.path.join(args.zoo_dir, f)
        self.calib = os.path.join(args.zoo_data, stem + "_calib.npy")
        self.test = os.path.join(args.zoo_data, stem + "_test.npy")
        self.db = os.path.join(args.db_dir or tmp, name + ".db")  # sensitivities cached here
        self.flags = per_sample_flag(self.path)
        self.data = ["--data", "%s=%s" % (self.inp, self.calib)]
        self.fp_test = ort(self.path, self.inp, self.test, os.path.join(tmp, name + ".fp.npy"), self.flags)

    def search(self, method, bits, sens="weight", gens=0, off=1):
        """A plan by `bitalloc search` (uniform and random ignore the estimator: weight is free)."""
        plan = os.path.join(self.tmp, "%s.%s.%s.%d.json" % (self.name, method, sens, bits))
        cmd = [self.args.bin, "search", self.path] + self.data + [
            "--budget", "avg-bits=%d" % bits, "--method", method, "--sensitivity", sens, "--db", self.db,
            "--plan-out", plan, "--format", "json", "--seed", "0", "-q"]
        if method in ("random", "ilp+evo", "evo"):
            cmd += ["--generations", str(gens), "--offspring", str(off)]
        sh(cmd)
        return plan

    def fitness(self, plan):
        """The calibration metric bitalloc's own search minimises: KL for class outputs, else
        relative MSE (from the SQNR)."""
        d = json.loads(sh([self.args.bin, "eval", self.path] + self.data + ["--plan", plan, "--format", "json", "-q"]))
        q = d["quantized"]
        if self.kind == "class" and q.get("kl") is not None:
            return q["kl"]
        return 10 ** (-q["sqnr_db"] / 10) if q.get("sqnr_db") is not None else q["mse"]

    def test_scores(self, plan):
        qdq = plan[:-5] + ".qdq.onnx"
        sh([self.args.bin, "quantize", self.path, "--plan", plan, "-o", qdq, "--format", "qdq"])
        q = ort(qdq, self.inp, self.test, plan[:-5] + ".q.npy", self.flags)
        return test_metric(self.fp_test, q, self.kind)


def write_plan(template, bits, path):
    """The template plan with other widths (bitalloc recomputes memory and BOPs from the layers)."""
    p = json.loads(json.dumps(template))
    tot = sum(l["params"] for l in p["layers"])
    for l, b in zip(p["layers"], bits):
        l["w_bits"] = b
    p["totals"]["avg_bits"] = sum(l["params"] * l["w_bits"] for l in p["layers"]) / tot
    with open(path, "w") as f:
        json.dump(p, f)


def evopress(mdl, bits, evals, seed=0):
    """(1+λ) evolution over widths with budget-preserving level switches (EvoPress, Sieberling
    et al. 2024): each child moves one layer up a level and compensates by moving layers down
    until the average is back within the budget; the best of parent and children survives."""
    rng = random.Random(seed)
    base = mdl.search("uniform", bits)
    tmpl = json.load(open(base))
    params = [l["params"] for l in tmpl["layers"]]
    tot = float(sum(params))
    avg = lambda bs: sum(p * b for p, b in zip(params, bs)) / tot
    parent = [l["w_bits"] for l in tmpl["layers"]]
    path = os.path.join(mdl.tmp, "%s.evopress.%d.json" % (mdl.name, bits))
    write_plan(tmpl, parent, path)
    best = mdl.fitness(path)
    used, lam = 1, max(1, mdl.args.offspring)
    while used < evals:
        kids = []
        for _ in range(min(lam, evals - used)):
            c = list(parent)
            up = rng.randrange(len(c))
            i = LEVELS.index(c[up])
            if i + 1 < len(LEVELS):
                c[up] = LEVELS[i + 1]
            order = sorted(range(len(c)), key=lambda k: abs(params[k] - params[up]) + rng.random())
            for k in order:
                if avg(c) <= bits + 1e-9:
                    break
                if k != up and LEVELS.index(c[k]) > 0:
                    c[k] = LEVELS[LEVELS.index(c[k]) - 1]
            if avg(c) > bits + 1e-9:
                continue
            write_plan(tmpl, c, path)
            kids.append((mdl.fitness(path), c))
            used += 1
        if not kids:
            break
        f, c = min(kids)
        if f < best:
            best, parent = f, c
    write_plan(tmpl, parent, path)
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "bitalloc"))
    ap.add_argument("--models", default=DEFAULT_MODELS)
    ap.add_argument("--bits", default="3,4,5")
    ap.add_argument("--gens", type=int, default=4)
    ap.add_argument("--offspring", type=int, default=6)
    ap.add_argument("--db-dir", help="keep each model's study database (and cached sensitivities) here")
    ap.add_argument("--json", default=os.path.join(ROOT, "bench", "results", "plan_quality.json"))
    ap.add_argument("--zoo-dir", default=os.environ.get("ZOO_DIR", os.path.join(ROOT, "bench", "zoo", "cache")))
    ap.add_argument("--zoo-data", default=os.environ.get("ZOO_DATA", os.path.join(ROOT, "bench", "zoo", "data")))
    args = ap.parse_args()
    rows = []
    evals = 1 + args.gens * args.offspring
    print("| model | avg-bits | method | test metric (mean) | Δ vs ilp+evo, 95% CI | calib fitness | s |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            t0 = time.time()
            try:
                mdl = Model(name, args, tmp)
            except Exception as e:  # a model that ORT or bitalloc cannot run is reported, not fatal
                print("| %s | - | - | failed: %s | | | |" % (name, str(e)[:150]))
                continue
            for b in [int(s) for s in args.bits.split(",")]:
                scores, fits, secs, choice = {}, {}, {}, None
                for meth in METHODS:
                    t = time.time()
                    try:
                        if meth == "uniform":
                            plan = mdl.search("uniform", b)
                        elif meth == "ilp-hessian":
                            plan = mdl.search("ilp", b, "hessian")
                        elif meth == "ilp-measured":
                            plan = mdl.search("ilp", b, "measured")
                        elif meth == "random":
                            plan = mdl.search("random", b, "weight", args.gens, args.offspring)
                        elif meth == "evopress":
                            plan = evopress(mdl, b, evals)
                        else:
                            plan = mdl.search("ilp+evo", b, "hessian", args.gens, args.offspring)
                            choice = (json.load(open(plan)).get("search") or {}).get("choice")
                        fits[meth] = mdl.fitness(plan)
                        scores[meth] = mdl.test_scores(plan)
                    except Exception as e:
                        scores[meth] = str(e)[:150]
                    secs[meth] = time.time() - t
                ref = scores.get("ilp+evo")
                for meth in METHODS:
                    s = scores[meth]
                    if isinstance(s, str):
                        print("| %s | %d | %s | failed: %s | | | |" % (name, b, meth, s))
                        rows.append({"model": name, "bits": b, "method": meth, "error": s})
                        continue
                    ci = "-"
                    if meth != "ilp+evo" and isinstance(ref, np.ndarray):
                        lo, hi = bootstrap_ci(s - ref)
                        ci = "%+.3g [%+.3g, %+.3g]" % (float(np.mean(s - ref)), lo, hi)
                    print("| %s | %d | %s | %.4g | %s | %.4g | %.0f |" % (name, b, meth, float(np.mean(s)), ci,
                                                                      fits[meth], secs[meth]))
                    rows.append({"model": name, "bits": b, "method": meth, "test_mean": float(np.mean(s)),
                                 "delta_vs_ilp_evo": ci, "calib_fitness": fits[meth], "seconds": secs[meth],
                                 "test_samples": int(len(s))})
                    if meth == "ilp+evo" and choice:
                        rows[-1]["choice"] = choice
                if choice:
                    # What decided ilp+evo's final choice (search.choice of its plan), and the trial the
                    # lowest validation figure alone would have picked.
                    low = min((c for c in choice["candidates"] if c["validation"] is not None),
                              key=lambda c: (c["validation"], c["objective"], c["trial"]))
                    print("<!-- %s %d ilp+evo choice: %s, default trial %d, chosen %d, lowest validation %d; %s -->"
                          % (name, b, choice["rule"], choice["default"], choice["trial"], low["trial"],
                             ", ".join("%d %s v=%.4g p=%s" % (c["trial"], c["role"], c["validation"],
                                                             "-" if c["p"] is None else "%.3g" % c["p"])
                                       for c in choice["candidates"] if c["validation"] is not None)))
                sys.stdout.flush()
            print("<!-- %s: %.0f s -->" % (name, time.time() - t0))
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
