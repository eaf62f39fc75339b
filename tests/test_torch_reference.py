#!/usr/bin/env python3
"""CTest check: the plain-PyTorch reference (bench/torch_reference.py) reproduces the fixtures.

Usage: test_torch_reference.py [FIXTURE_DIR]   (default: tests/fixtures next to this file)
Exit 0 = pass, 1 = mismatch, 77 = skipped (no PyTorch/NumPy available; CTest SKIP_RETURN_CODE).
If the running interpreter lacks torch (e.g. a pyenv shim), /usr/bin/python3 is tried once.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

try:
    import numpy  # noqa: F401
    import torch
except ImportError:
    if os.path.exists("/usr/bin/python3") and sys.executable != "/usr/bin/python3" \
            and not os.environ.get("MVAR_TORCHREF_REEXEC"):
        os.environ["MVAR_TORCHREF_REEXEC"] = "1"
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    print("SKIP: PyTorch/NumPy not importable by", sys.executable)
    sys.exit(77)

sys.path.insert(0, os.path.join(os.path.dirname(HERE), "bench"))
import torch_reference  # noqa: E402

fixdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "fixtures")
torch.set_num_threads(1)
ok, _ = torch_reference.run_check(fixdir, verbose=True)
print("torch reference check:", "PASSED" if ok else "FAILED")
sys.exit(0 if ok else 1)
