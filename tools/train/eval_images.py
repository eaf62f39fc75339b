#!/usr/bin/env python3
"""Classify generated Fashion-MNIST images (e.g. produced by the C++ library) with the small
CNN of classifier.py and report the class-match rate. CPU-friendly; Python 3.11 + torch 1.13 ok.

Two input forms:

1. A directory of PNGs (one image each). The intended class is read from the file name:
   the first match of `class<D>`, `label<D>`, `c<D>_` / `c<D>-` or a leading `<D>_` / `<D>-`
   (D = one digit 0..9), e.g. `class3_0007.png`, `label_3_seed7.png`, `c3_12.png`, `3_12.png`.
   Files whose name carries no label are classified and listed but not scored.

2. A grid PNG (`--grid`): `--rows` x `--cols` equal cells, row r holds class `r` (or the
   r-th entry of `--row-labels`). `--pad` pixels between cells and `--border` pixels around
   the whole grid (the grids written by tools/train/train_all.py and sample.py use pad 2,
   border 2, scale 2: `--pad 4 --border 4` on the scaled PNG; sample.py writes the exact
   command into its output).

Each image/cell is converted to grey (channel mean), resized by nearest/area to 32x32 if it is
an integer multiple of 32 (or 28 -> used as is), and centre-cropped to 28x28 (the model draws
32x32 images whose 28x28 centre is the Fashion-MNIST frame).

    python3 eval_images.py DIR_OR_PNG [--grid --rows 10 --cols 10 --pad 4 --border 4]
                           [--weights tools/train/classifier.safetensors] [--json out.json]
"""
import argparse
import json
import os
import re
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from classifier import CLASS_NAMES, load_classifier  # noqa: E402

LABEL_RE = [re.compile(r'class[_-]?(\d)(?!\d)', re.I), re.compile(r'label[_-]?(\d)(?!\d)', re.I),
            re.compile(r'(?:^|[^a-z0-9])c(\d)[_-]', re.I), re.compile(r'^(\d)[_-]')]


def label_from_name(name):
    for r in LABEL_RE:
        m = r.search(name)
        if m:
            return int(m.group(1))
    return None


def load_png(path):
    from PIL import Image
    im = np.asarray(Image.open(path).convert('RGB'), dtype=np.float32)
    return im  # H, W, 3 in 0..255


def to_input(cell):
    """cell: (H, W, 3) float 0..255 -> (1, 28, 28) in [0, 1]."""
    g = torch.from_numpy(np.ascontiguousarray(cell.mean(-1)))[None, None] / 255.0
    H, W = g.shape[-2:]
    if H != W:
        raise ValueError(f'non-square image {H}x{W}')
    if H % 32 == 0 and H != 32:
        g = F.avg_pool2d(g, H // 32)
    elif H % 28 == 0 and H != 28:
        g = F.avg_pool2d(g, H // 28)
    H = g.shape[-1]
    if H == 32:
        g = g[..., 2:30, 2:30]
    elif H != 28:
        g = F.interpolate(g, size=(28, 28), mode='area')
    return g[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('path')
    ap.add_argument('--weights', default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                      'classifier.safetensors'))
    ap.add_argument('--grid', action='store_true')
    ap.add_argument('--rows', type=int, default=10)
    ap.add_argument('--cols', type=int, default=10)
    ap.add_argument('--pad', type=int, default=0)
    ap.add_argument('--border', type=int, default=0)
    ap.add_argument('--row-labels', type=int, nargs='*', default=None)
    ap.add_argument('--json', default='')
    ap.add_argument('--verbose', action='store_true')
    a = ap.parse_args()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

    xs, ys, names = [], [], []
    if a.grid:
        im = load_png(a.path)
        H, W = im.shape[:2]
        ch = (H - 2 * a.border - (a.rows - 1) * a.pad) / a.rows
        cw = (W - 2 * a.border - (a.cols - 1) * a.pad) / a.cols
        if ch != int(ch) or cw != int(cw) or ch != cw:
            sys.exit(f'grid {W}x{H} does not split into {a.rows}x{a.cols} square cells with '
                     f'pad {a.pad}, border {a.border} (cell {cw}x{ch})')
        c = int(ch)
        rl = a.row_labels if a.row_labels else list(range(a.rows))
        for r in range(a.rows):
            for k in range(a.cols):
                y0, x0 = a.border + r * (c + a.pad), a.border + k * (c + a.pad)
                xs.append(to_input(im[y0:y0 + c, x0:x0 + c]))
                ys.append(rl[r])
                names.append(f'r{r}c{k}')
    else:
        files = sorted(f for f in os.listdir(a.path) if f.lower().endswith('.png'))
        for f in files:
            xs.append(to_input(load_png(os.path.join(a.path, f))))
            ys.append(label_from_name(f))
            names.append(f)
    if not xs:
        sys.exit('no images found')
    net = load_classifier(a.weights, 'cpu')
    with torch.no_grad():
        prob = torch.cat([net(torch.stack(xs[i:i + 256])).softmax(1) for i in range(0, len(xs), 256)])
    pred = prob.argmax(1).tolist()
    scored = [(p, y) for p, y in zip(pred, ys) if y is not None]
    res = {'n_images': len(xs), 'n_labelled': len(scored)}
    if a.verbose or not scored:
        for n, p, y, pr in zip(names, pred, ys, prob.max(1).values.tolist()):
            print(f'{n}: predicted {p} ({CLASS_NAMES[p]}, p={pr:.2f}) intended {y}')
    if scored:
        match = sum(p == y for p, y in scored) / len(scored)
        per = {}
        for c in range(10):
            sel = [p == y for p, y in scored if y == c]
            if sel:
                per[c] = sum(sel) / len(sel)
        res['class_match'] = match
        res['per_class'] = per
        print(f'class-match rate: {match:.4f} over {len(scored)} labelled images')
        for c, v in per.items():
            print(f'  {c} {CLASS_NAMES[c]:12s} {v:.3f}')
    if a.json:
        with open(a.json, 'w') as f:
            json.dump(res, f, indent=1)


if __name__ == '__main__':
    main()
