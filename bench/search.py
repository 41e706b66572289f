#!/usr/bin/env python3
"""Quality benchmark of `bitalloc search` (bench/README.md, section "search").

(a) digits MLP, bits {2,3,4,8}: every one of the 4^3 = 64 configurations is
    evaluated (each pinned with --pin and run as `--method ilp`), giving the
    true KL-vs-avg-bits optimum at avg-bits 3, 4, 5; ilp+evo is compared with it.
(b) digits CNN (and zoo models given on the command line) at avg-bits 3 and 4:
    uniform, random, ilp (per estimator) and ilp+evo.
Usage: bench/search.py BUILD_DIR [zoo-model ...]   (run from the repository root)
"""
import itertools, json, os, subprocess, sys, tempfile, time

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"
CLI = os.path.join(BUILD, "bitalloc")
D = "tests/fixtures/digits/"
TMP = tempfile.mkdtemp(prefix="ba_bench_search_")
DB = os.environ.get("BENCH_DB") or os.path.join(TMP, "b.db")  # reuse one to keep cached sensitivities
n_study = [0]


def search(model, data, labels, extra):
    n_study[0] += 1
    cmd = [CLI, "--db", DB, "-q", "search", model, "--data", data, "--format", "json",
           "--study", "s%d-%d" % (os.getpid(), n_study[0])] + (["--labels", labels] if labels else []) + extra
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return None, r.stderr.strip()
    return json.loads(r.stdout), None


def row(j):
    m = j["plan"]["metrics"]
    return j["plan"]["totals"]["avg_bits"], m["kl"], m["agreement"], m["accuracy"], j["trials"], j["evaluations"]


def mlp_exhaustive():
    names = ["fc1.weight", "fc2.weight", "fc3.weight"]
    pts = []
    for bits in itertools.product([2, 3, 4, 8], repeat=3):
        pins = sum([["--pin", "%s=%d" % (n, b)] for n, b in zip(names, bits)], [])
        j, err = search(D + "mlp_dyn.onnx", D + "calib_x_flat.npy", D + "calib_y.npy",
                        ["--budget", "avg-bits=8", "--bits", "2,3,4,8", "--method", "ilp", "--sensitivity", "weight"] + pins)
        assert j, err
        a, kl, ag, acc, _, _ = row(j)
        pts.append((a, kl, acc, bits))
    print("## (a) digits MLP, bits {2,3,4,8}: exhaustive optimum vs ilp+evo\n")
    print("| avg-bits | true optimum KL (acc) | ilp+evo KL (acc) | KL gap | trials / evaluations |")
    print("|---|---|---|---|---|")
    for budget in (3, 4, 5):
        best = min((p for p in pts if p[0] <= budget + 1e-12), key=lambda p: p[1])
        j, err = search(D + "mlp_dyn.onnx", D + "calib_x_flat.npy", D + "calib_y.npy",
                        ["--budget", "avg-bits=%g" % budget, "--bits", "2,3,4,8", "--sensitivity", "hessian",
                         "--generations", "30", "--offspring", "16"])
        assert j, err
        a, kl, ag, acc, nt, ne = row(j)
        gap = (kl - best[1]) / best[1] * 100 if best[1] > 0 else 0.0
        print("| %g | %.5f (%.2f%%) %s | %.5f (%.2f%%) | %+.1f%% | %d / %d |" % (
            budget, best[1], 100 * best[2], best[3], kl, 100 * acc, gap, nt, ne))
    print()


SEEDS = (0, 1, 2)
RESULTS = {"compare": []}


