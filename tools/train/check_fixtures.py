#!/usr/bin/env python3
"""Checks the PyTorch modules of this folder against the reference fixtures produced by the
official VAR/MVAR code (tests/fixtures or /work/shared/fixtures): sampler masks, neighbourhood
attention, one AdaLN block, and the whole tiny MVAR trace (teacher-forced). CPU, torch 1.13 ok.

    python3 check_fixtures.py [FIXTURE_DIR]
"""
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import st_io  # noqa: E402
from mvar_model import MVAR, VQVAE, AdaLNSelfAttn, ln, na_mask, sample, to_u8, top_k_top_p_  # noqa: E402


def main():
    fx = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, '..', '..', 'tests', 'fixtures')
    if not os.path.exists(os.path.join(fx, 'units.safetensors')):
        fx = '/work/shared/fixtures'
    u, _ = st_io.load_torch(os.path.join(fx, 'units.safetensors'))
    ok = True

    for n in sorted({k.rsplit('.', 1)[0] for k in u if k.startswith('topkp.')}):
        x = u[n + '.in'].clone()
        k, p = u[n + '.params'].tolist()
        y = top_k_top_p_(x.view(-1, x.shape[-1]), int(k), float(p)).view_as(x)
        same = torch.equal(torch.isinf(y), torch.isinf(u[n + '.masked']))
        ok &= same
        print(f'{n:28s} mask identical: {same}')

    for n in sorted({k.rsplit('.', 1)[0] for k in u if k.startswith('na_')}):
        q, k_, v, out = u[n + '.q'], u[n + '.k'], u[n + '.v'], u[n + '.out']
        kx, ky, unit = u[n + '.params'].tolist()
        B, X, Y, H, D = q.shape
        if X != Y or kx != ky:
            continue                    # na_mask is for square grids (all the model needs)
        m = na_mask(X, kx)
        sc = 1.0 if unit == 1 else D ** -0.5
        qq, kk, vv = (t.reshape(B, X * Y, H, D).transpose(1, 2) for t in (q, k_, v))
        a = ((qq @ kk.transpose(-1, -2)) * sc).masked_fill(~m, float('-inf')).softmax(-1)
        o = (a @ vv).transpose(1, 2).reshape(B, X, Y, H, D)
        d = (o - out).abs().max().item()
        ok &= d < 1e-4
        print(f'{n:28s} max abs diff {d:.1e}')

    bk = {k[6:]: v for k, v in u.items()
          if k.startswith('block.') and not k.startswith(('block.cond', 'block.full', 'block.na'))}
    b = AdaLNSelfAttn(bk['attn.q_bias'].numel(), bk['attn.scale_mul_1H11'].shape[1])
    b.load_state_dict(bk, strict=True)
    with torch.no_grad():
        for name, mask in (('full_pn6', None), ('na_pn13', na_mask(13, 7))):
            x = u[f'block.{name}.in']
            d1 = (b(x, u['block.cond'], mask) - u[f'block.{name}.out']).abs().max().item()
            d2 = (b.attn(ln(x), mask) - u[f'attn.{name}.out']).abs().max().item()
            ok &= max(d1, d2) < 1e-4
            print(f'block {name:22s} block {d1:.1e}  attn {d2:.1e}')

    c = json.load(open(os.path.join(fx, 'mvar_tiny.config.json')))
    pn = tuple(c['patch_nums'])
    m = MVAR(c['vocab_size'], c['Cvae'], c['num_classes'], c['depth'], c['embed_dim'], c['num_heads'],
             c['mlp_ratio'], pn, c['kernel_size'], c['refine_step']).eval()
    sd, _ = st_io.load_torch(os.path.join(fx, c['transformer_file']))
    m.load_state_dict(sd, strict=True)
    vae = VQVAE(c['vocab_size'], c['Cvae'], c['vae_ch'], tuple(c['vae_ch_mult']), c['vae_num_res_blocks'], pn).eval()
    sd, _ = st_io.load_torch(os.path.join(fx, c['vae_file']))
    sd.pop('quantize.ema_vocab_hit_SV', None)
    r = vae.load_state_dict(sd, strict=False)
    assert not r.unexpected_keys and all(k.startswith(('encoder.', 'quant_conv.')) for k in r.missing_keys)
    assert vae.quantize.phi_idx == c['phi_index_per_scale']
    tr, _ = st_io.load_torch(os.path.join(fx, c['trace_file']))
    S = len(pn)
    mine = {}
    with torch.no_grad():
        _, img, _ = sample(m, vae, tr['labels'], cfg=c['cfg'], trace=mine,
                           logit_tok=[tr[f'logit_tok.s{s}'].tolist() for s in range(S)],
                           forced_idx=[tr[f'idx.s{s}'] for s in range(S)])
    worst = max((mine[k] - tr[k]).abs().max().item() for k in mine if k in tr and mine[k].dtype.is_floating_point)
    d_img = (img - tr['img_dec']).abs().max().item()
    n_u8 = (to_u8(img).int() - tr['img_u8'].int()).abs().gt(0).sum().item()
    ok &= worst < 2e-4 and d_img < 5e-5
    print(f'tiny MVAR trace (official code): worst logits/lse/fhat diff {worst:.1e}, img_dec {d_img:.1e}, '
          f'img_u8 values off by one: {n_u8} of {tr["img_u8"].numel()}')
    print('ALL OK' if ok else 'MISMATCH')
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main()
