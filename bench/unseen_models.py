#!/usr/bin/python3
"""Runs torchvision architectures the engine has no fixture or special case
for: exports each from PyTorch (opsets 13 and 17, dynamic batch), runs it with
`bitalloc eval --save-output` and compares with PyTorch's output.

Needs Debian's python3-torch/-torchvision (BA_SETUP_TORCH=1 scripts/setup).
Usage: /usr/bin/python3 bench/unseen_models.py [--bitalloc build/bitalloc] [NAME ...]
Writes bench/results/unseen_models.json.
"""
import argparse, json, os, subprocess, sys, tempfile, time, warnings

import numpy as np
import torch
import torchvision.models as tm

warnings.filterwarnings("ignore")

MODELS = {
    "alexnet": (lambda: tm.alexnet(weights=None), (1, 3, 224, 224)),
    "googlenet": (lambda: tm.googlenet(weights=None, aux_logits=False, init_weights=True), (1, 3, 64, 64)),
    "inception_v3": (lambda: tm.inception_v3(weights=None, aux_logits=False, init_weights=True), (1, 3, 96, 96)),
    "densenet121": (lambda: tm.densenet121(weights=None), (1, 3, 64, 64)),
    "mnasnet0_5": (lambda: tm.mnasnet0_5(weights=None), (1, 3, 64, 64)),
    "regnet_y_400mf": (lambda: tm.regnet_y_400mf(weights=None), (1, 3, 64, 64)),
    "convnext_tiny": (lambda: tm.convnext_tiny(weights=None), (1, 3, 64, 64)),
    "swin_t": (lambda: tm.swin_t(weights=None), (1, 3, 64, 64)),
    "lraspp_mobilenet_v3": (lambda: tm.segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None),
                            (1, 3, 64, 64)),
    "vit_b_16": (lambda: tm.vit_b_16(weights=None, image_size=32), (1, 3, 32, 32)),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bitalloc", default=os.path.join(os.path.dirname(__file__), "..", "build", "bitalloc"))
    ap.add_argument("names", nargs="*")
    a = ap.parse_args()
    names = a.names or list(MODELS)
    rows, failures = [], 0
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            build, shape = MODELS[name]
            m = build().eval()
            # Non-trivial heads: torchvision zero-initialises some classifier weights.
            with torch.no_grad():
                for p in m.parameters():
                    if p.dim() >= 2 and float(p.abs().max()) == 0:
                        p.normal_(0, 0.02)
            x = torch.randn(*shape)
            with torch.no_grad():
                ref = m(x)
                ref = ref["out"] if isinstance(ref, dict) else ref
            xp = os.path.join(tmp, name + "_x.npy")
            np.save(xp, x.numpy())
            for opset in (13, 17):
                path = os.path.join(tmp, f"{name}_{opset}.onnx")
                torch.onnx.export(m, x, path, opset_version=opset, input_names=["x"], dynamic_axes={"x": {0: "n"}})
                out = os.path.join(tmp, f"{name}_{opset}_out.npy")
                t0 = time.time()
                r = subprocess.run([a.bitalloc, "-q", "eval", path, "--data", xp, "--save-output", out],
                                   capture_output=True, text=True)
                row = {"model": name, "opset": opset, "seconds": round(time.time() - t0, 2)}
                if r.returncode != 0:
                    row["error"] = r.stderr.strip()
                    failures += 1
                else:
                    y = np.load(out)
                    d = float(np.abs(y - ref.numpy()).max())
                    row["max_abs"] = d
                    row["rel_to_max"] = d / float(np.abs(ref.numpy()).max())
                    if row["rel_to_max"] > 1e-4:
                        failures += 1
                rows.append(row)
                print(json.dumps(row), flush=True)
    os.makedirs(os.path.join(os.path.dirname(__file__), "results"), exist_ok=True)
    with open(os.path.join(os.path.dirname(__file__), "results", "unseen_models.json"), "w") as f:
        json.dump(rows, f, indent=1)
    print(f"{len(rows) - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
