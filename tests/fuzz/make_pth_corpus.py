#!/usr/bin/env python3
"""Writes the seed corpus of tests/fuzz/corpus/pth/: small torch.save-format checkpoints (zip of
stored entries + protocol-2 pickle) made WITHOUT torch — stand-in `torch` modules are registered so
that Python's own pickler writes the same opcodes torch.save does (GLOBAL collections.OrderedDict,
torch._utils._rebuild_tensor_v2, BINPERSID ('storage', torch.FloatStorage, key, 'cpu', numel),
BUILD with _metadata) — plus malformed variants: one per rule of io/zip.hpp, io/pickle.hpp and
io/pth.hpp that a seed can reach. Deterministic; standard library only.

    python3 tests/fuzz/make_pth_corpus.py tests/fuzz/corpus/pth
"""
import collections
import io
import os
import pickle
import struct
import sys
import types
import warnings
import zipfile

# ---- stand-in torch ----------------------------------------------------------------------------
torch = types.ModuleType("torch")
torch_utils = types.ModuleType("torch._utils")
torch._utils = torch_utils
sys.modules["torch"] = torch
sys.modules["torch._utils"] = torch_utils

ELEM = {}
for name, size in [("FloatStorage", 4), ("HalfStorage", 2), ("BFloat16Storage", 2), ("LongStorage", 8),
                   ("IntStorage", 4), ("ByteStorage", 1)]:
    cls = type(name, (), {"__module__": "torch"})
    setattr(torch, name, cls)
    ELEM[name] = (cls, size)


def _rebuild_tensor_v2(*args):
    raise AssertionError("never called")


def _rebuild_parameter(*args):
    raise AssertionError("never called")


_rebuild_tensor_v2.__module__ = _rebuild_parameter.__module__ = "torch._utils"
torch_utils._rebuild_tensor_v2 = _rebuild_tensor_v2
torch_utils._rebuild_parameter = _rebuild_parameter


class Storage:
    def __init__(self, key, kind, numel, data=None):
        self.key, self.kind, self.numel = key, kind, numel
        size = ELEM[kind][1]
        self.data = data if data is not None else bytes((i * 29 + 7) & 0xFF for i in range(numel * size))


class Tensor:
    def __init__(self, storage, offset, size, stride, parameter=False, extra_arg=False):
        self.s, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)
        self.parameter, self.extra_arg = parameter, extra_arg

    def __reduce_ex__(self, proto):
        args = (self.s, self.offset, self.size, self.stride, False, collections.OrderedDict())
        if self.extra_arg:
            args = args + (None,)
        t = (_rebuild_tensor_v2, args)
        if self.parameter:
            return (_rebuild_parameter, (RawReduce(t), False, collections.OrderedDict()))
        return t


class RawReduce:
    def __init__(self, rv):
        self.rv = rv

    def __reduce_ex__(self, proto):
        return self.rv


class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", ELEM[obj.kind][0], obj.key, "cpu", obj.numel)
        return None


def dense(shape):
    stride, acc = [], 1
    for n in reversed(shape):
        stride.append(acc)
        acc *= n
    return list(reversed(stride)), acc


def state_dict(specs, meta=True):
    """specs: [(name, kind, shape)] each on its own storage."""
    sd, storages = collections.OrderedDict(), []
    for i, (name, kind, shape) in enumerate(specs):
        stride, n = dense(shape)
        s = Storage(str(i), kind, n)
        storages.append(s)
        sd[name] = Tensor(s, 0, shape, stride)
    if meta:
        sd._metadata = collections.OrderedDict([("", {"version": 1})])
    return sd, storages


def pkl(obj):
    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def archive(obj, storages, root="archive", extra=None, skip=(), method=zipfile.ZIP_STORED, version=b"3\n",
            byteorder=b"little", data_override=None):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as z:
        def put(name, data):
            if name not in skip:
                zi = zipfile.ZipInfo(f"{root}/{name}", date_time=(2020, 1, 1, 0, 0, 0))
                zi.compress_type = method
                z.writestr(zi, data)
        put("data.pkl", pkl(obj) if data_override is None else data_override)
        if byteorder is not None:
            put("byteorder", byteorder)
        seen = set()
        for s in storages:
            if s.key not in seen:
                seen.add(s.key)
                put(f"data/{s.key}", s.data)
        put("version", version)
        put(".data/serialization_id", b"0123456789")
        for name, data in (extra or {}).items():
            put(name, data)
    return buf.getvalue()


