#!/usr/bin/env python3
"""Write test/fixtures/rope/cases.json: RoPE inverse frequencies and attention factors that
transformers' own functions compute, evaluated in float64, for every rope_type ringtrain
implements and several parameter sets each (test_rope.c compares ringtrain's values).

transformers computes these in float32 (its functions name torch.float / torch.float32).
The script runs the very same functions with those two names bound to torch.float64 (a
stand-in for the `torch` module of modeling_rope_utils and modeling_llama), checks that the
results really are float64, and that they agree with the unpatched float32 values to 1e-6
relative. For dynamic NTK it also runs LlamaRotaryEmbedding on positions 0..seq_len-1 and
checks that the frequencies its forward switched to are the ones written (to 1e-6, float32).

Usage (from the repo root): python3 scripts/make_rope_reference.py
Deterministic: a rerun writes a byte-identical file. See docs/fixtures.md.
"""
import json
import os

import numpy as np
import torch

import transformers
from transformers import LlamaConfig
from transformers import modeling_rope_utils as mru
from transformers.models.llama import modeling_llama

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "test", "fixtures", "rope", "cases.json")


def llama(head_dim, theta, scaling, max_pos, heads=4):
    """A config.json (transformers-v4 layout) with the keys RoPE reads."""
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": head_dim * heads,
            "num_attention_heads": heads, "num_key_value_heads": heads, "head_dim": head_dim,
            "intermediate_size": 64, "num_hidden_layers": 1, "vocab_size": 32,
            "max_position_embeddings": max_pos, "rope_theta": theta, "rope_scaling": scaling}


L31 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
       "original_max_position_embeddings": 8192}

# name, config.json, seq_len (the training length: dynamic NTK's frequencies are those of it)
CASES = [
    ("default_d16", llama(16, 10000.0, None, 128), 64),
    ("default_d128_theta5e5", llama(128, 500000.0, None, 8192), 8192),
    ("linear_2", llama(16, 10000.0, {"rope_type": "linear", "factor": 2.0}, 128), 64),
    ("linear_legacy_type_8", llama(128, 1e6, {"type": "linear", "factor": 8.0}, 4096), 4096),
    ("llama3_31", llama(128, 500000.0, L31, 131072), 131072),
    ("llama3_small", llama(16, 500000.0, dict(L31, original_max_position_embeddings=64), 512), 64),
    ("llama3_no_original", llama(16, 500000.0, {k: v for k, v in L31.items()
                                                if k != "original_max_position_embeddings"}, 64), 64),
    ("dynamic_longer", llama(128, 10000.0, {"rope_type": "dynamic", "factor": 2.0}, 4096), 16384),
    ("dynamic_shorter", llama(128, 10000.0, {"rope_type": "dynamic", "factor": 2.0}, 4096), 2048),
    ("dynamic_small", llama(16, 10000.0, {"rope_type": "dynamic", "factor": 4.0}, 64), 256),
    ("yarn_defaults", llama(128, 10000.0, {"rope_type": "yarn", "factor": 4.0,
                                           "original_max_position_embeddings": 4096}, 16384), 16384),
    ("yarn_qwen", llama(128, 1e6, {"rope_type": "yarn", "factor": 4.0,
                                   "original_max_position_embeddings": 32768}, 131072), 131072),
    ("yarn_mscales", llama(64, 10000.0, {"rope_type": "yarn", "factor": 40.0, "mscale": 0.707,
                                         "mscale_all_dim": 1.0, "beta_fast": 32, "beta_slow": 1,
                                         "original_max_position_embeddings": 4096}, 163840), 163840),
    ("yarn_attention_factor", llama(64, 10000.0, {"rope_type": "yarn", "factor": 8.0, "attention_factor": 1.5,
                                                  "beta_fast": 16.0, "beta_slow": 2.0,
                                                  "original_max_position_embeddings": 2048}, 16384), 16384),
    ("yarn_no_truncate", llama(64, 150000.0, {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0,
                                              "beta_slow": 1.0, "truncate": False,
                                              "original_max_position_embeddings": 4096}, 131072), 131072),
    ("yarn_factor_1", llama(16, 10000.0, {"rope_type": "yarn", "factor": 1.0,
                                          "original_max_position_embeddings": 64}, 64), 64),
    ("yarn_no_original", llama(16, 10000.0, {"rope_type": "yarn", "factor": 4.0}, 64), 256),
    ("yarn_small", llama(16, 10000.0, {"rope_type": "yarn", "factor": 4.0,
                                       "original_max_position_embeddings": 16}, 64), 64),
]


class _Torch64:
    """The torch module with float and float32 standing for float64."""
    float = torch.float64
    float32 = torch.float64

    def __getattr__(self, name):
        return getattr(torch, name)


def hf_values(cfg, seq_len, f64):
    """transformers' inv_freq and attention factor for config cfg at seq_len."""
    config = LlamaConfig.from_dict(json.loads(json.dumps(cfg)))
    rope_type = config.rope_parameters["rope_type"]
    saved = mru.torch, modeling_llama.torch
    if f64:
        mru.torch = modeling_llama.torch = _Torch64()
    try:
        if rope_type == "default":
            inv, attn = modeling_llama.LlamaRotaryEmbedding.compute_default_rope_parameters(config)
        else:
            kw = {"seq_len": seq_len} if rope_type == "dynamic" else {}
            inv, attn = mru.ROPE_INIT_FUNCTIONS[rope_type](config, None, **kw)
    finally:
        mru.torch, modeling_llama.torch = saved
    assert inv.dtype == (torch.float64 if f64 else torch.float32), inv.dtype
    return inv.numpy().astype(np.float64), float(attn)


def dynamic_runtime(cfg, seq_len):
    """The inv_freq LlamaRotaryEmbedding's forward uses for positions 0..seq_len-1 (float32)."""
    config = LlamaConfig.from_dict(json.loads(json.dumps(cfg)))
    emb = modeling_llama.LlamaRotaryEmbedding(config)
    x = torch.zeros(1, seq_len, 4)
    emb(x, torch.arange(seq_len)[None, :])
    return emb.inv_freq.numpy().astype(np.float64)


def main():
    out = []
    for name, cfg, seq_len in CASES:
        inv64, attn64 = hf_values(cfg, seq_len, True)
        inv32, attn32 = hf_values(cfg, seq_len, False)
        rel = float(np.max(np.abs(inv32 - inv64) / inv64))
        assert rel < 1e-6, (name, rel)
        assert abs(attn32 - attn64) <= 1e-12 * attn64, (name, attn32, attn64)
        if cfg["rope_scaling"] and cfg["rope_scaling"].get("rope_type") == "dynamic":
            run = dynamic_runtime(cfg, seq_len)
            rrel = float(np.max(np.abs(run - inv64) / inv64))
            assert rrel < 1e-6, (name, "runtime", rrel)
        print(f"{name:24s} D={cfg['head_dim']:4d} attention factor {attn64:.17g}  float32 vs float64 {rel:.1e}")
        out.append({"name": name, "config": cfg, "seq_len": seq_len,
                    "inv_freq": [float(v) for v in inv64], "attention_factor": attn64})
    doc = {"generator": f"scripts/make_rope_reference.py with transformers {transformers.__version__}, "
                        f"torch {torch.__version__}",
           "cases": out}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {OUT} ({len(out)} cases)")


if __name__ == "__main__":
    main()
