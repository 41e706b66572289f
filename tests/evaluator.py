#!/usr/bin/env python3
"""A --evaluator for the tests (standard library only). Usage:
    evaluator.py MODE LOG [MARK]
MODE: good (minimize), max (maximize), crash_once (exits after 3 answers when
MARK does not exist yet, creating it), garbage (answers non-JSON), hang (never
answers an evaluation), nullscore (score null), slow (answers as good after
1.2 s).
The score is a deterministic function of the model file's bytes and the
sample window, so the same configuration always scores the same. Every
evaluation is appended to LOG as "sha256 first samples"."""
import hashlib
import json
import os
import sys
import time

mode, log = sys.argv[1], sys.argv[2]
mark = sys.argv[3] if len(sys.argv) > 3 else None
answered = 0
for line in sys.stdin:
    req = json.loads(line)
    if req["type"] == "hello":
        print(json.dumps({"direction": "maximize" if mode == "max" else "minimize", "name": "fake_task"}), flush=True)
        continue
    with open(req["model"], "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    with open(log, "a") as f:
        f.write("%s %d %d\n" % (digest, req["first"], req["samples"]))
    if mode == "crash_once" and answered == 3 and not os.path.exists(mark):
        open(mark, "w").close()
        sys.exit(3)
    if mode == "garbage":
        print("this is not json", flush=True)
        continue
    if mode == "hang":
        time.sleep(3600)
    if mode == "slow":
        time.sleep(1.2)
    score = int(digest[:8], 16) / 2.0**32 + req["first"] * 1e-6
    print(json.dumps({"score": None if mode == "nullscore" else score, "metrics": {"accuracy": 1 - score}}),
          flush=True)
    answered += 1
