#!/usr/bin/python3
"""Multi-objective search quality: the measured front of `bitalloc search --method nsga2` against
Optuna's NSGA-II and TPE samplers driving bitalloc's own evaluator (`bitalloc eval --plan`), at equal
evaluation counts, on the digits CNN fixture and one zoo model; the hypervolume of each front over
several seeds.

usage: /usr/bin/python3 bench/pareto.py [BUILD_DIR]     (needs python3-optuna: BA_SETUP_BENCH=1 scripts/setup)
env:   ZOO_DIR, ZOO_DATA (bench/zoo/run.sh), PARETO_SEEDS (default 0,1,2), PARETO_POP (default 12),
       PARETO_GENS (default 8), PARETO_JSON (raw rows, default bench/results/pareto.json)

Objectives, both minimised: the measured metric (KL for class outputs, MSE for the one-score zoo
model: what bitalloc's search optimises) and avg-bits, with every configuration constrained to
avg-bits <= the budget. nsga2 stores n trials (its seed population of ILP sweep + uniform + random
configurations, then the generations); each Optuna sampler gets n *evaluations*: a configuration over
the budget is not evaluated (Optuna's constraints_func marks it infeasible) and does not count, so
Optuna is not charged for proposing it. Hypervolume in (log10 metric, avg-bits) of the feasible
non-dominated points, against a reference point per model: (log10 of the worst metric any method
measured + 0.1, budget + 0.25). "nsga2 seeds" is the hypervolume of nsga2's generation 0 alone.
"""
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import optuna

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"
BA = os.path.join(ROOT, BUILD, "bitalloc")
ZOO_DIR = os.environ.get("ZOO_DIR", os.path.join(ROOT, "bench/zoo/cache"))
ZOO_DATA = os.environ.get("ZOO_DATA", os.path.join(ROOT, "bench/zoo/data"))
SEEDS = [int(s) for s in os.environ.get("PARETO_SEEDS", "0,1,2").split(",")]
POP = int(os.environ.get("PARETO_POP", "12"))
GENS = int(os.environ.get("PARETO_GENS", "8"))
OUT_JSON = os.environ.get("PARETO_JSON", os.path.join(ROOT, "bench/results/pareto.json"))
BITS = [2, 3, 4, 5, 6, 8]  # bitalloc's default candidates

DIGITS = os.path.join(ROOT, "tests/fixtures/digits")
MODELS = [
    # name, model, data flags, metric, avg-bits budget
    ("digits-cnn", os.path.join(DIGITS, "cnn_dyn.onnx"), ["--data", os.path.join(DIGITS, "calib_x.npy")], "kl", 5.0),
    ("oww-hey-jarvis", os.path.join(ZOO_DIR, "oww/hey_jarvis_v0.1.onnx"),
     ["--data", "x.1=" + os.path.join(ZOO_DATA, "oww_emb16_calib.npy")], "mse", 4.0),
]


