#!/usr/bin/env python3
"""check_export: load directories written by ringtrain's hf_export with Hugging Face
transformers and check them against a reference fixture (test/fixtures/<case>, see
docs/fixtures.md and docs/formats.md).

usage: check_export.py EXPORT_DIR FIXTURE_DIR [EXPORT_DIR FIXTURE_DIR ...]

For each pair:
  - LlamaForCausalLM.from_pretrained(EXPORT_DIR) reports no missing, unexpected or
    mismatched tensors;
  - every parameter, the RoPE inverse frequencies and attention factor equal, bit for bit,
    those of from_pretrained(FIXTURE_DIR/hf) (so the export must hold the fixture's weights,
    exported in their own precision or wider), and so do bos/eos/pad_token_id (an export from
    an HF directory copies them);
  - in float64, the mean token loss of step 0's batch (the first seqs_per_step sequential
    windows of seq_len + 1 tokens of FIXTURE_DIR/tokens.npy, labels shifted by one, with
    seq_len and seqs_per_step from FIXTURE_DIR/job.yaml) equals reference.safetensors "loss"
    within 1e-5 relative.
Prints one line per pair; exits 1 when any check fails, 2 on bad usage.
"""
import os
import re
import sys

import numpy as np
import torch
from safetensors.numpy import load_file
from transformers import LlamaForCausalLM
from transformers.utils import logging as hf_logging

REL_TOL = 1e-5


def job_ints(fixture):
    """seq_len and seqs_per_step from the fixture's job.yaml (flow-style YAML)."""
    text = open(os.path.join(fixture, "job.yaml")).read()
    out = {}
    for key in ("seq_len", "seqs_per_step"):
        m = re.search(r"\b%s:\s*(\d+)" % key, text)
        if not m:
            raise SystemExit("check_export: %s/job.yaml: no %s" % (fixture, key))
        out[key] = int(m.group(1))
    return out["seq_len"], out["seqs_per_step"]


def load(path):
    model, info = LlamaForCausalLM.from_pretrained(
        path, attn_implementation="eager", output_loading_info=True)
    return model.to(torch.float64).eval(), info


def batch_loss(model, tokens, seq_len, n_seqs):
    """Sequential windows of seq_len + 1 tokens with stride seq_len, wrapping to 0."""
    start, total, count = 0, 0.0, 0
    for _ in range(n_seqs):
        if start + seq_len + 1 > len(tokens):
            start = 0
        w = torch.tensor(tokens[start:start + seq_len + 1].astype(np.int64))
        start += seq_len
        with torch.no_grad():
            logits = model(w[None, :-1]).logits[0].to(torch.float64)
        logp = torch.log_softmax(logits, dim=-1)
        total += -logp.gather(1, w[1:, None]).sum().item()
        count += seq_len
    return total / count


def check(export, fixture):
    problems = []
    model, info = load(export)
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        if info.get(key):
            problems.append("%s: %s" % (key, sorted(map(str, info[key]))[:5]))
    ref_model, _ = load(os.path.join(fixture, "hf"))
    got, want = dict(model.named_parameters()), dict(ref_model.named_parameters())
    if sorted(got) != sorted(want):
        problems.append("parameter names differ: %s" % sorted(set(got) ^ set(want))[:5])
    for name in sorted(set(got) & set(want)):
        if got[name].shape != want[name].shape or not torch.equal(got[name], want[name]):
            problems.append("parameter %s differs from the fixture's" % name)
    if not torch.equal(model.model.rotary_emb.inv_freq, ref_model.model.rotary_emb.inv_freq):
        problems.append("RoPE inverse frequencies differ (rope_theta / rope_scaling read differently)")
    if model.model.rotary_emb.attention_scaling != ref_model.model.rotary_emb.attention_scaling:
        problems.append("RoPE attention factor differs (rope_scaling read differently)")
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if getattr(model.config, key, None) != getattr(ref_model.config, key, None):
            problems.append("%s differs from the fixture's" % key)
    if model.config.tie_word_embeddings != ref_model.config.tie_word_embeddings:
        problems.append("tie_word_embeddings differs")

    seq_len, n_seqs = job_ints(fixture)
    tokens = np.load(os.path.join(fixture, "tokens.npy"))
    loss = batch_loss(model, tokens, seq_len, n_seqs)
    ref = float(load_file(os.path.join(fixture, "reference.safetensors"))["loss"][0])
    rel = abs(loss - ref) / abs(ref)
    if not rel <= REL_TOL:
        problems.append("loss %.10g, reference %.10g (rel err %.3g > %g)" % (loss, ref, rel, REL_TOL))
    status = "ok" if not problems else "FAILED"
    print("check_export: %s (fixture %s): loss %.10g, reference %.10g, rel err %.2g: %s"
          % (export, fixture, loss, ref, rel, status))
    for p in problems:
        print("check_export:   " + p)
    return not problems


def main(argv):
    if len(argv) < 2 or len(argv) % 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    hf_logging.disable_progress_bar()
    ok = True
    for export, fixture in zip(argv[0::2], argv[1::2]):
        ok = check(export, fixture) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
