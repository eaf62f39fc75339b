"""Small VQVAE + MVAR transformer of the official VAR/MVAR architecture family.

Written from /work/shared/SPEC.md (no code taken from the official repositories). Module and
parameter names are chosen so that `state_dict()` carries the official key names
(SPEC §1.2 for the transformer, §2.3 for the VQVAE).

Works with torch 1.13 (CPU, local) and torch 2.x (GPU, training).
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

LN100 = math.log(100.0)


# ----------------------------------------------------------------------------------------------
# VQVAE (SPEC §2)
# ----------------------------------------------------------------------------------------------

def GN(c):
    assert c % 32 == 0, 'GroupNorm(32) needs channel counts that are multiples of 32'
    return nn.GroupNorm(32, c, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm1 = GN(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.norm2 = GN(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.norm = GN(c)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x):
        B, C, H, W = x.shape
        qkv = self.qkv(self.norm(x)).reshape(B, 3, C, H * W)
        q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]              # (B, C, N)
        w = torch.bmm(q.transpose(1, 2), k) * (C ** -0.5)         # (B, Nq, Nk)
        w = w.softmax(dim=2)
        o = torch.bmm(v, w.transpose(1, 2))                        # (B, C, Nq)
        return x + self.proj_out(o.reshape(B, C, H, W))


class Upsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode='nearest'))


class Downsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 2, 0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1), mode='constant', value=0.0))


class Level(nn.Module):
    """Container so that keys read `up.{L}.block.{j}`, `up.{L}.attn.{j}`, `up.{L}.upsample`."""
    pass


class Encoder(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, z_channels, in_channels=3, using_sa=True,
                 using_mid_sa=True):
        super().__init__()
        self.nres = len(ch_mult)
        self.num_res_blocks = num_res_blocks
        self.conv_in = nn.Conv2d(in_channels, ch, 3, 1, 1)
        in_mult = (1,) + tuple(ch_mult)
        self.down = nn.ModuleList()
        bin_ = ch
        for i in range(self.nres):
            lvl = Level()
            lvl.block = nn.ModuleList()
            lvl.attn = nn.ModuleList()
            bin_ = ch * in_mult[i]
            bout = ch * ch_mult[i]
            for _ in range(num_res_blocks):
                lvl.block.append(ResnetBlock(bin_, bout))
                bin_ = bout
                if using_sa and i == self.nres - 1:
                    lvl.attn.append(AttnBlock(bin_))
            if i != self.nres - 1:
                lvl.downsample = Downsample(bin_)
            self.down.append(lvl)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(bin_, bin_)
        self.mid.attn_1 = AttnBlock(bin_) if using_mid_sa else nn.Identity()
        self.mid.block_2 = ResnetBlock(bin_, bin_)
        self.norm_out = GN(bin_)
        self.conv_out = nn.Conv2d(bin_, z_channels, 3, 1, 1)

    def forward(self, x):
        h = self.conv_in(x)
        for i in range(self.nres):
            lvl = self.down[i]
            for j in range(self.num_res_blocks):
                h = lvl.block[j](h)
                if len(lvl.attn) > 0:
                    h = lvl.attn[j](h)
            if i != self.nres - 1:
                h = lvl.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, z_channels, out_ch=3, using_sa=True,
                 using_mid_sa=True):
        super().__init__()
        self.nres = len(ch_mult)
        self.num_res_blocks = num_res_blocks
        bin_ = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, bin_, 3, 1, 1)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(bin_, bin_)
        self.mid.attn_1 = AttnBlock(bin_) if using_mid_sa else nn.Identity()
        self.mid.block_2 = ResnetBlock(bin_, bin_)
        ups = [None] * self.nres
        for i in reversed(range(self.nres)):
            lvl = Level()
            lvl.block = nn.ModuleList()
            lvl.attn = nn.ModuleList()
            bout = ch * ch_mult[i]
            for _ in range(num_res_blocks + 1):
                lvl.block.append(ResnetBlock(bin_, bout))
                bin_ = bout
                if using_sa and i == self.nres - 1:
                    lvl.attn.append(AttnBlock(bin_))
            if i != 0:
                lvl.upsample = Upsample(bin_)
            ups[i] = lvl
        self.up = nn.ModuleList(ups)
        self.norm_out = GN(bin_)
        self.conv_out = nn.Conv2d(bin_, out_ch, 3, 1, 1)

    def forward(self, z):
        h = self.conv_in(z)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        for i in reversed(range(self.nres)):
            lvl = self.up[i]
            for j in range(self.num_res_blocks + 1):
                h = lvl.block[j](h)
                if len(lvl.attn) > 0:
                    h = lvl.attn[j](h)
            if i != 0:
                h = lvl.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Phi(nn.Conv2d):
    """phi(u) = (1 - r) u + r (conv3x3(u) + b), r = quant_resi (0.5)."""

    def __init__(self, c, resi):
        super().__init__(c, c, 3, 1, 1)
        self.resi = resi

    def forward(self, u):
        return u * (1 - self.resi) + super().forward(u) * self.resi


class PhiShared(nn.Module):
    def __init__(self, c, resi, K):
        super().__init__()
        self.qresi_ls = nn.ModuleList([Phi(c, resi) for _ in range(K)])


def phi_index_table(S, K=4):
    """Index of the Phi conv used at scale s: argmin |ticks - s/(S-1)| in float64
    (ticks = linspace(1/(3K), 1 - 1/(3K), K)); exact ties are decided by float64 rounding."""
    ticks = np.linspace(1 / 3 / K, 1 - 1 / 3 / K, K)
    return [int(np.argmin(np.abs(ticks - s / (S - 1)))) for s in range(S)]


class MultiScaleQuantizer(nn.Module):
    def __init__(self, vocab, cvae, patch_nums, quant_resi=0.5, share_quant_resi=4, beta=0.25):
        super().__init__()
        self.vocab, self.cvae, self.patch_nums, self.beta = vocab, cvae, tuple(patch_nums), beta
        self.embedding = nn.Embedding(vocab, cvae)
        self.quant_resi = PhiShared(cvae, quant_resi, share_quant_resi)
        self.phi_idx = phi_index_table(len(patch_nums), share_quant_resi)

    def phi(self, s):
        return self.quant_resi.qresi_ls[self.phi_idx[s]]

    def _nearest(self, r):  # r: (N, C)
        e = self.embedding.weight
        d = (r * r).sum(1, keepdim=True) + (e * e).sum(1)[None] - 2 * r @ e.t()
        return d.argmin(1)

    def forward(self, f):
        """Multi-scale residual quantisation (training). Returns f_hat (straight-through),
        vq loss, list of idx (B, n_s), list of the residual vectors seen at each scale."""
        B, C, H, W = f.shape
        S = len(self.patch_nums)
        f_ng = f.detach()
        rest = f_ng.clone()
        f_hat = torch.zeros_like(f_ng)
        loss = 0.0
        idxs, rests = [], []
        for s, pn in enumerate(self.patch_nums):
            r = F.interpolate(rest, size=(pn, pn), mode='area') if s != S - 1 else rest
            rv = r.permute(0, 2, 3, 1).reshape(-1, C)
            idx = self._nearest(rv)
            idxs.append(idx.view(B, pn * pn))
            rests.append(rv)
            h = self.embedding(idx).view(B, pn, pn, C).permute(0, 3, 1, 2)
            if s != S - 1:
                h = F.interpolate(h, size=(H, W), mode='bicubic', align_corners=False)
            h = self.phi(s)(h)
            f_hat = f_hat + h
            rest = rest - h.detach()
            loss = loss + F.mse_loss(f_hat.detach(), f) * self.beta + F.mse_loss(f_hat, f_ng)
        loss = loss / S
        f_hat = (f_hat.detach() - f_ng) + f
        return f_hat, loss, idxs, rests

    @torch.no_grad()
    def idx_to_fhat_list(self, idxs, H):
        """Cumulative f_hat after each scale, given the token pyramid."""
        S = len(self.patch_nums)
        B = idxs[0].shape[0]
        f_hat = torch.zeros(B, self.cvae, H, H, device=idxs[0].device)
        out = []
        for s, pn in enumerate(self.patch_nums):
            h = self.embedding(idxs[s]).view(B, pn, pn, self.cvae).permute(0, 3, 1, 2)
            if s != S - 1:
                h = F.interpolate(h, size=(H, H), mode='bicubic', align_corners=False)
            f_hat = f_hat + self.phi(s)(h)
            out.append(f_hat)
        return out


class VQVAE(nn.Module):
    def __init__(self, vocab=512, cvae=32, ch=32, ch_mult=(1, 2, 2), num_res_blocks=2,
                 patch_nums=(1, 2, 3, 4, 5, 6, 8), quant_resi=0.5, share_quant_resi=4,
                 using_sa=True, using_mid_sa=True):
        super().__init__()
        self.encoder = Encoder(ch, ch_mult, num_res_blocks, cvae, 3, using_sa, using_mid_sa)
        self.quant_conv = nn.Conv2d(cvae, cvae, 3, 1, 1)
        self.quantize = MultiScaleQuantizer(vocab, cvae, patch_nums, quant_resi, share_quant_resi)
        self.post_quant_conv = nn.Conv2d(cvae, cvae, 3, 1, 1)
        self.decoder = Decoder(ch, ch_mult, num_res_blocks, cvae, 3, using_sa, using_mid_sa)

    def forward(self, x):
        f = self.quant_conv(self.encoder(x)).float()
        with torch.autocast(device_type=f.device.type, enabled=False):
            f_hat, vq_loss, idxs, rests = self.quantize(f)
        return self.decoder(self.post_quant_conv(f_hat)), vq_loss, idxs, rests

    @torch.no_grad()
    def img_to_idx(self, x):
        f = self.quant_conv(self.encoder(x))
        _, _, idxs, _ = self.quantize(f)
        return idxs

    def fhat_to_img(self, f_hat):
        """Decoder output before clamping."""
        return self.decoder(self.post_quant_conv(f_hat))

    def generation_state_dict(self):
        sd = self.state_dict()
        out = {k: v for k, v in sd.items()
               if k.startswith(('quantize.embedding', 'quantize.quant_resi', 'post_quant_conv',
                                'decoder.'))}
        # unused training buffer of the official key set (kept so that strict binders find it)
        out['quantize.ema_vocab_hit_SV'] = torch.zeros(len(self.quantize.patch_nums), self.quantize.vocab)
        return out


# ----------------------------------------------------------------------------------------------
# MVAR transformer (SPEC §1.2-1.8, §3)
# ----------------------------------------------------------------------------------------------

def ln(x, eps=1e-6):
    return F.layer_norm(x, (x.shape[-1],), eps=eps)


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


class SelfAttention(nn.Module):
    def __init__(self, C, H):
        super().__init__()
        self.C, self.H, self.hd = C, H, C // H
        self.scale_mul_1H11 = nn.Parameter(torch.full((1, H, 1, 1), 4.0).log())
        self.q_bias = nn.Parameter(torch.zeros(C))
        self.v_bias = nn.Parameter(torch.zeros(C))
        self.register_buffer('zero_k_bias', torch.zeros(C))
        self.mat_qkv = nn.Linear(C, 3 * C, bias=False)
        self.proj = nn.Linear(C, C)

    def forward(self, x, mask=None, use_sdpa=False):
        """x: (R, l, C); mask: bool (l, l), True = allowed, or None (full)."""
        R, l, C = x.shape
        bias = torch.cat((self.q_bias, self.zero_k_bias, self.v_bias))
        qkv = F.linear(x, self.mat_qkv.weight, bias).view(R, l, 3, self.H, self.hd)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)            # (R, H, l, hd)
        temp = self.scale_mul_1H11.clamp_max(LN100).exp()
        q = F.normalize(q, dim=-1, eps=1e-12) * temp
        k = F.normalize(k, dim=-1, eps=1e-12)
        if use_sdpa:
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0)
        else:
            a = (q.float() @ k.float().transpose(-1, -2))
            if mask is not None:
                a = a.masked_fill(~mask, float('-inf'))
            a = a.softmax(dim=-1)
            o = (a @ v.float()).to(v.dtype)
        o = o.transpose(1, 2).reshape(R, l, C)
        return self.proj(o)


class FFN(nn.Module):
    def __init__(self, C, hidden):
        super().__init__()
        self.fc1 = nn.Linear(C, hidden)
        self.fc2 = nn.Linear(hidden, C)

    def forward(self, x):
        return self.fc2(gelu_tanh(self.fc1(x)))


class AdaLNSelfAttn(nn.Module):
    def __init__(self, C, H, mlp_ratio=4.0):
        super().__init__()
        self.C = C
        self.attn = SelfAttention(C, H)
        self.ffn = FFN(C, round(C * mlp_ratio))
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(C, 6 * C))

    def forward(self, x, cond, mask=None, use_sdpa=False):
        g1, g2, s1, s2, b1, b2 = self.ada_lin(cond).view(-1, 1, 6, self.C).unbind(2)
        x = x + self.attn(ln(x) * (1 + s1) + b1, mask, use_sdpa) * g1
        x = x + self.ffn(ln(x) * (1 + s2) + b2) * g2
        return x


class AdaLNBeforeHead(nn.Module):
    def __init__(self, C):
        super().__init__()
        self.C = C
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(C, 2 * C))

    def forward(self, x, cond):
        scale, shift = self.ada_lin(cond).view(-1, 1, 2, self.C).unbind(2)
        return ln(x) * (1 + scale) + shift


def na_window_start(i, P, k):
    return min(max(i - k // 2, 0), P - k)


def na_mask(pn, k):
    """(n, n) bool mask, True where key is in the k x k neighbourhood of the query
    (NATTEN semantics: window shifted inward at the borders, always k*k keys)."""
    n = pn * pn
    m = torch.zeros(n, n, dtype=torch.bool)
    for qi in range(pn):
        for qj in range(pn):
            si, sj = na_window_start(qi, pn, k), na_window_start(qj, pn, k)
            for a in range(si, si + k):
                for b in range(sj, sj + k):
                    m[qi * pn + qj, a * pn + b] = True
    return m


class MVAR(nn.Module):
    def __init__(self, vocab=512, cvae=32, num_classes=10, depth=6, C=192, H=3, mlp_ratio=4.0,
                 patch_nums=(1, 2, 3, 4, 5, 6, 8), kernel_size=5, refine_step=5,
                 cond_drop_rate=0.1):
        super().__init__()
        self.vocab, self.cvae, self.num_classes = vocab, cvae, num_classes
        self.depth, self.C, self.H = depth, C, H
        self.patch_nums = tuple(patch_nums)
        self.S = len(patch_nums)
        self.L = sum(p * p for p in patch_nums)
        self.begin = [sum(p * p for p in patch_nums[:s]) for s in range(self.S)]
        self.kernel_size, self.refine_step = kernel_size, refine_step
        self.cond_drop_rate = cond_drop_rate
        for s in range(refine_step, self.S):
            assert kernel_size % 2 == 1 and kernel_size <= patch_nums[s]

        self.word_embed = nn.Linear(cvae, C)
        self.class_emb = nn.Embedding(num_classes + 1, C)
        self.pos_start = nn.Parameter(torch.zeros(1, 1, C))
        self.pos_1LC = nn.Parameter(torch.zeros(1, self.L, C))
        self.lvl_embed = nn.Embedding(self.S, C)
        lvl = torch.cat([torch.full((p * p,), s, dtype=torch.int64)
                         for s, p in enumerate(patch_nums)]).view(1, self.L)
        self.register_buffer('lvl_1L', lvl)
        self.blocks = nn.ModuleList([AdaLNSelfAttn(C, H, mlp_ratio) for _ in range(depth)])
        self.head_nm = AdaLNBeforeHead(C)
        self.head = nn.Linear(C, vocab)

        # training mask over all L tokens: block-diagonal, NA inside scales >= refine_step
        M = torch.zeros(self.L, self.L, dtype=torch.bool)
        self._scale_masks = []
        for s, p in enumerate(patch_nums):
            b, n = self.begin[s], p * p
            sm = na_mask(p, kernel_size) if s >= refine_step else None
            self._scale_masks.append(sm)
            M[b:b + n, b:b + n] = sm if sm is not None else True
        self.register_buffer('train_mask', M, persistent=False)
        self._init_weights()

    def _init_weights(self):
        std = 0.02
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.trunc_normal_(m.weight, std=std)
        nn.init.trunc_normal_(self.pos_start, std=std)
        nn.init.trunc_normal_(self.pos_1LC, std=std)
        for b in self.blocks:
            b.attn.proj.weight.data.mul_(1 / math.sqrt(2 * self.depth))
            b.ffn.fc2.weight.data.mul_(1 / math.sqrt(2 * self.depth))
            # AdaLN: small gammas at start
            b.ada_lin[1].weight.data.mul_(0.5)
            b.ada_lin[1].bias.data[:2 * self.C].fill_(0.1)
        self.head.weight.data.mul_(0.5)

    def scale_mask(self, s, device):
        m = self._scale_masks[s]
        return None if m is None else m.to(device)

    # ---------------- training (teacher forcing, scale-Markov) ----------------
    def forward_train(self, labels, next_inputs, use_sdpa=True):
        """labels: (B,) int64 in 0..num_classes-1 ; next_inputs: list over s=1..S-1 of
        (B, Cvae, pn_s, pn_s) = area(f_hat_{s-1}, pn_s). Returns logits (B, L, V)."""
        B = labels.shape[0]
        if self.training and self.cond_drop_rate > 0:
            drop = torch.rand(B, device=labels.device) < self.cond_drop_rate
            labels = torch.where(drop, torch.full_like(labels, self.num_classes), labels)
        cond = self.class_emb(labels)                                         # (B, C)
        toks = [cond[:, None, :] + self.pos_start]
        for z in next_inputs:
            toks.append(self.word_embed(z.flatten(2).transpose(1, 2)))
        x = torch.cat(toks, 1) + self.lvl_embed(self.lvl_1L[0])[None] + self.pos_1LC
        mask = self.train_mask
        for b in self.blocks:
            x = b(x, cond, mask, use_sdpa)
        return self.head(self.head_nm(x, cond)).float()

    # ---------------- inference, one scale ----------------
    def step_input(self, s, cond, f_hat=None):
        """Input tokens of scale s. cond: (R, C). f_hat: (B, Cvae, h, w) or None at s=0."""
        b, n = self.begin[s], self.patch_nums[s] ** 2
        lvl_pos = self.lvl_embed.weight[s][None, None] + self.pos_1LC[:, b:b + n]
        if s == 0:
            return cond[:, None, :] + self.pos_start + lvl_pos
        pn = self.patch_nums[s]
        z = F.interpolate(f_hat, size=(pn, pn), mode='area')
        x = self.word_embed(z.flatten(2).transpose(1, 2)) + lvl_pos
        R = cond.shape[0]
        if R != x.shape[0]:
            x = torch.cat([x] * (R // x.shape[0]), 0)
        return x

    def step_logits(self, s, x, cond):
        mask = self.scale_mask(s, x.device)
        for b in self.blocks:
            x = b(x, cond, mask, False)
        return self.head(self.head_nm(x, cond)).float()

    def export_state_dict(self):
        sd = self.state_dict()
        return {k: v for k, v in sd.items() if k != 'train_mask'}


# ----------------------------------------------------------------------------------------------
# Sampling (SPEC §1.9-1.11, §3.2)
# ----------------------------------------------------------------------------------------------

def top_k_top_p_(logits, top_k, top_p):
    """In place on (N, V) float32 logits, as SPEC §1.10."""
    V = logits.shape[-1]
    if top_k > 0:
        thr = logits.topk(min(top_k, V), dim=-1, largest=True, sorted=False)[0].amin(dim=-1, keepdim=True)
        logits.masked_fill_(logits < thr, float('-inf'))
    if top_p > 0:
        sorted_logits, sorted_idx = logits.sort(dim=-1, descending=False)
        rm = sorted_logits.softmax(dim=-1).cumsum(dim=-1) <= (1 - top_p)
        rm[..., -1:] = False
        logits.masked_fill_(rm.scatter(-1, sorted_idx, rm), float('-inf'))
    return logits


@torch.no_grad()
def sample(mvar, vae, labels, cfg=3.0, top_k=0, top_p=0.0, seed=0, trace=None, logit_tok=None,
           forced_idx=None):
    """Generate images. labels: (B,) int64. Returns (f_hat, img_dec (before clamp), idx list).
    trace: optional dict filled with per-scale tensors (teacher-forcing parity data).
    forced_idx: optional list of (B, n_s) indices to use instead of sampling."""
    dev = labels.device
    B = labels.shape[0]
    S = mvar.S
    g = torch.Generator(device=dev)
    g.manual_seed(seed)
    use_cfg = (cfg != 1.0)
    if use_cfg:
        lab2 = torch.cat([labels, torch.full_like(labels, mvar.num_classes)])
    else:
        lab2 = labels
    cond = mvar.class_emb(lab2)
    H = mvar.patch_nums[-1]
    f_hat = torch.zeros(B, mvar.cvae, H, H, device=dev)
    emb = vae.quantize.embedding.weight
    idxs = []
    for s, pn in enumerate(mvar.patch_nums):
        x = mvar.step_input(s, cond, f_hat if s > 0 else None)
        logits = mvar.step_logits(s, x, cond)                                 # (R, n, V)
        if use_cfg:
            t = cfg * s / (S - 1)
            lc, lu = logits[:B], logits[B:]
            mixed = (1 + t) * lc - t * lu
        else:
            lc, lu, mixed = logits, None, logits
        if trace is not None:
            toks = logit_tok[s]
            trace[f'logit_tok.s{s}'] = torch.tensor(toks, dtype=torch.int64)
            trace[f'logits_cond.s{s}'] = lc[:, toks].clone()
            if lu is not None:
                trace[f'logits_uncond.s{s}'] = lu[:, toks].clone()
            trace[f'logits_mixed.s{s}'] = mixed[:, toks].clone()
            trace[f'lse_raw.s{s}'] = logits.logsumexp(-1)
            trace[f'lse_mixed.s{s}'] = mixed.logsumexp(-1)
        if forced_idx is not None:
            idx = forced_idx[s]
        else:
            m = mixed.reshape(-1, mvar.vocab).clone()
            top_k_top_p_(m, top_k, top_p)
            idx = torch.multinomial(m.softmax(-1), 1, generator=g).view(B, pn * pn)
        idxs.append(idx)
        h = emb[idx].view(B, pn, pn, mvar.cvae).permute(0, 3, 1, 2)
        if s != S - 1:
            h = F.interpolate(h, size=(H, H), mode='bicubic', align_corners=False)
        f_hat = f_hat + vae.quantize.phi(s)(h)
        if trace is not None:
            trace[f'idx.s{s}'] = idx.clone()
            trace[f'fhat.s{s}'] = f_hat.clone()
    img = vae.fhat_to_img(f_hat)
    return f_hat, img, idxs


def to_u8(img_dec):
    """(B,3,H,W) decoder output -> uint8 HWC via clamp, (x+1)/2, trunc(255 x) (SPEC §1.13)."""
    y = (img_dec.clamp(-1, 1) + 1) * 0.5
    return (y * 255).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
