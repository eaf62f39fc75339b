#!/usr/bin/env python3
"""PyTorch reference sampler for the shipped Fashion-MNIST MVAR (models/fashion_mnist).

Follows SPEC.md exactly: class embedding (+ null class 10 for the unconditional half), scale-
Markov steps (full in-scale attention for s < refine_step, k x k neighbourhood attention
after), CFG with t = cfg * s / (S - 1) and the cfg == 1 shortcut, top-k / top-p, f_hat update
with bicubic + Phi, decoder, clamp, (x+1)/2, trunc(255 x).

    python3 sample.py [--model models/fashion_mnist] [--per-class 10] [--cfg C] [--top-k K]
                      [--top-p P] [--seed S] [--out grid.png] [--png-dir DIR]
                      [--check-trace]          # teacher-forced comparison with trace.safetensors

--png-dir writes one 32x32 PNG per image named class{c}_{i:04d}.png (the naming that
eval_images.py reads). The grid has one row per class (pad 2, border 2, scaled x2).
CPU by default; Python 3.11 + torch 1.13 compatible.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import st_io  # noqa: E402
from mvar_model import MVAR, VQVAE, sample, to_u8  # noqa: E402


def load_models(model_dir, device='cpu'):
    with open(os.path.join(model_dir, 'config.json')) as f:
        cfg = json.load(f)
    pn = tuple(cfg['patch_nums'])
    vae = VQVAE(cfg['vocab_size'], cfg['Cvae'], cfg['vae_ch'], tuple(cfg['vae_ch_mult']),
                cfg['vae_num_res_blocks'], pn, cfg['quant_resi'], cfg['share_quant_resi'],
                cfg['vae_using_sa'], cfg['vae_using_mid_sa'])
    sd, _ = st_io.load_torch(os.path.join(model_dir, cfg['vae_file']))
    sd.pop('quantize.ema_vocab_hit_SV', None)
    missing, unexpected = vae.load_state_dict(sd, strict=False)
    assert not unexpected, unexpected
    assert all(k.startswith(('encoder.', 'quant_conv.')) for k in missing), missing
    assert vae.quantize.phi_idx == cfg['phi_index_per_scale']
    mvar = MVAR(cfg['vocab_size'], cfg['Cvae'], cfg['num_classes'], cfg['depth'], cfg['embed_dim'],
                cfg['num_heads'], cfg['mlp_ratio'], pn, cfg['kernel_size'], cfg['refine_step'])
    sd, _ = st_io.load_torch(os.path.join(model_dir, cfg['transformer_file']))
    mvar.load_state_dict(sd, strict=True)
    return cfg, mvar.to(device).eval(), vae.to(device).eval()


def save_grid(u8_nhwc, rows, cols, path, scale=2, pad=2):
    from PIL import Image
    N, H, W, _ = u8_nhwc.shape
    grid = np.full((rows * (H + pad) + pad, cols * (W + pad) + pad, 3), 255, np.uint8)
    for i in range(min(N, rows * cols)):
        r, c = divmod(i, cols)
        grid[pad + r * (H + pad):pad + r * (H + pad) + H, pad + c * (W + pad):pad + c * (W + pad) + W] = u8_nhwc[i]
    im = Image.fromarray(grid)
    if scale != 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    im.save(path)


def check_trace(model_dir, cfgj, mvar, vae):
    tr, meta = st_io.load_torch(os.path.join(model_dir, cfgj['trace_file']))
    S = mvar.S
    lt = [tr[f'logit_tok.s{s}'].tolist() for s in range(S)]
    forced = [tr[f'idx.s{s}'] for s in range(S)]
    mine = {}
    f_hat, img, _ = sample(mvar, vae, tr['labels'], cfg=float(meta['cfg']), trace=mine,
                           logit_tok=lt, forced_idx=forced)
    worst = 0.0
    for k in sorted(tr):
        if tr[k].dtype.is_floating_point:
            ref = tr[k]
            got = img if k == 'img_dec' else mine[k]
            d = (got - ref).abs().max().item()
            worst = max(worst, d)
            print(f'{k:22s} max abs diff {d:.2e}')
    u8 = to_u8(img)
    nd = (u8.int() - tr['img_u8'].int()).abs()
    print(f'img_u8 values differing: {(nd > 0).sum().item()} (max {nd.max().item()})')
    print(f'worst float diff {worst:.2e}')


def write_greedy(path, cfgj, mvar, vae, labels, cfg):
    """Greedy run (top_k = 1, top_p off) for an end-to-end check without teacher forcing:
    idx per scale, the top-1 minus top-2 margin of the guided logits, lse of the guided
    logits, final f_hat and image."""
    S = mvar.S
    tr = {}
    lt = [list(range(p * p)) for p in mvar.patch_nums]
    f_hat, img, idxs = sample(mvar, vae, labels, cfg=cfg, top_k=1, top_p=0.0, seed=0, trace=tr,
                              logit_tok=lt)
    out = {'labels': labels}
    for s in range(S):
        top2 = tr[f'logits_mixed.s{s}'].topk(2, dim=-1).values
        out[f'idx.s{s}'] = idxs[s]
        out[f'margin.s{s}'] = top2[..., 0] - top2[..., 1]
        out[f'lse_mixed.s{s}'] = tr[f'lse_mixed.s{s}']
    out[f'fhat.s{S - 1}'] = f_hat
    out['img_u8'] = to_u8(img)
    st_io.save_file(out, path, metadata={'cfg': cfg, 'top_k': 1, 'top_p': 0.0,
                                         'labels': ' '.join(map(str, labels.tolist()))})
    print('smallest margin per scale:', [round(out[f'margin.s{s}'].min().item(), 4) for s in range(S)])
    print(f'wrote {path}')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--model', default=os.path.join(HERE, '..', '..', 'models', 'fashion_mnist'))
    ap.add_argument('--per-class', type=int, default=10)
    ap.add_argument('--classes', type=int, nargs='*', default=list(range(10)))
    ap.add_argument('--cfg', type=float, default=None)
    ap.add_argument('--top-k', type=int, default=None)
    ap.add_argument('--top-p', type=float, default=None)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--batch', type=int, default=250)
    ap.add_argument('--out', default='grid.png')
    ap.add_argument('--png-dir', default='')
    ap.add_argument('--check-trace', action='store_true')
    ap.add_argument('--write-greedy', default='', help='write a greedy (top_k 1) run of classes '
                    '--classes (one image each) at --cfg to this safetensors file')
    a = ap.parse_args()
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    cfgj, mvar, vae = load_models(a.model)
    if a.check_trace:
        check_trace(a.model, cfgj, mvar, vae)
        return
    rec = cfgj.get('recommended', {})
    cfg = a.cfg if a.cfg is not None else rec.get('cfg', 3.0)
    if a.write_greedy:
        write_greedy(a.write_greedy, cfgj, mvar, vae, torch.tensor(a.classes), cfg)
        return
    top_k = a.top_k if a.top_k is not None else rec.get('top_k', 0)
    top_p = a.top_p if a.top_p is not None else rec.get('top_p', 0.0)
    labels = torch.tensor(a.classes).repeat_interleave(a.per_class)
    imgs = []
    for i in range(0, len(labels), a.batch):
        _, img, _ = sample(mvar, vae, labels[i:i + a.batch], cfg=cfg, top_k=top_k, top_p=top_p,
                           seed=a.seed + i)
        imgs.append(to_u8(img))
    u8 = torch.cat(imgs).numpy()
    save_grid(u8, len(a.classes), a.per_class, a.out)
    print(f'wrote {a.out}: rows = classes {a.classes}, {a.per_class} samples each, cfg {cfg}, '
          f'top_k {top_k}, top_p {top_p}, seed {a.seed}')
    print(f'evaluate with: python3 {os.path.join(HERE, "eval_images.py")} {a.out} --grid '
          f'--rows {len(a.classes)} --cols {a.per_class} --pad 4 --border 4 --row-labels '
          + ' '.join(map(str, a.classes)))
    if a.png_dir:
        from PIL import Image
        os.makedirs(a.png_dir, exist_ok=True)
        cnt = {}
        for lab, im in zip(labels.tolist(), u8):
            i = cnt.get(lab, 0)
            cnt[lab] = i + 1
            Image.fromarray(im).save(os.path.join(a.png_dir, f'class{lab}_{i:04d}.png'))
        print(f'wrote {len(u8)} PNGs to {a.png_dir}')


if __name__ == '__main__':
    main()
