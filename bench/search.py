#!/usr/bin/env python3
"""Quality benchmark of `bitalloc search` (bench/README.md, section "search").

(a) digits MLP, bits {2,3,4,8}: every one of the 4^3 = 64 configurations is
    evaluated (each pinned with --pin and run as `--method ilp`), giving the
    true KL-vs-avg-bits optimum at avg-bits 3, 4, 5; ilp+evo is compared with it.
(b) digits CNN (and zoo models given on the command line) at avg-bits 3 and 4:
    uniform, random, ilp (per estimator) and ilp+evo.
Usage: bench/search.py BUILD_DIR [zoo-model ...]   (run from the repository root)
"""
import itertools, json, os, subprocess, sys, tempfile

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"
CLI = os.path.join(BUILD, "bitalloc")
D = "tests/fixtures/digits/"
TMP = tempfile.mkdtemp(prefix="ba_bench_search_")
DB = os.path.join(TMP, "b.db")
n_study = [0]


def search(model, data, labels, extra):
    n_study[0] += 1
    cmd = [CLI, "--db", DB, "-q", "search", model, "--data", data, "--format", "json",
           "--study", "s%d" % n_study[0]] + (["--labels", labels] if labels else []) + extra
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


def compare(label, model, data, labels, budgets, estimators):
    print("## (b) %s\n" % label)
    print("| avg-bits | method | avg-bits used | KL | agreement | accuracy | trials |")
    print("|---|---|---|---|---|---|---|")
    for b in budgets:
        runs = [("uniform", ["--method", "uniform"]),
                ("random", ["--method", "random", "--generations", "10", "--offspring", "8"])]
        runs += [("ilp (%s)" % e, ["--method", "ilp", "--sensitivity", e]) for e in estimators]
        runs += [("ilp+evo (hessian)", ["--sensitivity", "hessian", "--generations", "10", "--offspring", "8"])]
        for name, extra in runs:
            j, err = search(model, data, labels, ["--budget", "avg-bits=%g" % b] + extra)
            if not j:
                print("| %g | %s | failed: %s |  |  |  |  |" % (b, name, err.splitlines()[-1][:80]))
                continue
            a, kl, ag, acc, nt, _ = row(j)
            accs = "%.2f%%" % (100 * acc) if acc is not None else "-"
            print("| %g | %s | %.3f | %.5f | %.2f%% | %s | %d |" % (b, name, a, kl, 100 * ag, accs, nt))
    print()


if __name__ == "__main__":
    mlp_exhaustive()
    compare("digits CNN", D + "cnn_dyn.onnx", D + "calib_x.npy", D + "calib_y.npy", (3, 4),
            ["weight", "act", "hessian", "fisher", "measured"])
    for z in sys.argv[2:]:
        compare("zoo %s (agreement with FP)" % z, "tests/fixtures/zoo/%s_dyn.onnx" % z,
                "tests/fixtures/zoo/%s_x.npy" % z, None, (3, 4), ["weight", "hessian"])
