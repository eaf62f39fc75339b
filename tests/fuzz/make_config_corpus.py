#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_config (tests/fuzz/corpus/config/): valid config.json files (the
default model's, the fixtures' formats, a VAR one) and one bad_* file per rule of
model/model_description.hpp. Seeds named valid_* must load, bad_* must be refused (checked by
test_model_description). Usage: make_config_corpus.py <repo root>"""
import copy, json, os, sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
out = os.path.join(root, "tests", "fuzz", "corpus", "config")
os.makedirs(out, exist_ok=True)
base = json.load(open(os.path.join(root, "models", "fashion_mnist", "config.json")))
for k in ("training", "evaluation"):
    base.pop(k, None)

def put(name, obj=None, text=None):
    with open(os.path.join(out, name), "w") as f:
        f.write(text if text is not None else json.dumps(obj, indent=0))

def variant(**changes):
    j = copy.deepcopy(base)
    for k, v in changes.items():
        if v is KeyError:
            j.pop(k, None)
        else:
            j[k] = v
    return j

put("valid_default_model.json", base)
put("valid_tiny_mvar.json", variant(depth=2, embed_dim=128, num_heads=2, head_dim=64, ffn_hidden=512, num_classes=1000,
                                    null_class=1000, class_names=KeyError, patch_nums=[1, 2, 3, 4, 5, 6, 8, 10, 13, 16],
                                    vocab_size=4096, vae_ch_mult=[1, 1, 2, 2, 4], kernel_size=7, refine_step=8,
                                    recommended={"cfg": 1.5, "top_k": 900, "top_p": 0.96}))
put("valid_var_nulls.json", variant(model="var", kernel_size=None, refine_step=None))
put("valid_minimal.json", {k: base[k] for k in ("depth", "embed_dim", "num_heads", "mlp_ratio", "vocab_size", "Cvae",
                                                "num_classes", "patch_nums", "vae_ch", "vae_ch_mult", "vae_num_res_blocks")})
put("bad_patch_nums_17.json", variant(patch_nums=list(range(1, 18))))
put("bad_patch_nums_not_increasing.json", variant(patch_nums=[1, 3, 2]))
put("bad_depth_fraction.json", variant(depth=2.5))
put("bad_depth_2_64.json", text=json.dumps(base).replace('"depth": 6', '"depth": 18446744073709551616'))
put("bad_top_k_beyond_int.json", variant(recommended={"cfg": 3.0, "top_k": 4294967396, "top_p": 0.95}))
put("bad_top_p_zero.json", variant(recommended={"cfg": 3.0, "top_k": 10, "top_p": 0}))
put("bad_class_names_count.json", variant(class_names=["a", "b"]))
put("bad_class_name_number.json", variant(class_names=[1] * 10))
put("bad_ch_mult_huge.json", variant(vae_ch_mult=[1, 1000000]))
put("bad_ch_mult_9_levels.json", variant(vae_ch_mult=[1] * 9))
put("bad_missing_depth.json", variant(depth=KeyError))
put("bad_null_depth.json", variant(depth=None))
put("bad_string_depth.json", variant(depth="6"))
put("bad_bool_sa.json", variant(vae_using_sa=1))
put("bad_even_kernel.json", variant(kernel_size=4))
put("bad_heads_not_dividing.json", variant(embed_dim=191))
put("bad_nested_deep.json", text="[" * 100 + "]" * 100)
put("bad_top_level_array.json", text="[1, 2, 3]")
put("bad_truncated.json", text=json.dumps(base)[:200])
put("bad_empty.json", text="")
print(f"wrote {len(os.listdir(out))} seeds to {out}")
