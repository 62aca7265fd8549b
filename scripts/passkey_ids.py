#!/usr/bin/env python3
"""passkey_ids: a Hugging Face tokenizer -> the token id spec of `ringtrain --passkey`
(eval.passkey_ids). Owns the prompt's texts and their token ids: the filler repeated around
the needle, the needle text before the passkey and the text after it, the question before
the answer, and the tokens of the digits 0..9 (each must be one token of its own, as in the
Llama and GPT-2 tokenizers). Texts are encoded without special tokens (no BOS).

    scripts/passkey_ids.py /models/Llama-2-7b-hf --out passkey_ids.txt
    scripts/passkey_ids.py tokenizer.json --filler "Lorem ipsum. " --out ids.txt
    scripts/passkey_ids.py --self-test

The file (docs/formats.md, "passkey id spec") has one line per part, `part: id id ...`, for
filler, needle, after, question and digits; `#` starts a comment line. Exit status: 0 done,
2 bad input (one line on stderr).
"""
import argparse
import os
import sys

# The passkey prompt of Mohtashami and Jaggi (2023), "Landmark Attention".
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
NEEDLE = "The pass key is "
AFTER = ". Remember it. "
QUESTION = "What is the pass key? The pass key is "


class InputError(Exception):
    """Bad input: one line on stderr, exit status 2."""


def load(path):
    from tokenizers import Tokenizer
    tj = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
    if not os.path.isfile(tj):
        raise InputError(f"{tj}: no such tokenizer file (give a tokenizer.json or a directory holding one)")
    try:
        tok = Tokenizer.from_file(tj)
    except Exception as e:  # the library raises plain Exceptions with its own text
        raise InputError(f"{tj}: cannot load the tokenizer: {e}")
    tok.no_truncation()
    tok.no_padding()
    return tok, tj


def spec(tok, filler, needle, after, question):
    """The parts as lists of ids."""
    digits = []
    for d in "0123456789":
        i = tok.token_to_id(d)
        if i is None:
            raise InputError(f"the tokenizer has no token of its own for the digit {d}")
        digits.append(i)
    parts = {"filler": filler, "needle": needle, "after": after, "question": question}
    ids = {k: tok.encode(v, add_special_tokens=False).ids for k, v in parts.items()}
    if not ids["filler"]:
        raise InputError("the filler text gives no tokens")
    for k, v in ids.items():
        if len(v) > 512:
            raise InputError(f"{k}: {len(v)} tokens, at most 512 (PASSKEY_MAX_IDS)")
    ids["digits"] = digits
    return ids


def write(ids, out, source):
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"# ringtrain --passkey token ids from {source} (scripts/passkey_ids.py)\n")
        for k in ("filler", "needle", "after", "question", "digits"):
            f.write(f"{k}: {' '.join(str(i) for i in ids[k])}\n")
    os.replace(tmp, out)


def main(argv=None):
    p = argparse.ArgumentParser(prog="passkey_ids.py", description="Token ids of the ringtrain --passkey prompt.")
    p.add_argument("tokenizer", nargs="?", help="tokenizer.json or a model directory holding one")
    p.add_argument("--out", default="passkey_ids.txt", help="file to write (default passkey_ids.txt)")
    p.add_argument("--filler", default=FILLER, help="text repeated as filler")
    p.add_argument("--needle", default=NEEDLE, help="text before the passkey")
    p.add_argument("--after", default=AFTER, help="text after the passkey")
    p.add_argument("--question", default=QUESTION, help="text before the answer")
    p.add_argument("--self-test", action="store_true", help="run the built-in test and exit")
    a = p.parse_args(sys.argv[1:] if argv is None else argv)
    if a.self_test:
        return self_test()
    if not a.tokenizer:
        p.error("no tokenizer given")
    try:
        import tokenizers  # noqa: F401
    except ImportError:
        print("passkey_ids.py: needs tokenizers (pip install tokenizers)", file=sys.stderr)
        return 2
    try:
        tok, tj = load(a.tokenizer)
        ids = spec(tok, a.filler, a.needle, a.after, a.question)
        write(ids, a.out, tj)
    except (InputError, OSError) as e:
        print(f"passkey_ids.py: {e}", file=sys.stderr)
        return 2
    print(f"wrote {a.out}: filler {len(ids['filler'])}, needle {len(ids['needle'])}, after {len(ids['after'])}, "
          f"question {len(ids['question'])} tokens; set eval.passkey_ids: {a.out}")
    return 0


def self_test():
    import selftest
    try:
        from tokenizers import Tokenizer, models, pre_tokenizers
    except ImportError as e:
        return selftest.skipped("passkey_ids.py", e)
    t = selftest.SelfTest("passkey_ids.py", "ringtrain_passkey_ids_")
    check, tmp = t.check, t.tmp

    words = ["[UNK]"] + list("0123456789") + "the pass key is . remember it what ? grass green".split()
    vocab = {w: i for i, w in enumerate(words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(),
                                                 pre_tokenizers.Digits(individual_digits=True)])
    tj = os.path.join(tmp, "tokenizer.json")
    tok.save(tj)
    out = os.path.join(tmp, "ids.txt")
    rc = main([tmp, "--out", out, "--filler", "the grass green . ", "--needle", "the pass key is",
               "--after", ". remember it", "--question", "what the pass key ? the pass key is"])
    check(rc == 0, "written")
    got = {}
    with open(out) as f:
        lines = f.read().splitlines()
    check(lines[0].startswith("#"), "a comment line first")
    for line in lines[1:]:
        k, v = line.split(":")
        got[k] = [int(x) for x in v.split()]
    v = vocab
    check(got.get("digits") == [v[d] for d in "0123456789"], "digits 0..9")
    check(got.get("filler") == [v["the"], v["grass"], v["green"], v["."]], f"filler ids {got.get('filler')}")
    check(got.get("needle") == [v["the"], v["pass"], v["key"], v["is"]], "needle ids")
    check(got.get("after") == [v["."], v["remember"], v["it"]], "after ids")
    check(len(got.get("question", [])) == 9, "question ids")
    check(not os.path.exists(out + ".tmp"), "no temporary file left")
    # a tokenizer without single-digit tokens, an empty filler, a missing file: exit 2
    tok2 = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    tok2.pre_tokenizer = pre_tokenizers.Whitespace()
    tj2 = os.path.join(tmp, "nodigits.json")
    tok2.save(tj2)
    check(main([tj2, "--out", out]) == 2, "no digit tokens is exit 2")
    check(main([tj, "--out", out, "--filler", ""]) == 2, "an empty filler is exit 2")
    check(main([os.path.join(tmp, "absent.json"), "--out", out]) == 2, "a missing tokenizer is exit 2")
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
