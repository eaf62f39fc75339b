#!/usr/bin/env python3
"""Convert an official VAR / MVAR / VQVAE PyTorch checkpoint to safetensors (official key names).

    python3 tools/convert_checkpoint.py var_d16.pth var_d16.safetensors [--dtype fp32|bf16|keep]
    python3 tools/convert_checkpoint.py mvar-finetune-d20.pth mvar_d20.safetensors --dtype bf16
    python3 tools/convert_checkpoint.py vae_ch160v4096z32.pth vae.safetensors

Recognised inputs (anything else is refused with the reason):
  * VAR / MVAR transformer: a plain state dict (var_d16.pth …) or MVAR's wrapper dict whose key
    "mvar_wo_ddp" holds it (mvar-d16.pth, mvar-finetune-d*.pth). Every key must be one of the
    official VAR names (docs/pth.md); `attn_bias_for_masking` (training-only mask, 4·L² bytes) is
    dropped. Other entries of the wrapper dict are ignored.
  * VQVAE (vae_ch160v4096z32.pth): only what generation needs is kept — `decoder.*`,
    `post_quant_conv.*`, `quantize.embedding.weight`, `quantize.quant_resi.*`; the encoder,
    `quant_conv.*` and the unused `quantize.ema_vocab_hit_SV` buffer are dropped (--keep-all keeps them).

Floating-point tensors are written as float32 (default), bfloat16 or their stored dtype
(--dtype keep); integer buffers (`lvl_1L`) stay int64.

Safety: the pickle is read with torch.load(weights_only=True) where this torch has it. Where that
refuses a legitimate file (torch 1.13's weights_only rejects plain floats such as MVAR's "lr"), or
torch predates it, the zip is read by our own Unpickler that resolves only the allow-list
(collections.OrderedDict, torch._utils._rebuild_tensor_v2/_rebuild_parameter, torch.{Float,Half,
BFloat16,Long,Int}Storage) to our own tensor builders — never torch.load(pickle_module=...), which
torch 1.13 silently ignores. Nothing in the file can run code. Needs only Python 3 and torch; the
safetensors file is written with struct + json (the layout mvar's reader validates), atomically.
"""
import argparse
import collections
import io
import json
import os
import pickle
import re
import struct
import sys
import zipfile

try:
    import torch
except ImportError:  # pragma: no cover - reported to the user
    sys.exit("convert_checkpoint.py needs PyTorch (Debian: apt-get install python3-torch)")

ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch", "FloatStorage"),
    ("torch", "HalfStorage"),
    ("torch", "BFloat16Storage"),
    ("torch", "LongStorage"),
    ("torch", "IntStorage"),
}


_STORAGE_DTYPES = {"FloatStorage": torch.float32, "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
                   "LongStorage": torch.int64, "IntStorage": torch.int32}


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    # storage is the flat 1-D tensor made by persistent_load; as_strided checks the bounds.
    return torch.as_strided(storage, tuple(size), tuple(stride), storage_offset)


