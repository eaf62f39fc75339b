"""Reconstruction and zero-shot editing with the default Fashion-MNIST model, measured by the
classifier (PyTorch reference of what the C++ library does; CPU, torch 1.13 ok).

    python3 eval_edit.py --data DATA_DIR --model ../../models/fashion_mnist [--per-class 20] [--out DIR]

Test images (the first --per-class of each class of the 10k test split) are encoded with the
shipped encoder; then:
  reconstruction        decode(f̂): PSNR, classifier class-match with the true label;
  in-painting (null)    regenerate the centre box (0.25–0.75) under the null class: class-match with
                        the source label (does the filled-in garment stay what it was?);
  class edit            regenerate a box under another label: class-match with the target label —
                        'shirt→pullover': Shirt images, the middle band with the sleeves
                        (y 0.25–0.75, x 0–1) under Pullover; 'centre→next': every image, the centre
                        box under label (y + 1) mod 10.
Editing follows demo_zero_shot_edit.ipynb: box → latent mask (Python round), per scale bilinear
(align_corners False) > 0.5, every token kept when pn² ≤ 3; kept tokens replaced after sampling.
Sampling: cfg 3, top-k 100, top-p 0.95 (the model's recommended settings), seeded.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from classifier import load_classifier, predict  # noqa: E402
from mvar_model import top_k_top_p_, to_u8  # noqa: E402
from sample import load_models, save_grid  # noqa: E402
from train_all import gen_to_cls_input, prep_images  # noqa: E402
from train_encoder import load_data  # noqa: E402


def edit_masks(patch_nums, box, inpainting):
    P = patch_nums[-1]
    m = torch.zeros(P, P)
    y0, x0, y1, x1 = box
    m[round(y0 * P):round(y1 * P), round(x0 * P):round(x1 * P)] = 1
    if inpainting:
        m = 1 - m
    out = []
    for pn in patch_nums:
        k = F.interpolate(m[None, None], size=(pn, pn), mode='bilinear', align_corners=False).gt(0.5).view(-1)
        if pn * pn <= 3:
            k[:] = True
        out.append(k)
    return out


@torch.no_grad()
def edit_sample(mvar, vae, labels, gt_idx, keep, cfg=3.0, top_k=100, top_p=0.95, seed=0):
    B, S, H = labels.shape[0], mvar.S, mvar.patch_nums[-1]
    g = torch.Generator()
    g.manual_seed(seed)
    cond = mvar.class_emb(torch.cat([labels, torch.full_like(labels, mvar.num_classes)]))
    f_hat = torch.zeros(B, mvar.cvae, H, H)
    emb = vae.quantize.embedding.weight
    for s, pn in enumerate(mvar.patch_nums):
        x = mvar.step_input(s, cond, f_hat if s > 0 else None)
        logits = mvar.step_logits(s, x, cond)
        t = cfg * s / (S - 1)
        mixed = (1 + t) * logits[:B] - t * logits[B:]
        m = mixed.reshape(-1, mvar.vocab).clone()
        top_k_top_p_(m, top_k, top_p)
        idx = torch.multinomial(m.softmax(-1), 1, generator=g).view(B, pn * pn)
        idx = torch.where(keep[s][None], gt_idx[s], idx)
        h = emb[idx].view(B, pn, pn, mvar.cvae).permute(0, 3, 1, 2)
        if s != S - 1:
            h = F.interpolate(h, size=(H, H), mode='bicubic', align_corners=False)
        f_hat = f_hat + vae.quantize.phi(s)(h)
    return vae.fhat_to_img(f_hat)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--data', required=True)
    ap.add_argument('--model', required=True)
    ap.add_argument('--per-class', type=int, default=20)
    ap.add_argument('--out', default='')
    ap.add_argument('--threads', type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfgj, mvar, vae = load_models(a.model)
    clf = load_classifier(os.path.join(HERE, 'classifier.safetensors'))
    _, xte_u8, yte = load_data(a.data)
    pick = np.concatenate([np.nonzero(yte == c)[0][:a.per_class] for c in range(10)])
    x = prep_images(xte_u8[pick], 'cpu').expand(-1, 3, -1, -1)
    y = torch.from_numpy(yte[pick])
    pn = list(cfgj['patch_nums'])
    res = {'images': int(len(pick)), 'sampling': {'cfg': 3.0, 'top_k': 100, 'top_p': 0.95}}
    with torch.no_grad():
        f = vae.quant_conv(vae.encoder(x))
        f_hat, _, idxs, _ = vae.quantize(f)
        rec = vae.fhat_to_img(f_hat)
    mse = F.mse_loss(rec.clamp(-1, 1), x).item()
    rec_pred = predict(clf, gen_to_cls_input(rec)).argmax(1)
    res['reconstruction'] = {'psnr_db': round(10 * math.log10(4 / mse), 2),
                             'class_match': round((rec_pred == y).float().mean().item(), 4)}
    grids = [to_u8(x[:: a.per_class]), to_u8(rec[:: a.per_class])]

    def run(name, sel, box, inpainting, labels, want, seed):
        keep = edit_masks(pn, box, inpainting)
        img = edit_sample(mvar, vae, labels, [t[sel] for t in idxs], keep, seed=seed)
        p = predict(clf, gen_to_cls_input(img)).argmax(1)
        res[name] = {'box': box, 'inpainting': inpainting, 'n': int(len(labels)),
                     'class_match': round((p == want).float().mean().item(), 4),
                     'kept_tokens_per_scale': [int(k.sum()) for k in keep]}
        return img

    sel = torch.arange(len(pick))
    null = torch.full((len(pick),), mvar.num_classes, dtype=torch.long)
    img_in = run('inpaint_null_centre', sel, (0.25, 0.25, 0.75, 0.75), True, null, y, 1)
    tgt = (y + 1) % 10
    img_next = run('class_edit_centre_next', sel, (0.25, 0.25, 0.75, 0.75), True, tgt, tgt, 2)
    shirts = torch.nonzero(y == 6).flatten()
    img_sp = run('class_edit_shirt_to_pullover', shirts, (0.25, 0.0, 0.75, 1.0), True,
                 torch.full((len(shirts),), 2, dtype=torch.long), torch.full((len(shirts),), 2, dtype=torch.long), 3)
    grids += [to_u8(img_in[:: a.per_class]), to_u8(img_next[:: a.per_class])]
    print(json.dumps(res, indent=1))
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        json.dump(res, open(os.path.join(a.out, 'edit_eval.json'), 'w'), indent=1)
        # rows: source, reconstruction, in-painted (null), centre edited to the next class
        save_grid(torch.cat(grids).numpy(), 4, 10, os.path.join(a.out, 'edit_grid.png'))
        save_grid(torch.cat([to_u8(x[shirts[:10]]), to_u8(img_sp[:10])]).numpy(), 2, 10,
                  os.path.join(a.out, 'shirt_to_pullover.png'))


if __name__ == '__main__':
    main()
