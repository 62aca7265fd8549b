#!/usr/bin/env python3
"""prepare_data: text -> ringtrain token files. Owns tokenizing documents with a Hugging Face
`tokenizers` tokenizer, the EOS after every document, the train/eval split, and the .npy
shards (1-D uint16 when the vocabulary fits 65536 ids, else uint32) that data.train /
data.eval read as one stream (docs/formats.md, "Token files").

    scripts/prepare_data.py --tokenizer /models/Llama-2-7b-hf --out data/books books/*.txt
    scripts/prepare_data.py --tokenizer tok.json --lines --out data/lines corpus.txt
    scripts/prepare_data.py --tokenizer tok.json --hf-dataset saved/ --text-field text --out data/ds
    scripts/prepare_data.py --self-test

Writes OUT/train-00000.npy, train-00001.npy, ... (each --shard-tokens tokens, the last one
the rest), OUT/eval-00000.npy, ... with --eval-fraction, and OUT/manifest.json (inputs,
tokenizer, EOS id, counts, each shard's sha256). The same inputs and options give the same
bytes. Exit status: 0 done, 2 bad input (one message on stderr).
"""
import argparse
import fnmatch
import hashlib
import json
import math
import os
import sys
from fractions import Fraction

SHARD_DIGITS = 5  # train-00000.npy: names sort by strcmp in stream order up to 10^5 shards
EOS_NAMES = ("</s>", "<|endoftext|>", "<|end_of_text|>", "<eos>")


class InputError(Exception):
    """Bad input: reported as one line, exit status 2."""


# ---------------------------------------------------------------- tokenizer and EOS

def load_tokenizer(path):
    """A tokenizers.Tokenizer from tokenizer.json or a directory holding one; returns
    (tokenizer, path of tokenizer.json, directory of model files or None)."""
    from tokenizers import Tokenizer
    model_dir = None
    if os.path.isdir(path):
        model_dir = path
        path = os.path.join(path, "tokenizer.json")
    else:
        model_dir = os.path.dirname(path) or "."
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such tokenizer file (--tokenizer wants a tokenizer.json "
                         "or a directory holding one)")
    try:
        tok = Tokenizer.from_file(path)
    except Exception as e:  # the library raises plain Exceptions with its own text
        raise InputError(f"{path}: cannot load the tokenizer: {e}")
    # A tokenizer.json may carry truncation or padding settings: never cut or pad documents.
    tok.no_truncation()
    tok.no_padding()
    return tok, path, model_dir


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def find_eos(tok, model_dir, eos_id):
    """The EOS id and where it came from: --eos-id; tokenizer_config.json's eos_token;
    generation_config.json / config.json eos_token_id (the first of a list); a special token
    named like an EOS (</s>, <|endoftext|>, ...)."""
    if eos_id is not None:
        if eos_id < 0:
            raise InputError(f"--eos-id {eos_id}: must be >= 0")
        return eos_id, "--eos-id"
    if model_dir:
        cfg = _read_json(os.path.join(model_dir, "tokenizer_config.json"))
        if isinstance(cfg, dict) and cfg.get("eos_token") is not None:
            name = cfg["eos_token"]
            if isinstance(name, dict):
                name = name.get("content")
            i = tok.token_to_id(name) if isinstance(name, str) else None
            if i is None:
                raise InputError(f"{model_dir}/tokenizer_config.json: eos_token {name!r} is not in "
                                 "the tokenizer's vocabulary (pass --eos-id)")
            return i, f"tokenizer_config.json eos_token {name!r}"
        for name in ("generation_config.json", "config.json"):
            cfg = _read_json(os.path.join(model_dir, name))
            v = cfg.get("eos_token_id") if isinstance(cfg, dict) else None
            if isinstance(v, list) and v:
                v = v[0]
            if isinstance(v, int) and not isinstance(v, bool):
                return v, f"{name} eos_token_id"
    specials = {t.content for t in tok.get_added_tokens_decoder().values() if t.special}
    for name in EOS_NAMES:
        if name in specials:
            return tok.token_to_id(name), f"special token {name!r}"
    raise InputError("cannot tell the EOS token of this tokenizer (no tokenizer_config.json "
                     "eos_token, no eos_token_id, no special token named " +
                     ", ".join(EOS_NAMES) + "): pass --eos-id")


