#!/usr/bin/env python3
"""Regenerates tests/pth/malicious/*.pth: real torch.save files whose pickles call code on load
(committed, a few hundred bytes each; test_pth.cpp checks each is refused, naming the global).
Saving them runs nothing; *loading* them with plain torch.load(weights_only=False) would.

    python3 tests/pth/make_malicious.py
"""
import collections
import os

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "malicious")


class Call:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def main():
    os.makedirs(OUT, exist_ok=True)
    sd = collections.OrderedDict(pos_start=torch.zeros(1, 1, 4))
    # 1. the classic: os.system (pickled as posix.system on Linux) as a state-dict value
    torch.save(collections.OrderedDict(sd, head=Call(os.system, "echo pwned")), os.path.join(OUT, "os_system.pth"))
    # 2. builtins.eval hidden inside MVAR's wrapper, next to a valid state dict
    torch.save({"mvar_wo_ddp": sd, "args": Call(eval, "__import__('os').getcwd()")}, os.path.join(OUT, "wrapper_eval.pth"))
    # 3. a nested call: getattr(torch._utils, "_rebuild_tensor_v2") smuggled through builtins.getattr
    torch.save({"pos_start": Call(getattr, Call(__import__, "torch._utils"), "_rebuild_tensor_v2")},
               os.path.join(OUT, "builtins_getattr.pth"))
    for f in sorted(os.listdir(OUT)):
        print(f, os.path.getsize(os.path.join(OUT, f)), "bytes")


if __name__ == "__main__":
    main()