def _rebuild_parameter(data, requires_grad=False, hooks=None):
    return data


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only ALLOWED_GLOBALS, to our own tensor builders: nothing named in the file runs."""

    def __init__(self, f, archive, prefix):
        super().__init__(f, encoding="utf-8")
        self._archive, self._prefix, self._storages = archive, prefix, {}

    def find_class(self, module, name):
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a checkpoint")
        if module == "torch":
            return _STORAGE_DTYPES[name]
        return {"OrderedDict": collections.OrderedDict, "_rebuild_tensor_v2": _rebuild_tensor,
                "_rebuild_parameter": _rebuild_parameter}[name]

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], torch.dtype)):
            raise pickle.UnpicklingError(f"persistent id {pid!r} is not ('storage', type, key, location, numel)")
        _, dtype, key, _location, numel = pid
        if key not in self._storages:
            raw = bytearray(self._archive.read(f"{self._prefix}data/{key}"))
            t = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
            if t.numel() != numel:
                raise pickle.UnpicklingError(f"storage '{key}' declares {numel} elements but holds {t.numel()}")
            self._storages[key] = t
        return self._storages[key]


def _restricted_load(path):
    # Not torch.load(pickle_module=...): torch 1.13 silently replaces pickle_module by `pickle`
    # when weights_only is False, i.e. the restriction would not apply.
    with zipfile.ZipFile(path) as z:
        pkl = [n for n in z.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")]
        if len(pkl) != 1:
            raise pickle.UnpicklingError(f"{path}: not a torch.save zip checkpoint (no single <archive>/data.pkl)")
        prefix = pkl[0][: -len("data.pkl")]
        if prefix + "byteorder" in z.namelist() and z.read(prefix + "byteorder") != b"little":
            raise pickle.UnpicklingError(f"{path}: only little-endian checkpoints are supported")
        return _RestrictedUnpickler(io.BytesIO(z.read(pkl[0])), z, prefix).load()


def load_checkpoint(path):
    """torch.load(weights_only=True) where it works; else our own allow-listed unpickler."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (TypeError, pickle.UnpicklingError):  # no weights_only (torch < 1.13), or 1.13 refusing BINFLOAT
        pass
    if not zipfile.is_zipfile(path):
        raise pickle.UnpicklingError(f"{path}: a legacy (non-zip) checkpoint this torch cannot load safely")
    return _restricted_load(path)


# Official VAR state-dict names (SPEC §1.2); MVAR checkpoints use exactly the same set (§3.4).
_VAR_GLOBAL = {"pos_start", "pos_1LC", "lvl_1L", "attn_bias_for_masking", "word_embed.weight",
               "word_embed.bias", "class_emb.weight", "lvl_embed.weight", "head_nm.ada_lin.1.weight",
               "head_nm.ada_lin.1.bias", "head.weight", "head.bias"}
_VAR_BLOCK = {"attn.scale_mul_1H11", "attn.q_bias", "attn.v_bias", "attn.zero_k_bias", "attn.mat_qkv.weight",
              "attn.proj.weight", "attn.proj.bias", "ffn.fc1.weight", "ffn.fc1.bias", "ffn.fc2.weight",
              "ffn.fc2.bias", "ada_lin.1.weight", "ada_lin.1.bias"}
_VAR_REQUIRED = _VAR_GLOBAL - {"attn_bias_for_masking"}
_VAR_DROP = {"attn_bias_for_masking"}
_VAE_MARKERS = {"quantize.embedding.weight", "post_quant_conv.weight", "decoder.conv_in.weight"}
_VAE_KEEP = re.compile(r"^(decoder\.|post_quant_conv\.|quantize\.embedding\.weight$|quantize\.quant_resi\.)")
_VAE_ALL = re.compile(r"^(encoder\.|decoder\.|quant_conv\.|post_quant_conv\.|quantize\.)")


class ConvertError(Exception):
    pass


def _check_var(sd, source):
    blocks = collections.defaultdict(set)
    unknown = []
    for k in sd:
        m = re.fullmatch(r"blocks\.(\d+)\.(.+)", k)
        if m and m.group(2) in _VAR_BLOCK:
            blocks[int(m.group(1))].add(m.group(2))
        elif k not in _VAR_GLOBAL:
            unknown.append(k)
    if unknown:
        raise ConvertError(f"{source}: not a VAR/MVAR state dict: unknown keys {unknown[:5]}"
                           + (f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else ""))
    missing = sorted(_VAR_REQUIRED - set(sd))
    depth = len(blocks)
    if sorted(blocks) != list(range(depth)) or depth == 0:
        raise ConvertError(f"{source}: VAR blocks are not numbered 0..depth-1: {sorted(blocks)[:8]}")
    for i, have in sorted(blocks.items()):
        missing += [f"blocks.{i}.{n}" for n in sorted(_VAR_BLOCK - have)]
    if missing:
        raise ConvertError(f"{source}: VAR/MVAR state dict lacks {missing[:5]}")
    return depth


