#!/usr/bin/env python3
"""Plain-PyTorch reference of VAR / MVAR inference and the VQVAE decoder (CPU).

Written from /work/shared/SPEC.md (sections 1-3, 5); no code from the official
repositories. Weights use the official state_dict names, read from safetensors files
(tiny fixture models) or made in-process with random values and the official shapes
(d16/d20/d24/d30 presets, VAE ch 160).

Modes
  --check DIR     teacher-forced + greedy comparison against the fixtures in DIR
                  (exit status 1 on any mismatch)
  --time          timing of d16 (default) generation; one JSON line per run on stdout

Examples
  python3 bench/torch_reference.py --check tests/fixtures
  python3 bench/torch_reference.py --time --model mvar --batch 1 --reps 2
"""
import argparse
import json
import math
import os
import resource
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

PATCH_NUMS = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
PHI_INDEX = (0, 0, 1, 1, 1, 2, 2, 3, 3, 3)      # SPEC 1.11 (hard-coded, not recomputed)
LN100_F32 = 4.605170249938965                    # float32 value of ln(100), SPEC 5.3.19
V, CVAE, NULL_CLASS = 4096, 32, 1000


# --------------------------------------------------------------------------- safetensors
_ST_DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32,
              "U8": np.uint8, "F16": np.float16}


def load_safetensors(path):
    """Returns {name: torch.Tensor}. u64 LE header length, JSON header, raw LE data."""
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        arr = np.frombuffer(buf, dtype=_ST_DTYPES[info["dtype"]], count=(e - b) //
                            np.dtype(_ST_DTYPES[info["dtype"]]).itemsize, offset=base + b)
        out[name] = torch.from_numpy(arr.reshape(info["shape"]).copy())
    return out


# --------------------------------------------------------------------------- configuration
class Config:
    def __init__(self, depth, C, H, vae_ch, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2,
                 kernel_size=7, refine_step=8, patch_nums=PATCH_NUMS):
        self.depth, self.C, self.H = depth, C, H
        self.hd = C // H
        self.vae_ch, self.ch_mult, self.num_res_blocks = vae_ch, tuple(ch_mult), num_res_blocks
        self.kernel_size, self.refine_step = kernel_size, refine_step
        self.patch_nums = tuple(patch_nums)
        self.S = len(self.patch_nums)
        self.begin = [sum(p * p for p in self.patch_nums[:s]) for s in range(self.S)]
        self.L = sum(p * p for p in self.patch_nums)

    @staticmethod
    def preset(name):
        if name == "tiny":                                  # the fixtures' size (smoke tests)
            return Config(depth=2, C=128, H=2, vae_ch=32)
        d = {"d16": 16, "d20": 20, "d24": 24, "d30": 30}[name]
        return Config(depth=d, C=64 * d, H=d, vae_ch=160)

    @staticmethod
    def from_fixture_json(cfg):
        return Config(depth=cfg["depth"], C=cfg["embed_dim"], H=cfg["num_heads"],
                      vae_ch=cfg["vae_ch"], ch_mult=cfg["vae_ch_mult"],
                      num_res_blocks=cfg["vae_num_res_blocks"],
                      kernel_size=cfg["kernel_size"] or 7,
                      refine_step=cfg["refine_step"] if cfg["refine_step"] is not None else 8,
                      patch_nums=cfg["patch_nums"])


# --------------------------------------------------------------------------- random weights
def transformer_shapes(cfg):
    C, L = cfg.C, cfg.L
    sh = {"pos_start": (1, 1, C), "pos_1LC": (1, L, C), "word_embed.weight": (C, CVAE),
          "word_embed.bias": (C,), "class_emb.weight": (NULL_CLASS + 1, C),
          "lvl_embed.weight": (cfg.S, C)}
    for i in range(cfg.depth):
        p = f"blocks.{i}."
        sh.update({p + "attn.scale_mul_1H11": (1, cfg.H, 1, 1), p + "attn.q_bias": (C,),
                   p + "attn.v_bias": (C,), p + "attn.zero_k_bias": (C,),
                   p + "attn.mat_qkv.weight": (3 * C, C), p + "attn.proj.weight": (C, C),
                   p + "attn.proj.bias": (C,), p + "ffn.fc1.weight": (4 * C, C),
                   p + "ffn.fc1.bias": (4 * C,), p + "ffn.fc2.weight": (C, 4 * C),
                   p + "ffn.fc2.bias": (C,), p + "ada_lin.1.weight": (6 * C, C),
                   p + "ada_lin.1.bias": (6 * C,)})
    sh.update({"head_nm.ada_lin.1.weight": (2 * C, C), "head_nm.ada_lin.1.bias": (2 * C,),
               "head.weight": (V, C), "head.bias": (V,)})
    return sh


