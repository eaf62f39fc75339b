"""Train a VQVAE encoder (official `Encoder` + `quant_conv`) against the FROZEN shipped decoder,
codebook and Phi convolutions of models/fashion_mnist/vae.safetensors, and export it into that
file (every existing tensor kept bit-identical).

The default model's original encoder was not kept (config.json listed `encoder.*` and
`quant_conv.*` under `omitted_keys`). Because the codebook, the Phi convolutions,
post_quant_conv and the decoder are frozen, the token space the shipped transformer was trained
on is unchanged: the new encoder only learns to map images onto it.

    python3 train_encoder.py --data DATA_DIR --model ../../models/fashion_mnist --out OUT_DIR \
        [--seconds 150] [--export]

Loss: reconstruction MSE + L1 of decoder(post_quant_conv(f̂)) against the input (straight-through
f̂, as in train_all.py) plus the commitment term β·‖f − sg(f̂)‖² (β = 0.25); only the encoder and
quant_conv are trained. Evaluation on the 10k test images: reconstruction PSNR (clamped decoder
output vs input, [-1, 1] → peak-to-peak 2) and the classifier's class-match rate on the
reconstructions (the same 8-bit path as the C++ library: trunc(255·(clamp(x)+1)/2)).
Written for torch 2.x on a CUDA GPU; runs (slowly) on a CPU with small budgets.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402
from classifier import load_classifier, load_fashion_mnist, predict  # noqa: E402
from mvar_model import VQVAE  # noqa: E402
from train_all import amp, gen_to_cls_input, lr_at, prep_images  # noqa: E402


def build_vae(model_dir, dev):
    cfg = json.load(open(os.path.join(model_dir, 'config.json')))
    vae = VQVAE(vocab=cfg['vocab_size'], cvae=cfg['Cvae'], ch=cfg['vae_ch'], ch_mult=tuple(cfg['vae_ch_mult']),
                num_res_blocks=cfg['vae_num_res_blocks'], patch_nums=tuple(cfg['patch_nums']),
                quant_resi=cfg['quant_resi'], share_quant_resi=cfg['share_quant_resi'],
                using_sa=cfg['vae_using_sa'], using_mid_sa=cfg['vae_using_mid_sa'])
    assert vae.quantize.phi_idx == cfg['phi_index_per_scale'], 'Phi index table differs from config.json'
    sd, _ = st_io.load_torch(os.path.join(model_dir, cfg['vae_file']))
    frozen = {k: v for k, v in sd.items() if not k.startswith(('encoder.', 'quant_conv.'))
              and k != 'quantize.ema_vocab_hit_SV'}
    missing, unexpected = vae.load_state_dict(frozen, strict=False)
    assert not unexpected, unexpected
    assert all(k.startswith(('encoder.', 'quant_conv.')) for k in missing), missing
    for n, p in vae.named_parameters():
        p.requires_grad_(n.startswith(('encoder.', 'quant_conv.')))
    return vae.to(dev), cfg


def train(vae, xtr, dev, seconds, bs, lr, seed, log):
    torch.manual_seed(seed)
    params = [p for p in vae.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=1e-4)
    g = torch.Generator(device=dev)
    g.manual_seed(seed)
    vae.train()
    t0, step = time.time(), 0
    while True:
        frac = (time.time() - t0) / seconds
        if frac >= 1:
            break
        for pg in opt.param_groups:
            pg['lr'] = lr_at(lr, step, 200, frac)
        b = torch.randint(0, xtr.shape[0], (bs,), device=dev, generator=g)
        x = xtr[b]
        flip = torch.rand(bs, device=dev, generator=g) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x).expand(-1, 3, -1, -1)
        with amp(dev):
            rec, vq_loss, _, _ = vae(x)
        rec = rec.float()
        rec_loss = F.mse_loss(rec, x) + F.l1_loss(rec, x)
        loss = rec_loss + vq_loss.float()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 2.0)
        opt.step()
        if step % 200 == 0:
            log(f'enc step {step} t={time.time() - t0:.0f}s rec {rec_loss.item():.4f} vq {vq_loss.item():.4f} '
                f'lr {opt.param_groups[0]["lr"]:.2e}')
        step += 1
    log(f'encoder done: {step} steps in {time.time() - t0:.0f}s, final rec {rec_loss.item():.4f}')
    return step


@torch.no_grad()
def evaluate(vae, x, y, clf, bs=1000):
    vae.eval()
    se, n, match = 0.0, 0, 0
    for i in range(0, x.shape[0], bs):
        xb = x[i:i + bs].expand(-1, 3, -1, -1)
        f = vae.quant_conv(vae.encoder(xb))
        f_hat, _, _, _ = vae.quantize(f)
        r = vae.fhat_to_img(f_hat)
        se += F.mse_loss(r.clamp(-1, 1), xb, reduction='sum').item()
        n += xb.numel()
        pred = predict(clf, gen_to_cls_input(r)).argmax(1)
        match += (pred.to(y.device) == y[i:i + bs]).sum().item()
    mse = se / n
    return mse, 10 * math.log10(4.0 / mse), match / x.shape[0]


def load_data(path):
    """Fashion-MNIST from Debian's dataset-fashion-mnist folder (IDX .gz files), or a packed
    subset for a machine the full set cannot travel to: train.u8.xz (N·28·28 bytes) and
    test.u8.xz (10000·28·28 image bytes, then 10000 label bytes), made by --pack."""
    if os.path.exists(os.path.join(path, 'train.u8.xz')):
        import lzma
        tr = np.frombuffer(lzma.open(os.path.join(path, 'train.u8.xz')).read(), np.uint8).reshape(-1, 28, 28)
        te = np.frombuffer(lzma.open(os.path.join(path, 'test.u8.xz')).read(), np.uint8)
        n = te.size // (28 * 28 + 1)
        return tr.copy(), te[:n * 784].reshape(n, 28, 28).copy(), te[n * 784:].astype(np.int64)
    xtr, _ = load_fashion_mnist(path, 'train')
    xte, yte = load_fashion_mnist(path, 't10k')
    return xtr, xte, yte


def pack(data, out, n_train):
    import lzma
    xtr, xte, yte = load_data(data)
    os.makedirs(out, exist_ok=True)
    with lzma.open(os.path.join(out, 'train.u8.xz'), 'wb', preset=9) as f:
        f.write(xtr[:n_train].tobytes())
    with lzma.open(os.path.join(out, 'test.u8.xz'), 'wb', preset=9) as f:
        f.write(xte.tobytes() + yte.astype(np.uint8).tobytes())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--data', required=True)
    ap.add_argument('--model', required=True, help='models/fashion_mnist')
    ap.add_argument('--out', required=True)
    ap.add_argument('--seconds', type=float, default=150)
    ap.add_argument('--bs', type=int, default=256)
    ap.add_argument('--lr', type=float, default=1e-3)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--limit', type=int, default=0, help='train/test images (0 = all; smoke tests)')
    ap.add_argument('--export', action='store_true', help='write encoder.* / quant_conv.* into the model\'s VAE file')
    ap.add_argument('--pack', type=int, default=0, help='only write the first N training images and the test set, '
                    'xz-packed, into --out (for a remote machine), then stop')
    a = ap.parse_args()
    if a.pack:
        pack(a.data, a.out, a.pack)
        return
    os.makedirs(a.out, exist_ok=True)
    logf = open(os.path.join(a.out, 'train_encoder.log'), 'a')

    def log(*s):
        s = ' '.join(str(t) for t in s)
        print(s, flush=True)
        logf.write(s + '\n')
        logf.flush()

    dev = 'cuda' if torch.cuda.is_available() else 'cpu'
    log(f'device {dev}, torch {torch.__version__}')
    vae, cfg = build_vae(a.model, dev)
    n_enc = sum(p.numel() for n, p in vae.named_parameters() if p.requires_grad)
    log(f'encoder + quant_conv parameters: {n_enc}')
    xtr_u8, xte_u8, yte = load_data(a.data)
    if a.limit:
        xtr_u8, xte_u8, yte = xtr_u8[:a.limit], xte_u8[:a.limit], yte[:a.limit]
    xtr, xte = prep_images(xtr_u8, dev), prep_images(xte_u8, dev)
    yte = torch.from_numpy(yte).to(dev)
    steps = train(vae, xtr, dev, a.seconds, a.bs, a.lr, a.seed, log)
    clf = load_classifier(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'classifier.safetensors'), dev)
    mse, psnr, match = evaluate(vae, xte, yte, clf)
    res = {'encoder_steps': steps, 'encoder_seconds': a.seconds, 'encoder_params': n_enc,
           'test_mse': round(mse, 5), 'test_psnr_db': round(psnr, 2), 'class_match_on_reconstructions': round(match, 4),
           'device': dev}
    log('result', json.dumps(res))
    enc = {k: v.detach().float().cpu() for k, v in vae.state_dict().items() if k.startswith(('encoder.', 'quant_conv.'))}
    st_io.save_file(enc, os.path.join(a.out, 'encoder.safetensors'), metadata={'result': json.dumps(res)})
    json.dump(res, open(os.path.join(a.out, 'encoder_result.json'), 'w'), indent=1)
    if a.export:
        export(a.model, cfg, enc)
        log('exported into', os.path.join(a.model, cfg['vae_file']))


def export(model_dir, cfg, enc):
    """Adds the encoder tensors to the model's VAE file; every existing tensor keeps its bytes."""
    path = os.path.join(model_dir, cfg['vae_file'])
    old, meta = st_io.load_file(path)
    clash = [k for k in enc if k in old]
    assert not clash, f'{path} already holds {clash[:3]}'
    new = dict(old)
    new.update({k: v.numpy() for k, v in enc.items()})
    tmp = path + '.tmp'
    st_io.save_file(new, tmp, metadata=meta or None)
    back, _ = st_io.load_file(tmp)
    for k, v in old.items():
        assert back[k].dtype == v.dtype and back[k].tobytes() == v.tobytes(), k
    os.replace(tmp, path)


if __name__ == '__main__':
    main()
