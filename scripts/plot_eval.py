#!/usr/bin/env python3
"""plot_eval: the CSV files of `ringtrain --eval` and `ringtrain --passkey` -> PNG. Owns
reading both formats (docs/formats.md) and drawing them: eval_buckets.csv as perplexity
(and loss) against context length, one line per file; passkey.csv as a heatmap of the
retrieval accuracy, needle depth against context length, each cell labelled with
retrieved/trials.

    scripts/plot_eval.py eval/eval_buckets.csv --out ppl.png
    scripts/plot_eval.py base/eval_buckets.csv long/eval_buckets.csv --labels base,long --out cmp.png
    scripts/plot_eval.py eval/passkey.csv --out passkey.png
    scripts/plot_eval.py --self-test

The kind is told by the header line. Exit status: 0 done, 2 bad input (one line on stderr).
"""
import argparse
import csv
import math
import os
import sys

BUCKETS = ["bucket", "ctx_from", "ctx_to", "tokens", "loss", "ppl"]
PASSKEY = ["context_len", "depth", "needle_pos", "trials", "retrieved", "accuracy", "digit_accuracy", "answer_loss"]


class InputError(Exception):
    """Bad input: one line on stderr, exit status 2."""


def read_csv(path):
    """(kind, rows): kind "buckets" or "passkey", rows as dicts of floats."""
    try:
        f = open(path, newline="", encoding="utf-8")
    except OSError as e:
        raise InputError(f"{path}: cannot open: {e.strerror}")
    with f:
        r = csv.reader(f)
        header = next(r, None)
        kind = "buckets" if header == BUCKETS else "passkey" if header == PASSKEY else None
        if kind is None:
            raise InputError(f"{path}: line 1: not an eval_buckets.csv or passkey.csv header: {header}")
        rows = []
        for n, line in enumerate(r, start=2):
            if len(line) != len(header):
                raise InputError(f"{path}: line {n}: {len(line)} fields, expected {len(header)}")
            try:
                rows.append({k: float(v) for k, v in zip(header, line)})
            except ValueError as e:
                raise InputError(f"{path}: line {n}: {e}")
    if not rows:
        raise InputError(f"{path}: no rows")
    return kind, rows