def vae_shapes(cfg):
    ch, mult, nrb = cfg.vae_ch, cfg.ch_mult, cfg.num_res_blocks
    sh = {"quantize.embedding.weight": (V, CVAE), "post_quant_conv.weight": (CVAE, CVAE, 3, 3),
          "post_quant_conv.bias": (CVAE,)}
    for k in range(4):
        sh[f"quantize.quant_resi.qresi_ls.{k}.weight"] = (CVAE, CVAE, 3, 3)
        sh[f"quantize.quant_resi.qresi_ls.{k}.bias"] = (CVAE,)

    def res(p, cin, cout):
        sh.update({p + "norm1.weight": (cin,), p + "norm1.bias": (cin,),
                   p + "conv1.weight": (cout, cin, 3, 3), p + "conv1.bias": (cout,),
                   p + "norm2.weight": (cout,), p + "norm2.bias": (cout,),
                   p + "conv2.weight": (cout, cout, 3, 3), p + "conv2.bias": (cout,)})
        if cin != cout:
            sh.update({p + "nin_shortcut.weight": (cout, cin, 1, 1),
                       p + "nin_shortcut.bias": (cout,)})

    def attn(p, c):
        sh.update({p + "norm.weight": (c,), p + "norm.bias": (c,),
                   p + "qkv.weight": (3 * c, c, 1, 1), p + "qkv.bias": (3 * c,),
                   p + "proj_out.weight": (c, c, 1, 1), p + "proj_out.bias": (c,)})

    top = ch * mult[-1]
    sh["decoder.conv_in.weight"] = (top, CVAE, 3, 3)
    sh["decoder.conv_in.bias"] = (top,)
    res("decoder.mid.block_1.", top, top)
    attn("decoder.mid.attn_1.", top)
    res("decoder.mid.block_2.", top, top)
    cin = top
    for lvl in reversed(range(len(mult))):
        cout = ch * mult[lvl]
        for j in range(nrb + 1):
            res(f"decoder.up.{lvl}.block.{j}.", cin, cout)
            cin = cout
            if lvl == len(mult) - 1:
                attn(f"decoder.up.{lvl}.attn.{j}.", cout)
        if lvl != 0:
            sh[f"decoder.up.{lvl}.upsample.conv.weight"] = (cout, cout, 3, 3)
            sh[f"decoder.up.{lvl}.upsample.conv.bias"] = (cout,)
    sh.update({"decoder.norm_out.weight": (cin,), "decoder.norm_out.bias": (cin,),
               "decoder.conv_out.weight": (3, cin, 3, 3), "decoder.conv_out.bias": (3,)})
    return sh


def random_weights(shapes, seed):
    """Random values of plausible magnitude (timing only; values do not affect cost)."""
    g = torch.Generator().manual_seed(seed)
    w = {}
    for name, shape in shapes.items():
        if name.endswith("scale_mul_1H11"):
            t = torch.full(shape, math.log(4.0))
        elif name.endswith("zero_k_bias"):
            t = torch.zeros(shape)
        elif name.endswith("norm1.weight") or name.endswith("norm2.weight") or \
                name.endswith("norm.weight") or name.endswith("norm_out.weight"):
            t = torch.ones(shape)
        elif len(shape) >= 2 and not name.startswith("pos") and "emb" not in name:
            fan_in = int(np.prod(shape[1:]))
            t = torch.randn(shape, generator=g) * (0.5 / math.sqrt(fan_in))
        else:
            t = torch.randn(shape, generator=g) * 0.02
        w[name] = t.float().contiguous()
    return w


