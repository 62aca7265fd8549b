#!/usr/bin/env python3
"""plot_metrics: ringtrain metrics files (log.metrics, JSON Lines) -> one PNG. Owns reading
the per-step records and drawing loss (with the evaluation loss of data.eval, log.eval_every,
as dots and the checkpoints as dotted vertical lines), learning rate, gradient norm, tokens/s,
MFU and memory against the step, 3 x 2 panels, one line per file.

    scripts/plot_metrics.py run.jsonl --out plot.png
    scripts/plot_metrics.py a.jsonl b.jsonl --labels base,long --smooth 20 --out cmp.png
    scripts/plot_metrics.py --self-test

A record is a JSON object with a "step"; other lines (blank lines, a last line cut short by a
killed run) are skipped; unknown keys are ignored. Evaluation records {"eval_step": 100,
"eval_loss": ...} and checkpoint events {"event": "checkpoint", "step": 100, ...} are read
apart (read_events). When a step appears again (a resumed run rewrote it) the later record
wins. Records marked "skipped": true (a non-finite step that was not applied) are drawn as
red x marks on the loss panel. Exit status: 0 done, 2 bad input.
"""
import argparse
import json
import math
import os
import sys

PANELS = (  # key, title, y label, scale
    ("loss", "loss", "loss", 1.0),
    ("lr", "learning rate", "lr", 1.0),
    ("grad_norm", "gradient norm", "global L2 norm (before clipping)", 1.0),
    ("tokens_per_s", "throughput", "tokens / s", 1.0),
    ("mfu", "MFU", "% of peak (device.peak_tflops)", 100.0),
    ("mem_gib", "memory", "GiB (peak, max over ranks)", 1.0),
)


class InputError(Exception):
    """Bad input: one line on stderr, exit status 2."""