def compare(label, model, data, labels, budgets, estimators, gens, kids, seeds=SEEDS, evo_sens="hessian"):
    """uniform, ilp per estimator (deterministic: once), random and ilp+evo per seed
    with the same number of evaluated configurations (1 + gens*kids)."""
    print("## (b) %s, evolution %d x %d, seeds %s\n" % (label, gens, kids, ",".join(map(str, seeds))))
    print("| avg-bits | method | avg-bits used | KL (per seed) | mean KL | agreement | accuracy | evals | samples fwd | time s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for b in budgets:
        runs = [("uniform", ["--method", "uniform"], (0,))]
        runs += [("ilp (%s)" % e, ["--method", "ilp", "--sensitivity", e], (0,)) for e in estimators]
        runs += [("random", ["--method", "random", "--generations", str(gens), "--offspring", str(kids)], seeds),
                 ("ilp+evo (%s)" % evo_sens, ["--sensitivity", evo_sens, "--generations", str(gens), "--offspring",
                                        str(kids)], seeds)]
        for name, extra, sds in runs:
            kls, rec = [], None
            for sd in sds:
                t0 = time.time()
                j, err = search(model, data, labels, ["--budget", "avg-bits=%g" % b, "--seed", str(sd)] + extra)
                dt = time.time() - t0
                if not j:
                    print("| %g | %s | failed: %s |  |  |  |  |  |  |  |" % (b, name, err.splitlines()[-1][:80]))
                    break
                a, kl, ag, acc, nt, ne = row(j)
                fwd = samples_forwarded(j["study"])
                kls.append(kl)
                r = {"model": label, "avg_bits": b, "method": name, "seed": sd, "avg_bits_used": a, "kl": kl,
                     "agreement": ag, "accuracy": acc, "trials": nt, "evaluations": ne, "samples_forwarded": fwd,
                     "seconds": dt, "timing": j.get("timing")}
                RESULTS["compare"].append(r)
                rec = rec or r
            if not kls:
                continue
            accs = "%.2f%%" % (100 * rec["accuracy"]) if rec["accuracy"] is not None else "-"
            print("| %g | %s | %.3f | %s | %.5f | %.2f%% | %s | %d | %d | %.1f |" % (
                b, name, rec["avg_bits_used"], " / ".join("%.5f" % k for k in kls), sum(kls) / len(kls),
                100 * rec["agreement"], accs, rec["evaluations"], rec["samples_forwarded"], rec["seconds"]))
    print()


def samples_forwarded(study):
    """Forward-pass work of a study: Σ over its trials of the samples of every
    fidelity stage it went through (a trial stores only its last stage; the
    stages are the distinct sample counts of the pruned trials)."""
    r = subprocess.run([CLI, "--db", DB, "trials", "--study", study, "--format", "json"], capture_output=True, text=True)
    try:
        ts = json.loads(r.stdout)
    except Exception:
        return -1
    stages = sorted({t["samples"] for t in ts if t.get("state") == "pruned" and t.get("samples")})
    tot = 0
    for t in ts:
        n = t.get("samples") or 0
        tot += n if t["number"] == 1 else n + sum(st for st in stages if st < n)
    return tot


def bookkeeping():
    print("## (c) evolution bookkeeping vs forward passes\n")
    print("| model | evolution s | in evaluations s | bookkeeping (mutation, selection, checkpoints, SQLite) |")
    print("|---|---|---|---|")
    for r in RESULTS["compare"]:
        t = r.get("timing")
        if r["method"].startswith("ilp+evo") and t and t["search_s"] > 0 and r["seed"] == 0:
            bk = t["search_s"] - t["evaluate_s"]
            print("| %s @ %g | %.2f | %.2f | %.3f s (%.1f%%) |" % (r["model"], r["avg_bits"], t["search_s"],
                                                              t["evaluate_s"], bk, 100 * bk / t["search_s"]))
    print()


if __name__ == "__main__":
    # BENCH_PARTS=mlp,cnn,zoo selects parts; zoo models: argv[2:] (default resnet vit).
    parts = os.environ.get("BENCH_PARTS", "exhaustive,mlp,cnn,zoo").split(",")
    if "exhaustive" in parts:
        mlp_exhaustive()
    if "mlp" in parts:
        compare("digits MLP", D + "mlp_dyn.onnx", D + "calib_x_flat.npy", D + "calib_y.npy", (3, 4),
                ["weight", "hessian"], 10, 8)
    if "cnn" in parts:
        compare("digits CNN", D + "cnn_dyn.onnx", D + "calib_x.npy", D + "calib_y.npy", (3, 4),
                ["weight", "act", "hessian", "fisher", "measured"], 10, 8)
    if "zoo" in parts:
        # Hessian sensitivity of a zoo model takes minutes on 2 cores: ZOO_SENS=weight uses the data-free one.
        zs = os.environ.get("ZOO_SENS", "hessian")
        for z in sys.argv[2:] or ["resnet", "vit"]:
            compare("zoo %s (no labels: KL/agreement vs FP)" % z, "tests/fixtures/zoo/%s_dyn.onnx" % z,
                    "tests/fixtures/zoo/calib_img32.npy", None, (3, 4), sorted({"weight", zs}), 6, 8, seeds=(0,),
                    evo_sens=zs)
    bookkeeping()
    out = os.environ.get("BENCH_JSON")
    if out:
        with open(out, "w") as f:
            json.dump(RESULTS, f, indent=1)
