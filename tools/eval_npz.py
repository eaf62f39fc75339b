#!/usr/bin/env python3
"""Class-match rate of an evaluation .npz (arr_0 uint8 [N, H, W, 3], arr_1 labels) of the default
Fashion-MNIST model, by the small CNN of tools/train/classifier.py (the classifier and the 32 → 28
crop of tools/train/eval_images.py).

    python3 tools/eval_npz.py samples.npz [--json out.json]
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "train"))
from classifier import CLASS_NAMES, load_classifier  # noqa: E402
from eval_images import to_input  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("npz")
    ap.add_argument("--weights", default=os.path.join(here, "train", "classifier.safetensors"))
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    with np.load(a.npz) as f:
        images, labels = f["arr_0"], f["arr_1"]
        settings = json.loads(f["settings.json"]) if "settings.json" in f.files else {}
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
        sys.exit(f"{a.npz}: arr_0 is {images.dtype} {images.shape}, expected uint8 [N, H, W, 3]")
    net = load_classifier(a.weights, "cpu")
    xs = [to_input(im.astype(np.float32)) for im in images]
    with torch.no_grad():
        pred = torch.cat([net(torch.stack(xs[i:i + 256])).argmax(1) for i in range(0, len(xs), 256)]).numpy()
    match = float((pred == labels).mean())
    per = {int(c): float((pred[labels == c] == c).mean()) for c in np.unique(labels)}
    print(f"{a.npz}: {len(labels)} images, class-match rate {match:.4f}")
    for c, v in per.items():
        print(f"  {c} {CLASS_NAMES[c]:12s} {v:.3f}  ({int((labels == c).sum())} images)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"n_images": len(labels), "class_match": match, "per_class": per,
                       "identity": settings.get("identity", {})}, f, indent=1)


if __name__ == "__main__":
    main()