def number(v):
    """A finite float from a JSON number; None for anything else (null, NaN, a bool, text)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def read_metrics(path):
    """The per-step records of one file, sorted by step, the last record of a step winning;
    and the number of lines that were not JSON."""
    try:
        f = open(path, encoding="utf-8", errors="replace")
    except OSError as e:
        raise InputError(f"{path}: cannot open: {e.strerror}")
    by_step, bad = {}, 0
    with f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                bad += 1  # e.g. the last line of a run killed mid-write
                continue
            if not isinstance(rec, dict) or ("event" in rec and "loss" not in rec):
                continue  # not a step record (an event line, even one that names a step)
            step = number(rec.get("step"))
            if step is None:
                continue
            by_step[int(step)] = rec
    return [by_step[s] for s in sorted(by_step)], bad


def read_events(path):
    """The evaluation records of one file (sorted by eval_step, the last one of a step
    winning) and the steps at which checkpoints were written (sorted, once each)."""
    evals, ckpts = {}, set()
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if not isinstance(rec, dict):
                continue
            step = number(rec.get("eval_step"))
            if step is not None:
                evals[int(step)] = rec
            step = number(rec.get("step"))
            if rec.get("event") == "checkpoint" and step is not None:
                ckpts.add(int(step))
    return [evals[s] for s in sorted(evals)], sorted(ckpts)


def smooth(ys, window):
    """Trailing mean over the last `window` finite values (None kept as gaps)."""
    out, buf, total = [], [], 0.0
    for y in ys:
        if y is None:
            out.append(None)
            continue
        buf.append(y)
        total += y
        if len(buf) > window:
            total -= buf.pop(0)
        out.append(total / len(buf))
    return out


def plot(series, out, title=None, smooth_window=0, log_loss=False):
    """series: [(label, records, eval records, checkpoint steps)]. Writes the PNG at out."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(3, 2, figsize=(12, 11), sharex=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (label, recs, evals, ckpts) in enumerate(series):
        color = colors[k % len(colors)]
        steps = [int(r["step"]) for r in recs]
        for ax, (key, _, _, scale) in zip(axes.flat, PANELS):
            ys = [number(r.get(key)) for r in recs]
            ys = [None if y is None else y * scale for y in ys]
            xs_plot = steps
            yv = [math.nan if y is None else y for y in ys]
            if key == "loss" and smooth_window > 1:
                ax.plot(xs_plot, yv, color=color, alpha=0.3, linewidth=0.8)
                sm = smooth(ys, smooth_window)
                ax.plot(xs_plot, [math.nan if y is None else y for y in sm], color=color, label=label)
            else:
                ax.plot(xs_plot, yv, color=color, label=label, linewidth=1.2,
                        marker="." if len(steps) < 50 else None)
            if key == "loss" and evals:
                ax.plot([int(e["eval_step"]) for e in evals],
                        [math.nan if number(e.get("eval_loss")) is None else number(e.get("eval_loss")) for e in evals],
                        "o--", color=color, markersize=5, linewidth=0.8, label=f"{label}: eval (data.eval)")
            if key == "loss":
                for i, c in enumerate(ckpts):
                    ax.axvline(c, color=color, linestyle=":", linewidth=0.8, alpha=0.7,
                               label=f"{label}: checkpoints" if i == 0 else None)
            if key == "loss":
                skipped = [s for s, r in zip(steps, recs) if r.get("skipped") is True]
                if skipped:
                    ax.plot(skipped, [0.02] * len(skipped), "x", color="red",
                            transform=ax.get_xaxis_transform(), clip_on=False,
                            label=f"{label}: skipped steps ({len(skipped)})")
    for ax, (key, name, ylabel, _) in zip(axes.flat, PANELS):
        ax.set_title(name)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if (key == "loss" and log_loss) or key == "grad_norm":
            ax.set_yscale("log")
        if not any(number(r.get(key)) is not None for _, recs, _, _ in series for r in recs):
            ax.text(0.5, 0.5, f"no {name} in the metrics" + (" (cpu backend: no peak unless device.peak_tflops is set)"
                    if key == "mfu" else ""), ha="center", va="center", transform=ax.transAxes, fontsize="small")
            ax.set_yticks([])
        if key == "loss" or len(series) > 1:
            handles, _ = ax.get_legend_handles_labels()
            if handles:
                ax.legend(fontsize="small")
    for ax in axes[-1]:
        ax.set_xlabel("step")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    tmp = out + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, out)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="plot_metrics.py",
                                description="Plot ringtrain metrics JSONL files (loss, tokens/s, MFU, memory).")
    p.add_argument("files", nargs="*", help="metrics files (log.metrics), one line each in the plot")
    p.add_argument("--out", default="plot.png", help="PNG to write (default plot.png)")
    p.add_argument("--labels", help="comma-separated legend labels, one per file (default: file names)")
    p.add_argument("--title", help="figure title")
    p.add_argument("--smooth", type=int, default=0, metavar="N", help="also draw the loss averaged over N steps")
    p.add_argument("--log-loss", action="store_true", help="logarithmic loss axis")
    p.add_argument("--self-test", action="store_true", help="run the built-in test and exit")
    a = p.parse_args(argv)
    if not a.self_test and not a.files:
        p.error("no metrics files given")
    return a


def run(a):
    labels = a.labels.split(",") if a.labels else [os.path.basename(f) for f in a.files]
    if len(labels) != len(a.files):
        raise InputError(f"--labels has {len(labels)} names for {len(a.files)} files")
    series = []
    for path, label in zip(a.files, labels):
        recs, bad = read_metrics(path)
        if bad:
            print(f"plot_metrics.py: {path}: skipped {bad} line(s) that are not JSON", file=sys.stderr)
        if not recs:
            raise InputError(f"{path}: no records with a \"step\"")
        series.append((label, recs) + read_events(path))
    plot(series, a.out, a.title, a.smooth, a.log_loss)
    return series


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    if a.self_test:
        return self_test()
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("plot_metrics.py: needs matplotlib (pip install matplotlib)", file=sys.stderr)
        return 2
    try:
        series = run(a)
    except InputError as e:
        print(f"plot_metrics.py: {e}", file=sys.stderr)
        return 2
    n = ", ".join(f"{label}: {len(r)} steps, {len(e)} evaluations, {len(c)} checkpoints" for label, r, e, c in series)
    print(f"wrote {a.out} ({n})")
    return 0