def classify(obj, source):
    """Returns (kind, state_dict): kind is 'mvar', 'var' or 'vae'."""
    if not isinstance(obj, dict):
        raise ConvertError(f"{source}: holds a {type(obj).__name__}, not a dict")
    kind = "var"
    if "mvar_wo_ddp" in obj:
        kind, obj = "mvar", obj["mvar_wo_ddp"]
        if not isinstance(obj, dict):
            raise ConvertError(f"{source}: 'mvar_wo_ddp' is a {type(obj).__name__}, not a state dict")
    non_tensors = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if non_tensors:
        raise ConvertError(f"{source}: state dict entries {non_tensors[:5]} are not tensors")
    keys = set(obj)
    if kind == "var" and _VAE_MARKERS <= keys:
        unknown = [k for k in obj if not _VAE_ALL.match(k)]
        if unknown:
            raise ConvertError(f"{source}: not a VQVAE state dict: unknown keys {unknown[:5]}")
        return "vae", obj
    if kind == "var" and not ({"pos_start", "head.weight"} & keys):
        raise ConvertError(f"{source}: neither a VAR/MVAR key set (pos_start, blocks.*, head.*) nor a VQVAE "
                           f"key set (encoder.*, decoder.*, quantize.*); first keys: {sorted(keys)[:5]}")
    _check_var(obj, source)
    return kind, obj


_ST_DTYPE = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64",
             torch.int32: "I32", torch.uint8: "U8"}


def _raw_bytes(t):
    t = t.detach().contiguous().cpu()
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.view(torch.int16)
    a = t.numpy()
    if a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and sys.byteorder == "big"):
        a = a.byteswap()
    return a.tobytes()


def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, tensor) in file order. Header padded with spaces to 8 bytes."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, t in tensors:
        if t.dtype not in _ST_DTYPE:
            raise ConvertError(f"tensor '{name}' has dtype {t.dtype}, which safetensors output does not support here")
        raw = _raw_bytes(t)
        header[name] = {"dtype": _ST_DTYPE[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(h)))
            f.write(h)
            for b in blobs:
                f.write(b)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def convert(src, dst, dtype="fp32", keep_all=False):
    kind, sd = classify(load_checkpoint(src), os.path.basename(src))
    out = []
    for name, t in sd.items():
        if kind in ("var", "mvar") and name in _VAR_DROP and not keep_all:
            continue
        if kind == "vae" and not keep_all and not _VAE_KEEP.match(name):
            continue
        if t.is_floating_point() and dtype != "keep":
            t = t.to(torch.float32 if dtype == "fp32" else torch.bfloat16)
        out.append((name, t))
    meta = {"format": "pt", "source": os.path.basename(src), "kind": kind, "dtype": dtype}
    write_safetensors(dst, out, meta)
    return kind, len(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input", help="official .pth checkpoint (VAR, MVAR or VQVAE)")
    ap.add_argument("output", help="safetensors file to write")
    ap.add_argument("--dtype", choices=["fp32", "bf16", "keep"], default="fp32",
                    help="dtype of floating-point tensors (integers are kept)")
    ap.add_argument("--keep-all", action="store_true",
                    help="keep training-only tensors (attn_bias_for_masking, VAE encoder, ...)")
    args = ap.parse_args(argv)
    try:
        kind, n = convert(args.input, args.output, args.dtype, args.keep_all)
    except (ConvertError, pickle.UnpicklingError, RuntimeError, OSError) as e:
        print(f"convert_checkpoint.py: error: {e}", file=sys.stderr)
        return 1
    print(f"{args.input}: {kind} checkpoint, wrote {n} tensors ({args.dtype}) to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