# --------------------------------------------------------------------------- transformer
def layer_norm(x, eps=1e-6):
    return F.layer_norm(x, (x.shape[-1],), None, None, eps)


def na_neighbours(P, k):
    """(P*P, k*k) key token indices of the 2-D neighbourhood of each query (SPEC 3.3)."""
    r = k // 2
    start = [min(max(i - r, 0), P - k) for i in range(P)]
    idx = torch.empty(P * P, k * k, dtype=torch.long)
    for y in range(P):
        for x in range(P):
            rows = torch.arange(start[y], start[y] + k)
            cols = torch.arange(start[x], start[x] + k)
            idx[y * P + x] = (rows[:, None] * P + cols[None, :]).reshape(-1)
    return idx


def na_additive_mask(P, k):
    idx = na_neighbours(P, k)
    m = torch.full((P * P, P * P), float("-inf"))
    m.scatter_(1, idx, 0.0)
    return m


class Transformer:
    """VAR/MVAR transformer working on a weight dict with the official key names."""

    def __init__(self, cfg, w, na_impl="mask"):
        self.cfg, self.w, self.na_impl = cfg, w, na_impl
        C = cfg.C
        lvl = torch.cat([torch.full((p * p,), s, dtype=torch.long)
                         for s, p in enumerate(cfg.patch_nums)])
        self.lvl_pos = w["lvl_embed.weight"][lvl] + w["pos_1LC"][0]          # (L, C)
        zeros = torch.zeros(C)
        self.qkv_bias = [torch.cat([w[f"blocks.{i}.attn.q_bias"], zeros,
                                    w[f"blocks.{i}.attn.v_bias"]]) for i in range(cfg.depth)]
        self.temp = [torch.exp(torch.clamp(w[f"blocks.{i}.attn.scale_mul_1H11"], max=LN100_F32))
                     for i in range(cfg.depth)]                             # (1, H, 1, 1)
        self.na_cache = {}
        self.kv = None

    def reset_cache(self):
        self.kv = [None] * self.cfg.depth

    def _na(self, P):
        key = (P, self.na_impl)
        if key not in self.na_cache:
            k = self.cfg.kernel_size
            self.na_cache[key] = na_additive_mask(P, k) if self.na_impl == "mask" \
                else na_neighbours(P, k)
        return self.na_cache[key]

    def attention(self, i, h, s, mode):
        cfg, w = self.cfg, self.w
        R, n, C = h.shape
        qkv = F.linear(h, w[f"blocks.{i}.attn.mat_qkv.weight"], self.qkv_bias[i])
        q, k, v = qkv.view(R, n, 3, cfg.H, cfg.hd).permute(2, 0, 3, 1, 4).unbind(0)  # (R,H,n,hd)
        q = F.normalize(q, dim=-1, eps=1e-12) * self.temp[i]
        k = F.normalize(k, dim=-1, eps=1e-12)
        if mode == "var":                                   # KV cache, no mask (SPEC 1.8)
            if self.kv[i] is not None:
                k = torch.cat([self.kv[i][0], k], dim=2)
                v = torch.cat([self.kv[i][1], v], dim=2)
            self.kv[i] = (k, v)
            o = torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v
        elif s < cfg.refine_step:                           # MVAR: full in-scale attention
            o = torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v
        else:                                               # MVAR: 7x7 neighbourhood attention
            P = cfg.patch_nums[s]
            if self.na_impl == "mask":
                sc = q @ k.transpose(-1, -2) + self._na(P)
                o = torch.softmax(sc, dim=-1) @ v
            else:                                           # explicit gather of the 49 keys
                nb = self._na(P)                            # (n, 49)
                kn, vn = k[:, :, nb], v[:, :, nb]           # (R,H,n,49,hd)
                a = torch.softmax((kn @ q.unsqueeze(-1)).squeeze(-1), dim=-1)
                o = (a.unsqueeze(-2) @ vn).squeeze(-2)
        o = o.transpose(1, 2).reshape(R, n, C)
        return F.linear(o, w[f"blocks.{i}.attn.proj.weight"], w[f"blocks.{i}.attn.proj.bias"])

    def block(self, i, x, cond, s, mode, hook=None):
        w, C = self.w, self.cfg.C
        m = F.linear(F.silu(cond), w[f"blocks.{i}.ada_lin.1.weight"], w[f"blocks.{i}.ada_lin.1.bias"])
        g1, g2, sc1, sc2, sh1, sh2 = m.view(-1, 1, 6, C).unbind(2)
        x = x + g1 * self.attention(i, layer_norm(x) * (1 + sc1) + sh1, s, mode)
        hdn = layer_norm(x) * (1 + sc2) + sh2
        f = F.linear(hdn, w[f"blocks.{i}.ffn.fc1.weight"], w[f"blocks.{i}.ffn.fc1.bias"])
        f = F.linear(F.gelu(f, approximate="tanh"), w[f"blocks.{i}.ffn.fc2.weight"],
                     w[f"blocks.{i}.ffn.fc2.bias"])
        return x + g2 * f

    def head(self, x, cond):
        w, C = self.w, self.cfg.C
        m = F.linear(F.silu(cond), w["head_nm.ada_lin.1.weight"], w["head_nm.ada_lin.1.bias"])
        scale, shift = m.view(-1, 1, 2, C).unbind(2)
        return F.linear((layer_norm(x) * (1 + scale) + shift).float(), w["head.weight"],
                        w["head.bias"]).float()

    def step(self, x, cond, s, mode, hook=None):
        for i in range(self.cfg.depth):
            x = self.block(i, x, cond, s, mode)
            if hook is not None:
                hook(f"h.s{s}.b{i}", x)
        return self.head(x, cond)