def plot_buckets(series, out, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax_p, ax_l) = plt.subplots(1, 2, figsize=(12, 4.5))
    for label, rows in series:
        # each bucket at the middle of its context lengths, with its range as a bar
        xs = [(r["ctx_from"] + r["ctx_to"]) / 2 for r in rows]
        xerr = [[x - r["ctx_from"] for x, r in zip(xs, rows)], [r["ctx_to"] - x for x, r in zip(xs, rows)]]
        for ax, key in ((ax_p, "ppl"), (ax_l, "loss")):
            ys = [r[key] if math.isfinite(r[key]) else math.nan for r in rows]
            ax.errorbar(xs, ys, xerr=xerr, marker="o", capsize=3, label=label)
    ax_p.set_ylabel("perplexity (log scale)")
    ax_p.set_yscale("log")
    ax_l.set_ylabel("mean token loss (nats)")
    ax_l.set_ylim(bottom=0)
    for ax, name in ((ax_p, "perplexity by context length"), (ax_l, "loss by context length")):
        ax.set_title(name)
        ax.set_xlabel("context length (tokens seen by the prediction)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save(fig, plt, out)


def plot_passkey(label, rows, out, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    lengths = sorted({int(r["context_len"]) for r in rows})
    depths = sorted({r["depth"] for r in rows})
    grid = [[math.nan] * len(lengths) for _ in depths]
    text = [[""] * len(lengths) for _ in depths]
    for r in rows:
        i, j = depths.index(r["depth"]), lengths.index(int(r["context_len"]))
        grid[i][j] = r["accuracy"]
        text[i][j] = f"{int(r['retrieved'])}/{int(r['trials'])}"
    fig, ax = plt.subplots(figsize=(1.2 * len(lengths) + 3, 0.6 * len(depths) + 2.5))
    im = ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto", origin="upper")
    for i in range(len(depths)):
        for j in range(len(lengths)):
            ax.text(j, i, text[i][j], ha="center", va="center", fontsize=9)
    ax.set_xticks(range(len(lengths)))
    ax.set_xticklabels([str(n) for n in lengths])
    ax.set_yticks(range(len(depths)))
    ax.set_yticklabels([f"{d:g}" for d in depths])
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("needle depth (0 = start, 1 = end)")
    ax.set_title(title or f"passkey retrieval: {label}")
    fig.colorbar(im, ax=ax, label="accuracy (passkeys retrieved)")
    fig.tight_layout()
    save(fig, plt, out)


def save(fig, plt, out):
    tmp = out + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, out)


def run(a):
    labels = a.labels.split(",") if a.labels else [os.path.basename(os.path.dirname(os.path.abspath(f))) or f
                                                   for f in a.files]
    if len(labels) != len(a.files):
        raise InputError(f"--labels has {len(labels)} names for {len(a.files)} files")
    read = [read_csv(f) for f in a.files]
    kinds = {k for k, _ in read}
    if len(kinds) > 1:
        raise InputError("give either eval_buckets.csv files or one passkey.csv, not both")
    if kinds == {"passkey"}:
        if len(read) > 1:
            raise InputError("one passkey.csv at a time")
        plot_passkey(labels[0], read[0][1], a.out, a.title)
    else:
        plot_buckets([(label, rows) for label, (_, rows) in zip(labels, read)], a.out, a.title)
    return kinds.pop()


def parse_args(argv):
    p = argparse.ArgumentParser(prog="plot_eval.py", description="Plot ringtrain --eval / --passkey CSV files.")
    p.add_argument("files", nargs="*", help="eval_buckets.csv files (one line each), or one passkey.csv")
    p.add_argument("--out", default="eval.png", help="PNG to write (default eval.png)")
    p.add_argument("--labels", help="comma-separated legend labels, one per file (default: their directories)")
    p.add_argument("--title", help="figure title")
    p.add_argument("--self-test", action="store_true", help="run the built-in test and exit")
    a = p.parse_args(argv)
    if not a.self_test and not a.files:
        p.error("no CSV files given")
    return a


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    if a.self_test:
        return self_test()
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("plot_eval.py: needs matplotlib (pip install matplotlib)", file=sys.stderr)
        return 2
    try:
        kind = run(a)
    except InputError as e:
        print(f"plot_eval.py: {e}", file=sys.stderr)
        return 2
    print(f"wrote {a.out} ({kind})")
    return 0


# ---------------------------------------------------------------- self-test

def self_test():
    import selftest
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.image
    except ImportError as e:
        return selftest.skipped("plot_eval.py", e)
    t = selftest.SelfTest("plot_eval.py", "ringtrain_plot_eval_")
    check, tmp = t.check, t.tmp

    buckets = os.path.join(tmp, "eval_buckets.csv")
    with open(buckets, "w") as f:
        f.write(",".join(BUCKETS) + "\n")
        for b in range(8):
            loss = 3.4 if b < 4 else 0.05
            f.write(f"{b},{b * 16 + 1},{b * 16 + 16},128,{loss},{math.exp(loss)}\n")
    passkey = os.path.join(tmp, "passkey.csv")
    with open(passkey, "w") as f:
        f.write(",".join(PASSKEY) + "\n")
        for n in (16, 32, 48, 64):
            for d in (0, 0.25, 0.5, 0.75, 1):
                hot = n == 64 and d == 0.5
                f.write(f"{n},{d},{int(d * (n - 10))},4,{4 if hot else 0},{1 if hot else 0},{1 if hot else 0.1},1\n")
    kind, rows = read_csv(passkey)
    check(kind == "passkey" and len(rows) == 20 and rows[17]["accuracy"] == 1, "passkey.csv read")
    kind, rows = read_csv(buckets)
    check(kind == "buckets" and len(rows) == 8 and rows[7]["ctx_to"] == 128, "eval_buckets.csv read")

    def looks_drawn(path, size):
        if not os.path.isfile(path):
            return False
        img = matplotlib.image.imread(path)
        return (img.shape[1], img.shape[0]) == size and float(img[..., :3].std()) > 0.05

    out = os.path.join(tmp, "b.png")
    check(main([buckets, buckets, "--labels", "a,b", "--out", out]) == 0 and looks_drawn(out, (1200, 450)),
          "buckets plot written, 1200 x 450, not blank")
    out = os.path.join(tmp, "p.png")
    check(main([passkey, "--out", out]) == 0 and looks_drawn(out, (780, 550)), "passkey heatmap written, not blank")
    if os.path.isfile(out):
        # RdYlGn: the one retrieved cell is green, the 19 others red: red area ~19x the green
        img = matplotlib.image.imread(out)[..., :3]
        green = ((img[..., 1] > 0.45) & (img[..., 0] < 0.25)).sum()
        red = ((img[..., 0] > 0.6) & (img[..., 1] < 0.25)).sum()
        check(green > 1000 and 10 * green < red, f"one green cell among red ones ({green} green, {red} red pixels)")
        check(not os.path.exists(out + ".tmp.png"), "no temporary file left")
    bad = os.path.join(tmp, "bad.csv")
    with open(bad, "w") as f:
        f.write("a,b\n1,2\n")
    check(main([bad, "--out", out]) == 2, "an unknown header is exit 2")
    with open(bad, "w") as f:
        f.write(",".join(PASSKEY) + "\n1,2\n")
    check(main([bad, "--out", out]) == 2, "a short line is exit 2")
    check(main([buckets, passkey, "--out", out]) == 2, "two kinds at once is exit 2")
    check(main([os.path.join(tmp, "absent.csv"), "--out", out]) == 2, "a missing file is exit 2")
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
