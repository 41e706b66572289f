#!/usr/bin/python3
"""The final-choice candidates of `search --method ilp+evo` studies on test data.

For each ilp+evo study in a plan_quality.py database (--db-dir) it reads the chosen trial's
account (trials.chosen: the default, the paired test, each candidate's search and validation
figures), exports every candidate as a plan, runs it as QDQ in ONNX Runtime on the disjoint
test split and prints each candidate's test mean next to what picked it: the rule in force
(`chosen`), the lowest validation figure alone (the rule before the paired test) and the best
elite on the search part (`default`).

  ZOO_DIR=bench/zoo/cache ZOO_DATA=bench/zoo/data /usr/bin/python3 bench/choice_candidates.py \
      --db-dir DIR --models oww-timer [--bin build/bitalloc]
"""
import argparse
import json
import os
import sqlite3
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import plan_quality as pq  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(pq.ROOT, "build", "bitalloc"))
    ap.add_argument("--db-dir", required=True)
    ap.add_argument("--models", default="oww-timer")
    ap.add_argument("--zoo-dir", default=os.environ.get("ZOO_DIR", os.path.join(pq.ROOT, "bench", "zoo", "cache")))
    ap.add_argument("--zoo-data", default=os.environ.get("ZOO_DATA", os.path.join(pq.ROOT, "bench", "zoo", "data")))
    ap.add_argument("--json")
    args = ap.parse_args()
    args.offspring, args.gens = 1, 0
    rows = []
    print("| model | avg-bits | trial | role | search objective | validation | p vs default | picked by | test mean |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            mdl = pq.Model(name, args, tmp)
            con = sqlite3.connect(mdl.db)
            studies = con.execute(
                "SELECT s.id, s.name, json_extract(s.settings, '$.budgets') FROM studies s"
                " WHERE json_extract(s.settings, '$.method') = 'ilp+evo' ORDER BY s.id").fetchall()
            last = {}
            for sid, sname, budgets in studies:  # the latest study of each budget
                last[json.loads(budgets)["avg-bits"]] = (sid, sname)
            for bits, (sid, sname) in sorted(last.items()):
                rec = con.execute("SELECT chosen FROM trials WHERE study_id = ? AND chosen IS NOT NULL",
                                  (sid,)).fetchone()
                if not rec:
                    continue
                ch = json.loads(rec[0])
                cands = [c for c in ch["candidates"] if c["validation"] is not None]
                low = min(cands, key=lambda c: (c["validation"], c["objective"], c["trial"]))["trial"]
                for c in ch["candidates"]:
                    plan = os.path.join(tmp, "%s.%d.%d.json" % (name, bits, c["trial"]))
                    pq.sh([args.bin, "--db", mdl.db, "export", "--study", sname, "--trial", str(c["trial"]),
                           "--format", "plan", "-o", plan])
                    s = mdl.test_scores(plan)
                    by = [k for k, t in (("chosen", ch["trial"]), ("lowest-validation", low),
                                         ("default", ch["default"])) if t == c["trial"]]
                    print("| %s | %g | %d | %s | %.3g | %.3g | %s | %s | %.4g |" % (
                        name, bits, c["trial"], c["role"], c["objective"], c["validation"],
                        "-" if c["p"] is None else "%.3g" % c["p"], ", ".join(by) or "-", float(np.mean(s))))
                    rows.append({"model": name, "bits": bits, "trial": c["trial"], "role": c["role"],
                                 "objective": c["objective"], "validation": c["validation"], "p": c["p"],
                                 "picked_by": by, "test_mean": float(np.mean(s)), "rule": ch["rule"]})
                sys.stdout.flush()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