def main(out):
    os.makedirs(out, exist_ok=True)
    files = {}

    # ---- valid ----
    sd, st = state_dict([("w", "FloatStorage", [2, 3])])
    files["valid_one_tensor"] = archive(sd, st)
    sd, st = state_dict([("class_emb.weight", "FloatStorage", [5, 4]), ("blocks.0.attn.q_bias", "FloatStorage", [4]),
                         ("blocks.0.ffn.fc1.weight", "BFloat16Storage", [8, 4]), ("head.weight", "HalfStorage", [6, 4]),
                         ("lvl_1L", "LongStorage", [1, 3]), ("idx", "IntStorage", [2])])
    files["valid_every_dtype"] = archive(sd, st)
    sd, st = state_dict([("w", "FloatStorage", [3, 2])])
    files["valid_mvar_wo_ddp"] = archive({"mvar_wo_ddp": sd, "epoch": 3, "args": "x"}, st)
    # Shared storage: two views of one storage, one transposed (non-contiguous → dense copy).
    s = Storage("0", "FloatStorage", 12)
    sd = collections.OrderedDict([("a", Tensor(s, 0, [3, 4], [4, 1])), ("a_t", Tensor(s, 0, [4, 3], [1, 4])),
                                  ("tail", Tensor(s, 8, [4], [1])), ("empty", Tensor(s, 12, [0, 5], [5, 1])),
                                  ("scalar", Tensor(s, 3, [], []))])
    files["valid_shared_and_strided"] = archive(sd, [s])
    s = Storage("0", "FloatStorage", 4)
    files["valid_parameter_and_v7"] = archive(collections.OrderedDict(
        [("p", Tensor(s, 0, [4], [1], parameter=True)), ("q", Tensor(s, 0, [2], [2], extra_arg=True))]), [s])
    sd, st = state_dict([("w", "FloatStorage", [2])])
    files["valid_nested_dict"] = archive({"encoder": sd, "meta": [1, 2.5, None, True, "x", -(1 << 40)]}, st)
    sd, st = state_dict([("w", "FloatStorage", [2])], meta=False)
    files["valid_no_byteorder_plain_dict"] = archive(dict(sd), st, byteorder=None)
    s = Storage("0", "FloatStorage", 1)
    files["valid_stride0_broadcast"] = archive(collections.OrderedDict([("b", Tensor(s, 0, [3, 4], [0, 0]))]), [s])

    # ---- malformed ----
    sd, st = state_dict([("w", "FloatStorage", [2, 3])])
    good = archive(sd, st)
    files["bad_truncated_zip"] = good[: len(good) // 2]
    files["bad_no_end_record"] = good[:-22]
    files["bad_deflated"] = archive(sd, st, method=zipfile.ZIP_DEFLATED)
    files["bad_no_data_pkl"] = archive(sd, st, skip=("data.pkl",))
    files["bad_missing_storage"] = archive(sd, st, skip=("data/0",))
    files["bad_storage_size"] = archive(sd, [Storage("0", "FloatStorage", 6, data=bytes(20))])
    files["bad_big_endian"] = archive(sd, st, byteorder=b"big")
    files["bad_version_text"] = archive(sd, st, version=b"three")
    s = Storage("0", "FloatStorage", 4)
    files["bad_tensor_past_storage"] = archive(collections.OrderedDict([("w", Tensor(s, 2, [2, 2], [2, 1]))]), [s])
    files["bad_offset_past_storage"] = archive(collections.OrderedDict([("w", Tensor(s, 9, [0], [1]))]), [s])
    files["bad_rank_mismatch"] = archive(collections.OrderedDict([("w", Tensor(s, 0, [2, 2], [1]))]), [s])
    files["bad_huge_stride"] = archive(collections.OrderedDict([("w", Tensor(s, 0, [2, 2], [1 << 62, 1]))]), [s])
    files["bad_not_a_dict"] = archive([1, 2, 3], [])
    files["bad_disallowed_global"] = archive({"w": RawReduce((os.system, ("true",)))}, [])
    files["bad_bytestorage"] = archive(collections.OrderedDict([("w", Tensor(Storage("0", "ByteStorage", 4), 0, [4], [1]))]),
                                       [Storage("0", "ByteStorage", 4)])
    files["bad_pickle_truncated"] = archive(sd, st, data_override=pkl(sd)[:-5])
    files["bad_pickle_garbage"] = archive(sd, st, data_override=b"\x80\x02\xff\xfe\xfd")
    files["bad_legacy_pickle"] = pkl({"w": 1})
    files["bad_int_beyond_64_bits"] = archive({"w": Tensor(s, 0, [4], [1]), "n": 1 << 70}, [s])
    sd2 = collections.OrderedDict([("w", Tensor(s, 0, [4], [1]))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name we write on purpose
        files["bad_duplicate_entry"] = archive(sd2, [s], extra={"data/0": s.data})
    # Fuzz findings F3, F4, F8 (docs/reliability.md), kept as regression seeds once fixed.
    s = Storage("0", "FloatStorage", 1)
    files["bad_dense_copy_size_wraps"] = archive(
        collections.OrderedDict([("b", Tensor(s, 0, [1 << 31, 1 << 31], [0, 0]))]), [s])
    s = Storage("0", "LongStorage", 1)
    files["bad_dense_copy_unbounded_alloc"] = archive(
        collections.OrderedDict([("b", Tensor(s, 0, [1 << 20, 1 << 20, 1 << 10], [0, 0, 0]))]), [s])
    s = Storage("0", "FloatStorage", 1)
    t = Tensor(s, 0, [1 << 14, 1 << 14], [0, 0])  # 1 GiB once densified, shared under 64 names
    files["bad_shared_broadcast_amplification"] = archive(collections.OrderedDict((f"w{i}", t) for i in range(64)), [s])

    # Issue #23 item 9: training metadata beside MVAR's wrapper loads (unknown globals become opaque
    # placeholders, never called); the same objects inside the state dict are refused.
    import argparse
    import pathlib
    meta = {"args": argparse.Namespace(lr=1e-4, depth=2, out=pathlib.PurePosixPath("/tmp/run")),
            "path": pathlib.PurePosixPath("/data/x"), "evil": RawReduce((os.system, ("true",)))}
    try:
        import numpy as np
        meta["best"], meta["step"] = np.float32(3.25), np.int64(7)
    except ImportError:
        pass
    sd, st = state_dict([("w", "FloatStorage", [3, 2])])
    files["valid_training_metadata"] = archive({"mvar_wo_ddp": sd, **meta}, st)
    inside = collections.OrderedDict(sd)
    inside["args"] = meta["args"]
    files["bad_opaque_in_state_dict"] = archive({"mvar_wo_ddp": inside}, st)
    files["bad_opaque_in_state_dict_list"] = archive({"mvar_wo_ddp": collections.OrderedDict(sd, hist=[1, meta["path"]])}, st)
    # A dict key given twice (a pickler never writes that: crafted; refused, not replaced).
    files["bad_duplicate_dict_key"] = archive(sd, st, data_override=b"\x80\x02}(X\x01\x00\x00\x00wK\x01X\x01\x00\x00\x00wK\x02u.")
    # The classic end record claims disk 1 although the zip64 record says disk 0 (multi-disk).
    sd, st = state_dict([("w", "FloatStorage", [2, 3])])
    good = bytearray(archive(sd, st))
    good[-22 + 4] = 1
    files["bad_end_record_other_disk"] = bytes(good)

    for name, blob in sorted(files.items()):
        with open(os.path.join(out, name + ".pth"), "wb") as f:
            f.write(blob)
    print(f"wrote {len(files)} files to {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus", "pth"))
