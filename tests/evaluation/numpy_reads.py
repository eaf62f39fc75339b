#!/usr/bin/env python3
"""numpy reads mvar's .npz files: `numpy.load(f)["arr_0"]` (uint8 [N, H, W, 3]), the int64 labels
`arr_1` and the raw `settings.json` member, plain and zip64; Python's zipfile checks every CRC.

    numpy_reads.py --sample NPZ_SAMPLE_EXE   # runs tests/evaluation/npz_sample, checks its files
    numpy_reads.py FILE.npz [N SIDE]         # an evaluation output: shapes, dtypes, settings
Exit 77 (CTest: skipped) when numpy is missing.
"""
import json
import os
import subprocess
import sys
import tempfile
import zipfile

try:
    import numpy as np
except ImportError:
    print("numpy is not installed: skipped")
    sys.exit(77)


def check_sample(exe):
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([exe, d], check=True)
        want0 = ((7 * np.arange(6 * 5 * 5 * 3) + 3) % 251).astype(np.uint8).reshape(6, 5, 5, 3)
        for name in ("plain.npz", "zip64.npz"):
            path = os.path.join(d, name)
            with zipfile.ZipFile(path) as z:
                assert z.testzip() is None, f"{name}: CRC mismatch"
                assert [i.compress_type for i in z.infolist()] == [zipfile.ZIP_STORED] * 3
            with np.load(path) as f:
                a0, a1 = f["arr_0"], f["arr_1"]
                assert a0.dtype == np.uint8 and a0.shape == (6, 5, 5, 3), (a0.dtype, a0.shape)
                assert np.array_equal(a0, want0), f"{name}: arr_0 differs"
                assert a1.dtype == np.int64 and np.array_equal(a1, 10 * np.arange(6) - 20), f"{name}: arr_1 {a1}"
                assert json.loads(f["settings.json"]) == {"sample": True}
            print(f"numpy reads {name}: ok")


def check_output(path, n=None, side=None):
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None, "CRC mismatch"
    with np.load(path) as f:
        a0, a1 = f["arr_0"], f["arr_1"]
        s = json.loads(f["settings.json"])
    assert a0.dtype == np.uint8 and a0.ndim == 4 and a0.shape[3] == 3, (a0.dtype, a0.shape)
    assert a1.dtype == np.int64 and a1.shape == (a0.shape[0],)
    assert s["images"]["end"] - s["images"]["begin"] == a0.shape[0]
    assert a0.shape[1] == a0.shape[2] == s["image"]["side"]
    if n is not None:
        assert a0.shape == (int(n), int(side), int(side), 3), a0.shape
    print(f"numpy reads {path}: arr_0 {a0.shape} {a0.dtype}, labels {np.bincount(a1).tolist()}, "
          f"mean pixel {a0.mean():.2f}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--sample":
        check_sample(sys.argv[2])
    elif len(sys.argv) in (2, 4):
        check_output(*sys.argv[1:])
    else:
        sys.exit(__doc__)