# ---------------------------------------------------------------- self-test

def self_test():
    import selftest
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.image
    except ImportError as e:
        return selftest.skipped("plot_metrics.py", e)
    t = selftest.SelfTest("plot_metrics.py", "ringtrain_plot_")
    check, tmp = t.check, t.tmp


    def rec(step, loss, **extra):
        r = {"step": step, "loss": loss, "lr": 3e-4, "grad_norm": 1.0, "tokens": 4096, "loss_tokens": 4000,
             "tokens_per_s": 1000.0 + 10 * step, "mfu": 0.3 + 0.001 * step, "mem_gib": 10.0 + 0.01 * step,
             "step_s": 4.0}
        r.update(extra)
        return json.dumps(r)

    a_path, b_path = os.path.join(tmp, "a.jsonl"), os.path.join(tmp, "b.jsonl")
    lines = [rec(s, 5.0 * math.exp(-s / 30) + 1) for s in range(1, 41)]
    lines.insert(10, json.dumps({"event": "checkpoint", "step": 10, "name": "step-00000010", "gib": 0.1}))
    lines.insert(11, json.dumps({"eval_step": 10, "eval_loss": 3.0, "eval_ppl": math.exp(3.0)}))
    lines.insert(30, json.dumps({"eval_step": 20, "eval_loss": None, "eval_ppl": None}))
    lines.insert(31, json.dumps({"event": "checkpoint", "step": 20, "name": "step-00000020", "gib": 0.1}))
    lines.insert(5, "")
    lines.append(rec(41, None, skipped=True))
    lines.append('{"step": 42, "loss": NaN, "skipped": true}')
    lines += [rec(s, 1.5) for s in range(43, 46)]
    lines += [rec(s, 0.5) for s in range(44, 51)]  # a resume from step 43 rewrote 44..45
    lines.append('{"step": 46, "loss": 0.4')  # cut short
    with open(a_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(b_path, "w") as f:
        f.write("\n".join(rec(s, 4.0 * math.exp(-s / 20) + 1.2, future_key=[1, 2]) for s in range(1, 61)) + "\n")

    recs, bad = read_metrics(a_path)
    check(bad == 1, f"one bad line, got {bad}")
    check([r["step"] for r in recs] == list(range(1, 51)), "steps 1..50 once each, sorted")
    check(recs[42]["loss"] == 1.5 and recs[43]["loss"] == 0.5, "the later record of a step wins")
    check(recs[40].get("skipped") is True and number(recs[41]["loss"]) is None, "skipped steps kept as gaps")
    evals, ckpts = read_events(a_path)
    check([e["eval_step"] for e in evals] == [10, 20] and evals[0]["eval_loss"] == 3.0, "evaluation records")
    check(ckpts == [10, 20], f"checkpoint steps 10 and 20, got {ckpts}")

    out = os.path.join(tmp, "plot.png")
    rc = main([a_path, b_path, "--out", out, "--labels", "run a,run b", "--smooth", "5", "--title", "self-test"])
    check(rc == 0 and os.path.isfile(out), "plot written")
    if os.path.isfile(out):
        with open(out, "rb") as f:
            head = f.read(24)
        check(head[:8] == b"\x89PNG\r\n\x1a\n", "PNG signature")
        w, h = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
        check((w, h) == (1200, 1100), f"1200 x 1100 pixels, got {w} x {h}")
        check(os.path.getsize(out) > 20000, f"a non-trivial image ({os.path.getsize(out)} bytes)")
        img = matplotlib.image.imread(out)
        check(float(img[..., :3].std()) > 0.05, "the image is not blank")
        check(not os.path.exists(out + ".tmp.png"), "no temporary file left")
    check(main([os.path.join(tmp, "absent.jsonl"), "--out", out]) == 2, "a missing file is exit 2")
    empty = os.path.join(tmp, "empty.jsonl")
    with open(empty, "w") as f:
        f.write('{"event": "start"}\n')
    check(main([empty, "--out", out]) == 2, "a file without records is exit 2")
    check(main([a_path, "--out", out, "--labels", "x,y"]) == 2, "label count mismatch is exit 2")

    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