# --------------------------------------------------------------------------- sampling
def top_k_top_p_mask_(logits, top_k, top_p):
    """In-place masking as described in SPEC 1.10 (ties at the k-th value survive)."""
    if top_k > 0:
        thr = logits.topk(top_k, dim=-1, largest=True, sorted=False)[0].amin(dim=-1, keepdim=True)
        logits.masked_fill_(logits < thr, float("-inf"))
    if top_p > 0:
        srt, order = logits.sort(dim=-1, descending=False)
        remove_sorted = srt.softmax(dim=-1).cumsum_(dim=-1) <= (1 - top_p)
        remove_sorted[..., -1:] = False
        remove = torch.zeros_like(remove_sorted).scatter_(-1, order, remove_sorted)
        logits.masked_fill_(remove, float("-inf"))
    return logits


def sample_tokens(logits, top_k, top_p, gen):
    B, l, Vv = logits.shape
    top_k_top_p_mask_(logits, top_k, top_p)
    probs = logits.softmax(dim=-1).view(-1, Vv)
    return torch.multinomial(probs, num_samples=1, replacement=True, generator=gen).view(B, l)


# --------------------------------------------------------------------------- VQ stage
class Quantizer:
    def __init__(self, cfg, vw):
        self.cfg = cfg
        self.emb = vw["quantize.embedding.weight"]
        self.phi = [(vw[f"quantize.quant_resi.qresi_ls.{k}.weight"],
                     vw[f"quantize.quant_resi.qresi_ls.{k}.bias"]) for k in range(4)]

    def add(self, fhat, idx, s):
        """f̂ += Phi_k(s)(bicubic16(codebook[idx])) (SPEC 1.11)."""
        cfg = self.cfg
        B, pn, top = idx.shape[0], cfg.patch_nums[s], cfg.patch_nums[-1]
        h = self.emb[idx].transpose(1, 2).reshape(B, CVAE, pn, pn)
        if s < cfg.S - 1:
            h = F.interpolate(h, size=(top, top), mode="bicubic", align_corners=False)
        wk, bk = self.phi[PHI_INDEX[s]]
        return fhat + (h * 0.5 + F.conv2d(h, wk, bk, padding=1) * 0.5)

    def next_input(self, fhat, s):
        pn = self.cfg.patch_nums[s + 1]
        z = F.interpolate(fhat, size=(pn, pn), mode="area")
        return z


