"""Shared pieces of the extra micro-benchmarks (``bench_conv.py``, ``bench_recurrent.py``):
timing, the optional PyTorch peer, the rows they return to ``run.py`` and printing."""
import argparse
import statistics
import time


def median_s(fn, repeats):
    """Median seconds of ``repeats`` timed calls of ``fn`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def torch_with_threads(n_threads):
    """The ``torch`` module set to ``n_threads``, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(n_threads)
    return torch


def add_rows(rows, case, threads, t_ours, t_torch, flops=None, samples=None):
    """Append the neonlearn row (with its speed ratio) and, if timed, PyTorch's row.

    ``flops`` (per timed call) adds GFLOP/s, ``samples`` adds samples per second.
    """
    for framework, t in (("neonlearn", t_ours), ("torch", t_torch)):
        if t is None:
            continue
        row = dict(case=case, framework=framework, threads=threads, median_ms=1e3 * t)
        if flops is not None:
            row["gflops"] = flops / t / 1e9
        if samples is not None:
            row["samples_per_s"] = samples / t
        if framework == "neonlearn":
            row["speedup_vs_torch"] = t_torch / t if t_torch else None
        rows.append(row)


def time_pair(rows, case, threads, ours, theirs, repeats, **per_call):
    """Time ``ours`` and (when not None) PyTorch's ``theirs``, then :func:`add_rows`."""
    t_ours = median_s(ours, repeats)
    t_torch = median_s(theirs, repeats) if theirs else None
    add_rows(rows, case, threads, t_ours, t_torch, **per_call)


def print_rows(rows, width=44):
    print("%-*s %-10s %3s %10s %9s %10s %10s" % (width, "case", "framework", "thr",
                                                  "median ms", "GFLOP/s", "samples/s",
                                                  "torch/ours"))
    for r in rows:
        g, sps, s = r.get("gflops"), r.get("samples_per_s"), r.get("speedup_vs_torch")
        print("%-*s %-10s %3d %10.2f %9s %10s %10s" % (
            width, r["case"], r["framework"], r["threads"], r["median_ms"],
            "%.1f" % g if g is not None else "-", "%.0f" % sps if sps is not None else "-",
            "%.2f" % s if s is not None else "-"))


def main(doc, run, argv=None):
    """Command line of an extra benchmark: ``[--quick] [--threads 1 2]``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[1])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)
    print_rows(run(quick=args.quick, threads=tuple(args.threads)))