def dtype_for(n_ids):
    """uint16 when every id < n_ids fits 16 bits, else uint32."""
    import numpy as np
    return np.dtype("<u2") if n_ids <= 65536 else np.dtype("<u4")


# ---------------------------------------------------------------- documents

def list_text_files(inputs, pattern):
    """Files in the given order; a directory contributes its files matching pattern, walked
    recursively in sorted order, hidden names skipped."""
    files = []
    for p in inputs:
        if os.path.isdir(p):
            found = []
            for root, dirs, names in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found += [os.path.join(root, n) for n in sorted(names)
                          if not n.startswith(".") and fnmatch.fnmatch(n, pattern)]
            if not found:
                raise InputError(f"{p}: directory holds no files matching {pattern!r} (see --glob)")
            files += found
        elif os.path.isfile(p):
            files.append(p)
        else:
            raise InputError(f"{p}: no such file or directory")
    return files


def _read_text(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: not valid UTF-8 (byte {e.start})")


def text_documents(files, lines):
    """One document per file, or per line with lines (line ends removed, blank lines kept
    for the caller to skip)."""
    for path in files:
        text = _read_text(path)
        if not lines:
            yield text
            continue
        for line in text.split("\n"):
            yield line[:-1] if line.endswith("\r") else line


def dataset_documents(path, split, field):
    """The `field` of every record of a dataset saved with datasets' save_to_disk."""
    try:
        import datasets
    except ImportError:
        raise InputError("--hf-dataset needs the `datasets` package (pip install datasets)")
    try:
        ds = datasets.load_from_disk(path)
    except Exception as e:
        raise InputError(f"{path}: cannot load the dataset: {e}")
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise InputError(f"{path}: no split {split!r} (it has {', '.join(sorted(ds))}; see --split)")
        ds = ds[split]
    if field not in ds.column_names:
        raise InputError(f"{path}: no field {field!r} (it has {', '.join(ds.column_names)}; "
                         "see --text-field)")
    for batch in ds.iter(batch_size=1000):
        for i, text in enumerate(batch[field]):
            if not isinstance(text, str):
                raise InputError(f"{path}: field {field!r} holds a {type(text).__name__}, not text")
            yield text


# ---------------------------------------------------------------- shards

class ShardWriter:
    """Cuts one token stream into OUT/<split>-NNNNN.npy files of shard_tokens tokens."""

    def __init__(self, out, split, shard_tokens, dtype):
        self.out, self.split, self.shard_tokens, self.dtype = out, split, shard_tokens, dtype
        self.pending, self.n_pending = [], 0
        self.shards = []  # manifest entries
        self.tokens = 0

    def add(self, ids):
        self.pending.append(ids)
        self.n_pending += len(ids)
        self.tokens += len(ids)
        while self.n_pending >= self.shard_tokens:
            self._flush(self.shard_tokens)

    def close(self):
        if self.n_pending:
            self._flush(self.n_pending)

    def _flush(self, n):
        import numpy as np
        buf = np.concatenate(self.pending)
        rest = buf[n:]
        self.pending, self.n_pending = ([rest] if len(rest) else []), len(rest)
        k = len(self.shards)
        if k >= 10 ** SHARD_DIGITS:
            raise InputError(f"more than {10 ** SHARD_DIGITS} {self.split} shards: raise --shard-tokens")
        name = f"{self.split}-{k:0{SHARD_DIGITS}d}.npy"
        path = os.path.join(self.out, name)
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(buf[:n], dtype=self.dtype), allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # a shard exists whole or not at all
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        self.shards.append({"file": name, "tokens": int(n), "sha256": h.hexdigest()})


def is_eval(i, fraction):
    """Document i goes to eval when floor((i+1) f) > floor(i f): exactly floor(n f) of the
    first n documents, evenly spread, no random numbers."""
    return fraction > 0 and math.floor((i + 1) * fraction) > math.floor(i * fraction)


def prepare(args):
    """Runs the conversion; returns the manifest dict."""
    import numpy as np
    if args.shard_tokens < 1:
        raise InputError(f"--shard-tokens {args.shard_tokens}: must be >= 1")
    if not 0 <= args.eval_fraction < 1:
        raise InputError(f"--eval-fraction {args.eval_fraction}: must be in [0, 1)")
    if bool(args.inputs) == bool(args.hf_dataset):
        raise InputError("give text files/directories or --hf-dataset (exactly one of them)")
    tok, tok_path, model_dir = load_tokenizer(args.tokenizer)
    eos, eos_from = find_eos(tok, model_dir, args.eos_id)
    vocab = tok.get_vocab_size(with_added_tokens=True)
    n_ids = max(vocab, eos + 1)
    dtype = dtype_for(n_ids)

    if args.hf_dataset:
        docs, sources = dataset_documents(args.hf_dataset, args.split, args.text_field), [args.hf_dataset]
    else:
        files = list_text_files(args.inputs, args.glob)
        docs, sources = text_documents(files, args.lines), files

    os.makedirs(args.out, exist_ok=True)
    old = sorted(n for n in os.listdir(args.out)
                 if n.endswith(".npy") or n.endswith(".npy.tmp") or n == "manifest.json")
    if old and not args.overwrite:
        raise InputError(f"{args.out}: already holds {old[0]}{' and more' if len(old) > 1 else ''} "
                         "(a directory of token files is read whole: use an empty directory or --overwrite)")
    for n in old:
        os.remove(os.path.join(args.out, n))

    writers = {"train": ShardWriter(args.out, "train", args.shard_tokens, dtype),
               "eval": ShardWriter(args.out, "eval", args.shard_tokens, dtype)}
    counts = {"train": 0, "eval": 0}
    state = {"kept": 0, "skipped": 0}

    def encode(batch):
        for enc in tok.encode_batch(batch, add_special_tokens=not args.no_special_tokens):
            ids = enc.ids
            if not ids or ids[-1] != eos:  # a post-processor may already end with EOS
                ids = ids + [eos]
            split = "eval" if is_eval(state["kept"], args.eval_fraction) else "train"
            state["kept"] += 1
            counts[split] += 1
            writers[split].add(np.asarray(ids, dtype=np.int64))

    batch = []
    for text in docs:
        if not text.strip():
            state["skipped"] += 1
            continue
        batch.append(text)
        if len(batch) == args.batch_docs:
            encode(batch)
            batch = []
    if batch:
        encode(batch)
    if state["kept"] == 0:
        raise InputError("no documents: every input is empty")
    for w in writers.values():
        w.close()

    manifest = {
        "format": "ringtrain token files: 1-D .npy, documents each followed by EOS, shards in name order",
        "tokenizer": os.path.abspath(tok_path),
        "vocab_size": vocab,
        "eos_id": eos,
        "eos_from": eos_from,
        "dtype": "uint16" if dtype.itemsize == 2 else "uint32",
        "add_special_tokens": not args.no_special_tokens,
        "mode": "hf-dataset" if args.hf_dataset else ("lines" if args.lines else "files"),
        "text_field": args.text_field if args.hf_dataset else None,
        "sources": [os.path.abspath(s) for s in sources],
        "shard_tokens": args.shard_tokens,
        "eval_fraction": str(args.eval_fraction),
        "documents": {"train": counts["train"], "eval": counts["eval"], "skipped_empty": state["skipped"]},
        "tokens": {s: writers[s].tokens for s in writers},
        "shards": {s: writers[s].shards for s in writers},
    }
    with open(os.path.join(args.out, "manifest.json.tmp"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    os.replace(os.path.join(args.out, "manifest.json.tmp"), os.path.join(args.out, "manifest.json"))
    return manifest


def summary(m, out):
    lines = [f"tokenizer {m['tokenizer']}: vocab {m['vocab_size']}, EOS id {m['eos_id']} ({m['eos_from']}), "
             f"dtype {m['dtype']}"]
    for s in ("train", "eval"):
        sh = m["shards"][s]
        if not sh:
            continue
        files = sh[0]["file"] if len(sh) == 1 else f"{sh[0]['file']} .. {sh[-1]['file']}"
        lines.append(f"{s}: {m['documents'][s]} documents, {m['tokens'][s]} tokens, "
                     f"{len(sh)} file{'s' if len(sh) > 1 else ''} ({os.path.join(out, files)})")
    if m["documents"]["skipped_empty"]:
        lines.append(f"skipped {m['documents']['skipped_empty']} empty documents")
    lines.append("in the job file (the patterns keep train and eval shards apart; vocab_size >= "
                 f"{max(m['vocab_size'], m['eos_id'] + 1)}):")
    lines.append("data:")
    for s in ("train", "eval"):
        if m["shards"][s]:
            lines.append(f"  {s}: {json.dumps(os.path.join(os.path.abspath(out), s + '-*.npy'))}")
    return "\n".join(lines)


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="prepare_data.py",
        description="Tokenize text into ringtrain .npy token shards (an EOS after every document).")
    p.add_argument("inputs", nargs="*", help="text files, or directories of them (see --glob)")
    p.add_argument("--tokenizer", help="tokenizer.json, or a model directory holding one")
    p.add_argument("--out", help="output directory (must hold no .npy files unless --overwrite)")
    p.add_argument("--hf-dataset", metavar="DIR", help="a datasets dataset saved with save_to_disk")
    p.add_argument("--split", default="train", help="split of a saved DatasetDict (default train)")
    p.add_argument("--text-field", default="text", help="record field holding the text (default text)")
    p.add_argument("--lines", action="store_true", help="one document per line instead of per file")
    p.add_argument("--glob", default="*.txt", help="files taken from input directories (default *.txt)")
    p.add_argument("--eos-id", type=int, help="EOS token id (default: the tokenizer's)")
    p.add_argument("--shard-tokens", type=int, default=100_000_000, help="tokens per shard (default 1e8)")
    p.add_argument("--eval-fraction", type=Fraction, default=Fraction(0),
                   help="fraction of the documents written to eval shards (default 0)")
    p.add_argument("--no-special-tokens", action="store_true",
                   help="do not run the tokenizer's post-processor (e.g. no BOS)")
    p.add_argument("--batch-docs", type=int, default=1000, help="documents per encode_batch call")
    p.add_argument("--overwrite", action="store_true", help="delete the .npy files already in --out first")
    p.add_argument("--self-test", action="store_true", help="run the built-in test and exit")
    a = p.parse_args(argv)
    if not a.self_test and (not a.tokenizer or not a.out):
        p.error("--tokenizer and --out are required")
    if a.batch_docs < 1:
        p.error("--batch-docs must be >= 1")
    return a


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    if a.self_test:
        return self_test()
    try:
        import numpy  # noqa: F401
        import tokenizers  # noqa: F401
    except ImportError as e:
        print(f"prepare_data.py: needs numpy and tokenizers (pip install numpy tokenizers): {e}",
              file=sys.stderr)
        return 2
    try:
        m = prepare(a)
    except InputError as e:
        print(f"prepare_data.py: {e}", file=sys.stderr)
        return 2
    print(summary(m, a.out))
    return 0


# ---------------------------------------------------------------- self-test

def self_test():
    import selftest
    try:
        import numpy as np
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    except ImportError as e:
        return selftest.skipped("prepare_data.py", e)
    t = selftest.SelfTest("prepare_data.py", "ringtrain_prepare_")
    check, tmp = t.check, t.tmp

    docs = ["The quick brown fox jumps over the lazy dog.\n",
            "Ring attention passes K/V blocks around a ring of ranks.",
            "ünïcödé — 長い文脈 and emoji 🙂 survive a round trip.",
            "  leading and trailing spaces  ",
            "Numbers 0 1 2 3 4 5 6 7 8 9 10 100 1000.",
            "",  # empty: skipped
            "Last document\nwith two lines."]
    # A byte-level BPE trained on the documents: every text decodes back exactly.
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(docs * 3, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tok_path = os.path.join(tmp, "tokenizer.json")
    tok.save(tok_path)
    eos = tok.token_to_id("<|endoftext|>")
    src = os.path.join(tmp, "text")
    os.makedirs(os.path.join(src, "sub"))
    names = []
    for i, d in enumerate(docs):
        name = os.path.join(src, "sub" if i >= 5 else "", f"doc{i}.txt")
        with open(name, "w", encoding="utf-8") as f:
            f.write(d)
        names.append(name)
    with open(os.path.join(src, "skip.md"), "w") as f:
        f.write("not matched by --glob *.txt")
    kept = [d for d in docs if d.strip()]

    def run(*argv):
        a = parse_args(list(argv))
        return prepare(a)

    def load(out, split):
        files = sorted(n for n in os.listdir(out) if n.startswith(split + "-") and n.endswith(".npy"))
        return [np.load(os.path.join(out, n), allow_pickle=False) for n in files], files

    def split_docs(stream):
        ends = np.flatnonzero(stream == eos)
        starts = np.concatenate([[0], ends[:-1] + 1])
        return [tok.decode(stream[s:e].tolist(), skip_special_tokens=False) for s, e in zip(starts, ends)]

    # files mode: a directory walked in sorted order (doc0..doc4, then sub/doc5..6), small shards
    out1 = os.path.join(tmp, "out1")
    m = run("--tokenizer", tok_path, "--out", out1, "--shard-tokens", "16", src)
    shards, files = load(out1, "train")
    stream = np.concatenate(shards)
    check(all(s.dtype == np.dtype("<u2") and s.ndim == 1 for s in shards), "uint16 1-D shards")
    check(all(len(s) == 16 for s in shards[:-1]) and 1 <= len(shards[-1]) <= 16, "shard sizes")
    check(files == [f"train-{k:05d}.npy" for k in range(len(files))], f"shard names {files}")
    check(stream[-1] == eos and int((stream == eos).sum()) == len(kept), "one EOS after every document")
    check(split_docs(stream) == kept, "decode round trip")
    check(m["documents"] == {"train": len(kept), "eval": 0, "skipped_empty": 1}, f"counts {m['documents']}")
    check(m["tokens"]["train"] == len(stream) and m["eos_id"] == eos, "manifest tokens, EOS")
    with open(os.path.join(out1, files[0]), "rb") as f:
        head = f.read(128)
    check(head[:8] == b"\x93NUMPY\x01\x00" and b"'descr': '<u2'" in head and b"'shape': (16,)" in head and
          b"'fortran_order': False" in head, "npy header v1.0 '<u2' (n,)")

    # determinism: the same inputs give the same bytes; a non-empty --out is refused
    out2 = os.path.join(tmp, "out2")
    run("--tokenizer", tok_path, "--out", out2, "--shard-tokens", "16", src)
    same = all(open(os.path.join(out1, n), "rb").read() == open(os.path.join(out2, n), "rb").read()
               for n in os.listdir(out1) if n.endswith(".npy"))
    check(same and sorted(os.listdir(out1)) == sorted(os.listdir(out2)), "deterministic output")
    try:
        run("--tokenizer", tok_path, "--out", out2, src)
        check(False, "a non-empty --out is refused")
    except InputError as e:
        check("--overwrite" in str(e), f"refusal names --overwrite: {e}")
    run("--tokenizer", tok_path, "--out", out2, "--overwrite", "--shard-tokens", "1000", src)
    check(sorted(os.listdir(out2)) == ["manifest.json", "train-00000.npy"], "--overwrite replaces old shards")

    # eval split: every 3rd document (fraction 1/3), both streams decode to their documents
    out3 = os.path.join(tmp, "out3")
    m = run("--tokenizer", tok_path, "--out", out3, "--shard-tokens", "1000", "--eval-fraction", "1/3",
            *[names[i] for i in range(len(docs))])
    tr, _ = load(out3, "train")
    ev, evf = load(out3, "eval")
    check(evf == ["eval-00000.npy"], f"eval shards {evf}")
    check(split_docs(np.concatenate(ev)) == [kept[2], kept[5]], "eval documents 2 and 5 of 6")
    check(split_docs(np.concatenate(tr)) == [d for i, d in enumerate(kept) if i not in (2, 5)], "train documents")

    # --lines: a document per non-blank line; --eos-id; a post-processor's BOS kept unless
    # --no-special-tokens
    lines_file = os.path.join(tmp, "lines.txt")
    with open(lines_file, "w", encoding="utf-8") as f:
        f.write("first line\r\nsecond line\n\n   \nthird line")
    out4 = os.path.join(tmp, "out4")
    m = run("--tokenizer", tok_path, "--out", out4, "--lines", "--eos-id", "7", lines_file)
    s4 = np.concatenate(load(out4, "train")[0])
    check(m["documents"]["train"] == 3 and m["documents"]["skipped_empty"] == 2 and int((s4 == 7).sum()) >= 3
          and s4[-1] == 7, "--lines and --eos-id")
    tok2 = Tokenizer.from_file(tok_path)
    tok2.add_special_tokens(["<s>"])
    bos = tok2.token_to_id("<s>")
    tok2.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)])
    tok2.enable_truncation(4)  # must be ignored: documents are never cut
    tdir = os.path.join(tmp, "model")
    os.makedirs(tdir)
    tok2.save(os.path.join(tdir, "tokenizer.json"))
    with open(os.path.join(tdir, "tokenizer_config.json"), "w") as f:
        json.dump({"eos_token": {"content": "<|endoftext|>"}}, f)
    out5 = os.path.join(tmp, "out5")
    m = run("--tokenizer", tdir, "--out", out5, "--lines", lines_file)
    s5 = np.concatenate(load(out5, "train")[0])
    check(m["eos_from"].startswith("tokenizer_config.json") and s5[0] == bos and int((s5 == bos).sum()) == 3,
          "BOS from the post-processor, EOS from tokenizer_config.json")
    check(tok2.decode(s5.tolist(), skip_special_tokens=True).replace(" ", "") ==
          "firstlinesecondlinethirdline", "no truncation")
    m = run("--tokenizer", tdir, "--out", out5, "--overwrite", "--lines", "--no-special-tokens", lines_file)
    s5 = np.concatenate(load(out5, "train")[0])
    check(int((s5 == bos).sum()) == 0, "--no-special-tokens")

    # a vocabulary over 65536 ids gives uint32 shards
    big = Tokenizer(models.WordLevel({**{f"w{i}": i for i in range(70000)}, "[UNK]": 70000, "</s>": 70001},
                                     unk_token="[UNK]"))
    big.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    big.add_special_tokens(["</s>"])
    big_path = os.path.join(tmp, "big.json")
    big.save(big_path)
    with open(lines_file, "w") as f:
        f.write("w1 w69999 w2\nw3 nope\n")
    out6 = os.path.join(tmp, "out6")
    run("--tokenizer", big_path, "--out", out6, "--lines", lines_file)
    s6 = np.concatenate(load(out6, "train")[0])
    check(s6.dtype == np.dtype("<u4") and s6.tolist() == [1, 69999, 2, 70001, 3, 70000, 70001], f"uint32 {s6}")
    check(dtype_for(65536) == np.dtype("<u2") and dtype_for(65537) == np.dtype("<u4"), "dtype threshold")

    # bad input: exit status 2 and one message
    import subprocess
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--tokenizer", tok_path, "--out",
                        os.path.join(tmp, "out7"), os.path.join(tmp, "absent.txt")], capture_output=True, text=True)
    check(r.returncode == 2 and "absent.txt: no such file" in r.stderr, f"missing input: {r.returncode} {r.stderr}")
    bad = os.path.join(tmp, "bad.txt")
    with open(bad, "wb") as f:
        f.write(b"ok\n\xff\xfe")
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--tokenizer", tok_path, "--out",
                        os.path.join(tmp, "out8"), bad], capture_output=True, text=True)
    check(r.returncode == 2 and "bad.txt:2: not valid UTF-8" in r.stderr, f"bad UTF-8: {r.stderr}")
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--tokenizer", tok_path, "--out",
                        os.path.join(tmp, "out9"), "--shard-tokens", "50", src], capture_output=True, text=True)
    check(r.returncode == 0 and "train: 6 documents" in r.stdout and "files" in r.stdout, f"summary: {r.stdout}")

    # a saved datasets dataset (when the package is here)
    try:
        import datasets
    except ImportError:
        datasets = None
    if datasets is not None:
        datasets.disable_progress_bars()
        dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": kept, "n": list(range(len(kept)))})})
        dpath = os.path.join(tmp, "ds")
        dd.save_to_disk(dpath)
        out10 = os.path.join(tmp, "out10")
        m = run("--tokenizer", tok_path, "--out", out10, "--hf-dataset", dpath, "--split", "train")
        check(split_docs(np.concatenate(load(out10, "train")[0])) == kept, "dataset round trip")
        try:
            run("--tokenizer", tok_path, "--out", os.path.join(tmp, "out11"), "--hf-dataset", dpath,
                "--text-field", "body")
            check(False, "a missing --text-field is an error")
        except InputError as e:
            check("no field 'body'" in str(e), f"missing field message: {e}")
    note = "" if datasets is not None else " (datasets not installed: --hf-dataset not tested)"

    return t.finish(note)


if __name__ == "__main__":
    sys.exit(main())