# --------------------------------------------------------------------------- decoder
class Decoder:
    def __init__(self, cfg, vw):
        self.cfg, self.w = cfg, vw

    def gn(self, x, p):
        return F.group_norm(x, 32, self.w[p + ".weight"], self.w[p + ".bias"], eps=1e-6)

    def conv(self, x, p, pad):
        return F.conv2d(x, self.w[p + ".weight"], self.w[p + ".bias"], padding=pad)

    def res(self, x, p):
        h = self.conv(F.silu(self.gn(x, p + "norm1")), p + "conv1", 1)
        h = self.conv(F.silu(self.gn(h, p + "norm2")), p + "conv2", 1)
        if (p + "nin_shortcut.weight") in self.w:
            x = self.conv(x, p + "nin_shortcut", 0)
        return x + h

    def attn(self, x, p):
        B, C, Hh, Ww = x.shape
        qkv = self.conv(self.gn(x, p + "norm"), p + "qkv", 0)
        q, k, v = qkv.view(B, 3, C, Hh * Ww).unbind(1)                    # (B, C, N)
        a = torch.softmax(torch.bmm(q.transpose(1, 2), k) * (C ** -0.5), dim=2)   # (B, Nq, Nk)
        o = torch.bmm(v, a.transpose(1, 2)).view(B, C, Hh, Ww)
        return x + self.conv(o, p + "proj_out", 0)

    def __call__(self, fhat):
        cfg = self.cfg
        x = self.conv(fhat, "post_quant_conv", 1)
        x = self.conv(x, "decoder.conv_in", 1)
        x = self.res(x, "decoder.mid.block_1.")
        x = self.attn(x, "decoder.mid.attn_1.")
        x = self.res(x, "decoder.mid.block_2.")
        nl = len(cfg.ch_mult)
        for lvl in reversed(range(nl)):
            for j in range(cfg.num_res_blocks + 1):
                x = self.res(x, f"decoder.up.{lvl}.block.{j}.")
                if lvl == nl - 1:
                    x = self.attn(x, f"decoder.up.{lvl}.attn.{j}.")
            if lvl != 0:
                x = F.interpolate(x, scale_factor=2.0, mode="nearest")
                x = self.conv(x, f"decoder.up.{lvl}.upsample.conv", 1)
        x = F.silu(self.gn(x, "decoder.norm_out"))
        return self.conv(x, "decoder.conv_out", 1)


