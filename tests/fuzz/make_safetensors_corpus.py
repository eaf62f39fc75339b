#!/usr/bin/env python3
"""Writes the seed corpus of tests/fuzz/corpus/safetensors/: small valid files (every dtype,
metadata, empty and scalar tensors, official-looking names) and one malformed file per rule of
the reader (see include/mvar/io/safetensors.hpp). Deterministic; standard library only.

    python3 tests/fuzz/make_safetensors_corpus.py tests/fuzz/corpus/safetensors
"""
import json
import os
import struct
import sys

SIZES = {"F32": 4, "F16": 2, "BF16": 2, "I32": 4, "I64": 8, "U8": 1}


def image(header, data=b"", declared=None, pad=True):
    """u64 LE header length + header + data; `header` is a str (raw) or an object (dumped)."""
    h = header if isinstance(header, str) else json.dumps(header, separators=(",", ":"))
    hb = h.encode()
    if pad:
        hb += b" " * (-len(hb) % 8)
    n = len(hb) if declared is None else declared
    return struct.pack("<Q", n) + hb + data


def tensors(specs, meta=None):
    """specs: [(name, dtype, shape)] laid out back to back; data is a deterministic byte ramp."""
    hdr, off = {}, 0
    if meta is not None:
        hdr["__metadata__"] = meta
    for name, dt, shape in specs:
        n = SIZES[dt]
        for e in shape:
            n *= e
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + n]}
        off += n
    return hdr, bytes((i * 37 + 11) & 0xFF for i in range(off))


def main(out):
    os.makedirs(out, exist_ok=True)
    files = {}

    # ---- valid ----
    files["valid_empty_object"] = image({})
    h, d = tensors([("t", "F32", [2])])
    files["valid_one_f32"] = image(h, d)
    h, d = tensors([(f"x.{dt.lower()}", dt, [2, 3]) for dt in SIZES])
    files["valid_every_dtype"] = image(h, d)
    h, d = tensors([("w", "F32", [3, 4])], meta={"format": "pt", "model": "mvar_d16"})
    files["valid_metadata"] = image(h, d)
    h, d = tensors([("empty", "F32", [0, 7]), ("scalar", "F32", []), ("u", "U8", [5])])
    files["valid_empty_and_scalar"] = image(h, d)
    h, d = tensors([("class_emb.weight", "F32", [11, 8]), ("pos_start", "F32", [1, 1, 8]),
                    ("blocks.0.attn.mat_qkv.weight", "F32", [24, 8]), ("blocks.0.attn.q_bias", "F32", [8]),
                    ("blocks.0.ffn.fc1.weight", "BF16", [32, 8]), ("head.weight", "F16", [16, 8]),
                    ("lvl_1L", "I64", [1, 1, 10])], meta={"config": '{"depth": 1, "width": 8}'})
    files["valid_official_names"] = image(h, d)
    h, d = tensors([("t", "F32", [2])])
    files["valid_unpadded_header"] = image(h, d, pad=False)
    h, d = tensors([("t", "F32", [2])])
    files["valid_trailing_bytes"] = image(h, d + b"\0" * 16)  # unused data after the last tensor
    h, d = tensors([("caf\u00e9.\u6743\u91cd", "F32", [1])])
    files["valid_unicode_name"] = image(h, d)
    files["valid_gap_between_tensors"] = image(
        {"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
         "b": {"dtype": "U8", "shape": [2], "data_offsets": [6, 8]}}, bytes(8))

    # ---- malformed: one per validation rule ----
    ok = {"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    files["bad_empty_file"] = b""
    files["bad_short_prefix"] = b"\x10\x00\x00\x00\x00"
    files["bad_length_past_eof"] = image(ok, bytes(8), declared=1 << 30)
    files["bad_length_wraps"] = image(ok, bytes(8), declared=(1 << 64) - 3)
    files["bad_length_too_short"] = image("{}", declared=1)
    files["bad_header_over_100mb"] = image(ok, bytes(8), declared=100_000_001)  # F10: the cap, from the length field
    files["bad_not_json"] = image("{not json", bytes(8))
    files["bad_json_array"] = image("[1,2,3]")
    files["bad_json_truncated"] = image('{"t":{"dtype":"F32","sha', pad=False)
    files["bad_duplicate_name"] = image('{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
                                        '"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', bytes(8))
    files["bad_unknown_dtype"] = image({"t": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}, bytes(2))
    files["bad_dtype_number"] = image({"t": {"dtype": 4, "shape": [2], "data_offsets": [0, 8]}}, bytes(8))
    files["bad_missing_shape"] = image({"t": {"dtype": "F32", "data_offsets": [0, 8]}}, bytes(8))
    files["bad_negative_extent"] = image({"t": {"dtype": "F32", "shape": [2, -1], "data_offsets": [0, 8]}}, bytes(8))
    files["bad_float_extent"] = image({"t": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}}, bytes(8))
    files["bad_huge_extent"] = image({"t": {"dtype": "F32", "shape": [1 << 63], "data_offsets": [0, 8]}}, bytes(8))
    files["bad_shape_overflow"] = image({"t": {"dtype": "F32", "shape": [1 << 32, 1 << 32], "data_offsets": [0, 8]}}, bytes(8))
    # F2: a zero extent does not excuse huge other extents (each ≤ 2^40, their product bounded).
    files["bad_zero_extent_huge_dims"] = image({"t": {"dtype": "F32", "shape": [0, 1 << 62, 1 << 62], "data_offsets": [0, 0]}})
    files["bad_zero_extent_product_overflows"] = image({"t": {"dtype": "F32", "shape": [0, 1 << 40, 1 << 40], "data_offsets": [0, 0]}})
    files["bad_extent_above_2_40"] = image({"t": {"dtype": "U8", "shape": [(1 << 40) + 1, 0], "data_offsets": [0, 0]}})
    files["valid_zero_extent_small_dims"] = image({"a": {"dtype": "F32", "shape": [0, 3, 5], "data_offsets": [0, 0]},
                                                   "b": {"dtype": "I64", "shape": [4096, 0], "data_offsets": [0, 0]}})
    files["bad_offsets_past_buffer"] = image({"t": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, bytes(8))
    files["bad_offsets_near_2_64"] = image({"t": {"dtype": "F32", "shape": [2], "data_offsets": [(1 << 64) - 8, (1 << 64) - 1]}}, bytes(8))
    files["bad_begin_after_end"] = image({"t": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}}, bytes(8))
    files["bad_negative_offset"] = image({"t": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}}, bytes(8))
    files["bad_one_offset"] = image({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0]}}, bytes(8))
    files["bad_span_mismatch"] = image({"t": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, bytes(8))
    files["bad_overlap"] = image({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                  "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12))
    files["bad_nested_overlap"] = image({"a": {"dtype": "U8", "shape": [16], "data_offsets": [0, 16]},
                                         "b": {"dtype": "U8", "shape": [2], "data_offsets": [6, 8]}}, bytes(16))
    files["bad_metadata_value"] = image({"__metadata__": {"x": 1}})
    files["bad_metadata_array"] = image({"__metadata__": ["x"]})
    files["bad_entry_not_object"] = image({"t": [1, 2]})
    files["bad_deep_nesting"] = image('{"t":' + "[" * 4000 + "]" * 4000 + "}")
    h, d = tensors([("t", "F32", [2])])
    files["bad_truncated_data"] = image(h, d)[:-3]

    for name, blob in sorted(files.items()):
        with open(os.path.join(out, name + ".safetensors"), "wb") as f:
            f.write(blob)
    print(f"wrote {len(files)} files to {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus", "safetensors"))