def run(*args):
    r = subprocess.run([BA, *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"bitalloc {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def front(points):
    """Non-dominated (m, b) points, minimising both."""
    pts = sorted(set(points))
    out, best = [], math.inf
    for m, b in sorted(pts, key=lambda p: (p[1], p[0])):
        if m < best:
            out.append((m, b))
            best = m
    return out


def hypervolume(points, ref):
    """2-D hypervolume of (log10 metric, bits) points dominated region up to ref."""
    pts = [(math.log10(max(m, 1e-30)), b) for m, b in points]
    pts = [p for p in pts if p[0] < ref[0] and p[1] < ref[1]]
    f = sorted(front_log(pts), key=lambda p: p[1])  # by bits ascending, metric descending
    hv = 0.0
    for i, (y, x) in enumerate(f):
        x_next = f[i + 1][1] if i + 1 < len(f) else ref[1]
        hv += (x_next - x) * (ref[0] - y)
    return hv


def front_log(pts):
    out, best = [], math.inf
    for y, x in sorted(set(pts), key=lambda p: (p[1], p[0])):
        if y < best:
            out.append((y, x))
            best = y
    return out


def nsga2_run(name, model, data, metric, budget, seed, tmp):
    db = os.path.join(tmp, f"{name}.db")
    study = f"{name}-{seed}"
    t0 = time.time()
    run("--db", db, "-q", "search", model, *data, "--budget", f"avg-bits={budget}", "--method", "nsga2",
        "--seed", str(seed), "--generations", str(GENS), "--offspring", str(POP), "--study", study)
    secs = time.time() - t0
    trials = json.loads(run("--db", db, "trials", "--study", study, "--format", "json"))
    pts = [(t[metric], t["avg_bits"]) for t in trials if t["state"] == "complete" and t[metric] is not None]
    seeds = [(t[metric], t["avg_bits"]) for t in trials
             if t["state"] == "complete" and t[metric] is not None and t["number"] <= POP]
    plan = os.path.join(tmp, f"{name}-template.json")
    run("--db", db, "-q", "export", "--study", study, "--trial", "1", "--format", "plan", "-o", plan)
    return pts, seeds, len(trials), secs, plan


def optuna_run(sampler_name, model, data, metric, budget, seed, n_evals, template, tmp):
    with open(template) as f:
        plan = json.load(f)
    layers = plan["layers"]
    params = [l["params"] for l in layers]
    total = sum(params)
    plan_path = os.path.join(tmp, "optuna_plan.json")
    pts, evals = [], [0]

    def avg_bits(bits):
        return sum(p * b for p, b in zip(params, bits)) / total

    def objective(trial):
        bits = [trial.suggest_categorical(f"l{i}", BITS) for i in range(len(layers))]
        ab = avg_bits(bits)
        trial.set_user_attr("constraint", [ab - budget])
        if ab > budget + 1e-9:
            return math.inf, ab  # not evaluated: infeasible
        for l, b in zip(layers, bits):
            l["w_bits"] = b
        with open(plan_path, "w") as f:
            json.dump(plan, f)
        r = json.loads(run("eval", model, *data, "--plan", plan_path, "--format", "json"))
        m = r["quantized"][metric]
        evals[0] += 1
        pts.append((m, r["quantized"]["avg_bits"]))
        return m, ab

    if sampler_name == "optuna-nsga2":
        sampler = optuna.samplers.NSGAIISampler(seed=seed, population_size=POP,
                                                constraints_func=lambda t: t.user_attrs["constraint"])
    else:
        sampler = optuna.samplers.TPESampler(seed=seed, constraints_func=lambda t: t.user_attrs["constraint"])
    st = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    t0 = time.time()
    proposed = 0
    while evals[0] < n_evals and proposed < 20 * n_evals:
        st.optimize(objective, n_trials=1)
        proposed += 1
    return pts, proposed, time.time() - t0


def main():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, model, data, metric, budget in MODELS:
            if not os.path.exists(model):
                print(f"{name}: {model} missing (run bench/zoo/fetch.sh), skipped", file=sys.stderr)
                continue
            for seed in SEEDS:
                pts, seeds, n, secs, template = nsga2_run(name, model, data, metric, budget, seed, tmp)
                rows.append(dict(model=name, metric=metric, budget=budget, seed=seed, method="nsga2", evals=n,
                                 proposed=n, seconds=secs, points=pts))
                rows.append(dict(model=name, metric=metric, budget=budget, seed=seed, method="nsga2 seeds",
                                 evals=len(seeds), proposed=len(seeds), seconds=None, points=seeds))
                for sampler in ("optuna-nsga2", "optuna-tpe"):
                    opts, proposed, osecs = optuna_run(sampler, model, data, metric, budget, seed, n, template, tmp)
                    rows.append(dict(model=name, metric=metric, budget=budget, seed=seed, method=sampler,
                                     evals=len(opts), proposed=proposed, seconds=osecs, points=opts))
                print(f"{name} seed {seed}: done", file=sys.stderr)
    # Reference point per model: the worst metric any method measured.
    for name in {r["model"] for r in rows}:
        rr = [r for r in rows if r["model"] == name]
        worst = max(m for r in rr for m, b in r["points"] if b <= r["budget"] + 1e-9)
        ref = (math.log10(max(worst, 1e-30)) + 0.1, rr[0]["budget"] + 0.25)
        for r in rr:
            feas = [(m, b) for m, b in r["points"] if b <= r["budget"] + 1e-9]
            r["ref"] = ref
            r["front"] = front(feas)
            r["hypervolume"] = hypervolume(feas, ref)
    with open(OUT_JSON, "w") as f:
        json.dump(rows, f)
    print("| model (metric, avg-bits ≤) | method | evaluations | hypervolume per seed | mean | front size per seed | wall s per seed |")
    print("|---|---|---|---|---|---|---|")
    for name in dict.fromkeys(r["model"] for r in rows):
        for method in ("nsga2 seeds", "nsga2", "optuna-nsga2", "optuna-tpe"):
            rr = [r for r in rows if r["model"] == name and r["method"] == method]
            if not rr:
                continue
            hv = [r["hypervolume"] for r in rr]
            secs = " / ".join("-" if r["seconds"] is None else f"{r['seconds']:.0f}" for r in rr)
            print(f"| {name} ({rr[0]['metric']}, {rr[0]['budget']}) | {method} | {' / '.join(str(r['evals']) for r in rr)}"
                  f" | {' / '.join(f'{h:.3f}' for h in hv)} | {sum(hv) / len(hv):.3f}"
                  f" | {' / '.join(str(len(r['front'])) for r in rr)} | {secs} |")


if __name__ == "__main__":
    main()