def to_uint8(img_dec):
    y = (img_dec.clamp(-1, 1) + 1) * 0.5
    return (y * 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()   # trunc, HWC


# --------------------------------------------------------------------------- generation
class Generator:
    def __init__(self, cfg, tw, vw, model, na_impl="mask"):
        assert model in ("var", "mvar")
        self.cfg, self.model = cfg, model
        self.tf = Transformer(cfg, tw, na_impl)
        self.quant = Quantizer(cfg, vw)
        self.dec = Decoder(cfg, vw)
        self.tw = tw

    @torch.no_grad()
    def generate(self, labels, cfg_scale, top_k, top_p, seed=0, forced_idx=None, hook=None,
                 skip_uncond_s0=False, timer=None, autocast_bf16=False, decode=True):
        """labels: LongTensor (B). Returns (f̂, img_dec, list of idx per scale).
        forced_idx: list of (B, n_s) tensors (teacher forcing), hook(name, tensor) for traces,
        timer: dict filled with per-part seconds if given."""
        cfg, w, tf = self.cfg, self.tw, self.tf
        B = labels.shape[0]
        gen = torch.Generator().manual_seed(seed)
        cfg_on = not (self.model == "mvar" and cfg_scale == 1.0)   # MVAR cfg==1 shortcut
        lab = torch.cat([labels, torch.full_like(labels, NULL_CLASS)]) if cfg_on else labels
        cond_all = w["class_emb.weight"][lab]                                   # (R, C)
        x = (cond_all + w["pos_start"][0, 0] + tf.lvl_pos[0]).unsqueeze(1)      # (R, 1, C)
        fhat = torch.zeros(B, CVAE, cfg.patch_nums[-1], cfg.patch_nums[-1])
        tf.reset_cache()
        idx_all = []
        clock = time.perf_counter
        for s in range(cfg.S):
            t0 = clock()
            cond = cond_all
            if skip_uncond_s0 and s == 0 and self.model == "mvar" and cfg_on:
                cond, xs = cond_all[:B], x[:B]                 # guidance weight is 0 at s=0
            else:
                xs = x
            if hook is not None:
                hook(f"x_in.s{s}", xs)
            if autocast_bf16:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    logits = tf.step(xs, cond, s, self.model, hook)
                logits = logits.float()
            else:
                logits = tf.step(xs, cond, s, self.model, hook)
            t1 = clock()
            if cfg_on and logits.shape[0] == 2 * B:
                t = cfg_scale * (s / (cfg.S - 1))
                mixed = (1 + t) * logits[:B] - t * logits[B:]
            else:
                mixed = logits[:B]
            if hook is not None:
                hook(f"logits_raw.s{s}", logits)
                hook(f"logits_mixed.s{s}", mixed)
            if forced_idx is not None:
                idx = forced_idx[s]
            else:
                idx = sample_tokens(mixed.clone() if hook is not None else mixed,
                                    top_k, top_p, gen)
            idx_all.append(idx)
            t2 = clock()
            fhat = self.quant.add(fhat, idx, s)
            if hook is not None:
                hook(f"fhat.s{s}", fhat)
            if s < cfg.S - 1:
                z = self.quant.next_input(fhat, s)
                if hook is not None:
                    hook(f"next_in.s{s}", z)
                pn = cfg.patch_nums[s + 1]
                b = cfg.begin[s + 1]
                x = F.linear(z.view(B, CVAE, pn * pn).transpose(1, 2), w["word_embed.weight"],
                             w["word_embed.bias"]) + tf.lvl_pos[b:b + pn * pn]
                if cfg_on:
                    x = torch.cat([x, x], dim=0)
            t3 = clock()
            if timer is not None:
                timer[f"s{s}_seconds"] = t3 - t0
                timer[f"s{s}_transformer_seconds"] = t1 - t0
                timer[f"s{s}_sample_seconds"] = t2 - t1
                timer[f"s{s}_vq_seconds"] = t3 - t2
        tf.kv = None                                        # caches dropped after the last step
        if not decode:
            return fhat, None, None, idx_all
        t0 = clock()
        img_dec = self.dec(fhat)
        img = to_uint8(img_dec)
        if timer is not None:
            timer["decode_seconds"] = clock() - t0
        return fhat, img_dec, img, idx_all


# --------------------------------------------------------------------------- check mode
def lse(x):
    return torch.logsumexp(x.double(), dim=-1).float()


def run_check(fixdir, verbose=True):
    ok = True
    tw = load_safetensors(os.path.join(fixdir, "tiny.transformer.safetensors"))
    vw = load_safetensors(os.path.join(fixdir, "tiny.vae.safetensors"))
    results = {}

    def report(name, err, tol):
        nonlocal ok
        good = err <= tol
        ok &= good
        results[name] = err
        if verbose or not good:
            print(f"  {'ok  ' if good else 'FAIL'} {name:36s} max|diff| = {err:.3e} (tol {tol:g})")

    for model in ("var", "mvar"):
        with open(os.path.join(fixdir, f"{model}_tiny.config.json")) as f:
            jc = json.load(f)
        cfg = Config.from_fixture_json(jc)
        trace = load_safetensors(os.path.join(fixdir, jc["trace_file"]))
        greedy = load_safetensors(os.path.join(fixdir, jc["greedy_file"]))
        labels = trace["labels"]
        B = labels.shape[0]
        for na_impl in (("mask", "gather") if model == "mvar" else ("mask",)):
            print(f"[{model}] teacher-forced vs {jc['trace_file']} (NA impl: {na_impl})"
                  if model == "mvar" else f"[{model}] teacher-forced vs {jc['trace_file']}")
            g = Generator(cfg, tw, vw, model, na_impl=na_impl)
            got = {}

            def hook(name, t):
                got[name] = t.detach().clone()

            forced = [trace[f"idx.s{s}"] for s in range(cfg.S)]
            full = na_impl == "mask"          # the gather variant only re-checks the transformer
            fhat, img_dec, img, _ = g.generate(labels, jc["cfg"], jc["top_k"], jc["top_p"],
                                               forced_idx=forced, hook=hook, decode=full)
            e = {"x_in": 0.0, "h": 0.0, "logits_cond": 0.0, "logits_uncond": 0.0,
                 "logits_mixed": 0.0, "lse_raw": 0.0, "lse_mixed": 0.0, "fhat": 0.0, "next_in": 0.0}
            for s in range(cfg.S):
                e["x_in"] = max(e["x_in"], (got[f"x_in.s{s}"] - trace[f"x_in.s{s}"]).abs().max().item())
                for i in range(cfg.depth):
                    e["h"] = max(e["h"], (got[f"h.s{s}.b{i}"] - trace[f"h.s{s}.b{i}"]).abs().max().item())
                tok = trace[f"logit_tok.s{s}"]
                raw, mixed = got[f"logits_raw.s{s}"], got[f"logits_mixed.s{s}"]
                e["logits_cond"] = max(e["logits_cond"], (raw[:B, tok] - trace[f"logits_cond.s{s}"]).abs().max().item())
                e["logits_uncond"] = max(e["logits_uncond"], (raw[B:, tok] - trace[f"logits_uncond.s{s}"]).abs().max().item())
                e["logits_mixed"] = max(e["logits_mixed"], (mixed[:, tok] - trace[f"logits_mixed.s{s}"]).abs().max().item())
                e["lse_raw"] = max(e["lse_raw"], (lse(raw) - trace[f"lse_raw.s{s}"]).abs().max().item())
                e["lse_mixed"] = max(e["lse_mixed"], (lse(mixed) - trace[f"lse_mixed.s{s}"]).abs().max().item())
                e["fhat"] = max(e["fhat"], (got[f"fhat.s{s}"] - trace[f"fhat.s{s}"]).abs().max().item())
                if s < cfg.S - 1:
                    e["next_in"] = max(e["next_in"], (got[f"next_in.s{s}"] - trace[f"next_in.s{s}"]).abs().max().item())
            tol = {"x_in": 2e-4, "h": 2e-4, "logits_cond": 2e-4, "logits_uncond": 2e-4,
                   "logits_mixed": 2e-4, "lse_raw": 2e-4, "lse_mixed": 2e-4, "fhat": 5e-5,
                   "next_in": 5e-5}
            tag = f"{model}" + (f"/{na_impl}" if model == "mvar" else "")
            for k in e:
                report(f"{tag} {k} (all scales)", e[k], tol[k])
            if not full:
                continue
            report(f"{tag} img_dec", (img_dec - trace["img_dec"]).abs().max().item(), 5e-5)
            du8 = (img.int() - trace["img_u8"].int()).abs()
            frac = (du8 > 0).float().mean().item()
            report(f"{tag} img_u8 max diff", du8.max().item(), 1)
            report(f"{tag} img_u8 frac differing", frac, 1e-3)

            print(f"[{model}] greedy (top_k=1, free-running) vs {jc['greedy_file']}")
            fhat, img_dec, img, idx = g.generate(greedy["labels"], jc["cfg"], 1, 0.0, seed=0)
            mism = sum(int((idx[s] != greedy[f"idx.s{s}"]).sum()) for s in range(cfg.S))
            report(f"{tag} greedy idx mismatches", mism, 0)
            report(f"{tag} greedy fhat.s9", (fhat - greedy["fhat.s9"]).abs().max().item(), 5e-5)
            du8 = (img.int() - greedy["img_u8"].int()).abs()
            report(f"{tag} greedy img_u8 frac differing", (du8 > 0).float().mean().item(), 1e-3)
    units = load_safetensors(os.path.join(fixdir, "units.safetensors"))
    print("[units] top-k / top-p masks vs units.safetensors")
    for name in ("k5", "p0.8", "k20_p0.9", "ties_k3"):
        k, p = units[f"topkp.{name}.params"].tolist()
        got = top_k_top_p_mask_(units[f"topkp.{name}.in"].clone(), int(k), float(p))
        ref = units[f"topkp.{name}.masked"]
        same = bool(torch.equal(torch.isinf(got), torch.isinf(ref))) and \
            bool(torch.equal(got[~torch.isinf(got)], ref[~torch.isinf(ref)]))
        report(f"topkp.{name} mask mismatch", 0 if same else 1, 0)
    return ok, results


# --------------------------------------------------------------------------- timing mode
def run_time(args):
    torch.set_num_threads(args.threads)
    cfg = Config.preset(args.preset)
    t0 = time.perf_counter()
    tw = random_weights(transformer_shapes(cfg), seed=1)
    vw = random_weights(vae_shapes(cfg), seed=2)
    nparam = sum(v.numel() for k, v in tw.items() if not k.endswith("zero_k_bias"))  # buffers out
    init_s = time.perf_counter() - t0
    g = Generator(cfg, tw, vw, args.model, na_impl=args.na_impl)
    labels = torch.tensor([(207 + 97 * b) % 1000 for b in range(args.batch)], dtype=torch.long)
    env = {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "LD_PRELOAD", "MALLOC_CONF",
                                          "OPENBLAS_CORETYPE", "LD_LIBRARY_PATH",
                                          "OMP_NUM_THREADS")}
    runs = []
    for r in range(args.warmup + args.reps):
        timer = {}
        c0 = time.process_time()
        t0 = time.perf_counter()
        g.generate(labels, args.cfg, args.top_k, args.top_p, seed=r, timer=timer,
                   skip_uncond_s0=args.skip_uncond_s0, autocast_bf16=args.bf16)
        timer["total_seconds"] = time.perf_counter() - t0
        timer["total_cpu_seconds"] = time.process_time() - c0      # all threads, user+sys
        timer["transformer_seconds"] = sum(timer[f"s{s}_seconds"] for s in range(cfg.S))
        if r >= args.warmup:
            runs.append(timer)
        rec = {"kind": "run", "model": args.model, "preset": args.preset, "batch": args.batch,
               "rep": r, "warmup": r < args.warmup, "label": args.label, **timer}
        print(json.dumps(rec), flush=True)
    med = {k: float(np.median([t[k] for t in runs])) for k in runs[0]}
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    summary = {"kind": "summary", "model": args.model, "preset": args.preset, "batch": args.batch,
               "label": args.label, "threads": args.threads, "bf16": args.bf16,
               "na_impl": args.na_impl, "skip_uncond_s0": args.skip_uncond_s0,
               "cfg": args.cfg, "top_k": args.top_k, "top_p": args.top_p,
               "reps": args.reps, "warmup": args.warmup, "params": nparam,
               "weight_init_seconds": init_s, "peak_rss_mb": rss_kb / 1024.0,
               "seconds_per_image": med["total_seconds"] / args.batch,
               "median": med, "loadavg": os.getloadavg(), "torch": torch.__version__,
               "env": env}
    print(json.dumps(summary), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", metavar="FIXTURE_DIR")
    ap.add_argument("--time", action="store_true")
    ap.add_argument("--model", choices=("var", "mvar"), default="mvar")
    ap.add_argument("--preset", default="d16", choices=("tiny", "d16", "d20", "d24", "d30"))
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--cfg", type=float, default=1.5)
    ap.add_argument("--top-k", type=int, default=900)
    ap.add_argument("--top-p", type=float, default=0.96)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default: 1 for --check, 2 for --time)")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast on the transformer")
    ap.add_argument("--na-impl", choices=("mask", "gather"), default="mask")
    ap.add_argument("--skip-uncond-s0", action="store_true",
                    help="MVAR: skip the unconditional half at step 0 (output-identical)")
    ap.add_argument("--label", default="", help="free text copied into the JSON output")
    args = ap.parse_args()
    if args.check:
        torch.set_num_threads(args.threads or 1)
        t0 = time.perf_counter()
        ok, _ = run_check(args.check)
        print(f"check {'PASSED' if ok else 'FAILED'} in {time.perf_counter() - t0:.1f} s")
        sys.exit(0 if ok else 1)
    if args.time:
        args.threads = args.threads or 2
        run_time(args)
        return
    ap.print_help()
    sys.exit(2)


if __name__ == "__main__":
    main()
