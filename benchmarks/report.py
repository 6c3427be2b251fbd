"""The benchmark report: machine description, console table, Markdown and the chart.

The Markdown report (``doc/benchmarks.md``) and the chart of the speed ratios
(``doc/benchmarks_ratios.png``) are generated from the JSON result of ``run.py``;
``run.py --render JSON`` rewrites them from a saved result.
"""
import json
import os
import platform
import subprocess
import sys

import workloads as W
from targets import get, goal, targets

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# what the neonlearn worker reports about its kernels: the ISA path is read with
# getattr so that a build without run-time dispatch reports "n/a"
_VERSIONS = r"""
import json, os, numpy, sklearn, threadpoolctl
v = {'numpy': numpy.__version__, 'sklearn': sklearn.__version__}
for name in ('torch', 'onnxruntime'):
    try:
        v[name] = __import__(name).__version__
    except ImportError:
        v[name] = None
v['blas'] = ['%s %s %s' % (i.get('internal_api'), i.get('version'), i.get('architecture'))
             for i in threadpoolctl.threadpool_info() if i['user_api'] == 'blas'][:1]
try:
    from neonlearn._kernels import _isa
    get_isa, supported = getattr(_isa, 'get_isa', None), getattr(_isa, 'supported', None)
    v['isa'] = get_isa() if get_isa else None
    v['isa_supported'] = supported() if supported else None
except ImportError:
    v['isa'] = None
except Exception as exc:
    v['isa'] = 'unknown (%s)' % type(exc).__name__
v['isa_forced'] = os.environ.get('NEONLEARN_ISA')
print(json.dumps(v))
"""


def machine_info():
    """CPU model and features, memory, library versions, the kernels' ISA path."""
    info = {"python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "loadavg_start": os.getloadavg()}
    try:
        with open("/proc/cpuinfo") as f:
            cpu = f.read()
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in cpu.splitlines()
                           if line.startswith("model name"))
        flags = next(line for line in cpu.splitlines() if line.startswith("flags")).split()
        info["avx512"] = "avx512f" in flags
        info["avx2_fma"] = "avx2" in flags and "fma" in flags
    except (OSError, StopIteration):
        pass
    try:
        info["mem_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                                / 2 ** 30, 1)
    except (ValueError, OSError):
        pass
    versions = subprocess.run([sys.executable, "-c", _VERSIONS], capture_output=True,
                              text=True, cwd=REPO)
    try:
        info.update(json.loads(versions.stdout))
    except ValueError:
        pass
    try:
        info["neonlearn_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
            cwd=REPO).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, cwd=REPO).stdout.strip()
        info["worktree_dirty"] = bool(dirty)
    except OSError:
        pass
    return info


def _fmt(x, digits=3):
    if x is None:
        return "-"
    if isinstance(x, float):
        if x == 0:
            return "0"
        if abs(x) >= 1000:
            return "%.0f" % x
        return "%.*g" % (digits, x)
    return str(x)


def machine_kind(info):
    """``avx512``, ``avx2`` or ``generic``: the CPU kind a result file is kept under.
    Results from before the AVX2 flag was recorded tell it by OpenBLAS's kernels."""
    if info.get("avx512"):
        return "avx512"
    blas = " ".join(info.get("blas") or [])
    avx2 = info.get("avx2_fma", "Haswell" in blas or "Zen" in blas)
    return "avx2" if avx2 else "generic"


def result_kind(info):
    """The name a result is kept under: the machine kind, plus the kernels' path
    when ``NEONLEARN_ISA`` lowered it (``avx512_isa_avx2``), so that runs of the
    same machine on each path are kept side by side."""
    kind = machine_kind(info)
    forced, isa = info.get("isa_forced"), info.get("isa")
    if forced and isa and isa != info.get("isa_supported"):
        kind += "_isa_" + isa
    return kind


def _isa_text(info):
    isa = info.get("isa") or "n/a (no run-time ISA dispatch in this build)"
    if info.get("isa_forced"):
        isa += " (NEONLEARN_ISA=%s; the CPU supports %s)" % (
            info["isa_forced"], info.get("isa_supported") or "?")
    return isa


def _sgemm_text(rows, threads):
    rates = []
    for n in threads:
        r = get(rows, "sgemm", "numpy", n)
        if r and r.get("status") == "ok":
            rates.append("%.0f GFLOP/s at %d thread%s" % (r["gflops"], n, "s" if n > 1 else ""))
    return ", ".join(rates) or "not measured"


def _targets_table(doc):
    rows, rat, threads = doc["rows"], doc["ratios"], doc["args"]["threads"]
    counts = sorted(threads, reverse=True)
    avx512 = bool(doc["machine"].get("avx512"))
    per_n = [targets(rows, rat, threads, n, avx512=avx512) for n in counts]
    L = ["| target |" + "".join(" %d thread%s | measured |" % (n, "s" if n > 1 else "")
                                for n in counts),
         "|---|" + "---|---|" * len(counts)]
    for label, _, _ in per_n[0]:
        cells = []
        for lines in per_n:
            match = next((x for x in lines if x[0] == label), None)
            if match is None:
                cells += ["", ""]
            else:
                st = match[1]
                cells += ["**%s**" % st if st == "MISSED" else st, match[2]]
        L.append("| %s | %s |" % (label, " | ".join(cells)))
    return L


def _workload_table(rows, rat, threads):
    L = ["| workload | threads | framework | median s | min-max s | items/s | "
         "neonlearn speed ratio | CPU s | CPU ratio | peak mem MB |",
         "|---|---|---|---|---|---|---|---|---|---|"]
    for workload, (desc, fws) in W.WORKLOADS.items():
        for n in threads:
            for fw in fws:
                r = get(rows, workload, fw, n)
                if r is None:
                    continue
                if r.get("status") != "ok":
                    L.append("| %s | %d | %s | %s | | | | | | |" % (
                        workload, n, fw, "%s: %s" % (r.get("status"), r.get("note", ""))))
                    continue
                rr = [x for x in rat if x["workload"] == workload and x["threads"] == n
                      and x["peer"] == fw]
                ratio = "%.2fx" % rr[0]["speed_ratio"] if rr else ""
                cratio = ("%.2fx" % rr[0]["cpu_ratio"]
                          if rr and rr[0].get("cpu_ratio") else "")
                rate = ("%.1f GFLOP/s" % r["gflops"] if "gflops" in r
                        else "%s %s" % (_fmt(r["throughput"]), r.get("unit", "")))
                L.append("| %s | %d | %s | %s | %s-%s | %s | %s | %s | %s | %s |" % (
                    workload, n, fw, _fmt(r["median_s"], 4), _fmt(r["min_s"], 3),
                    _fmt(r["max_s"], 3), rate, ratio, _fmt(r.get("cpu_s"), 4), cratio,
                    _fmt(r.get("peak_mem_mb"))))
    return L


def _extras_tables(rows, extras):
    L = []
    for name, (module, desc) in extras.items():
        ext = [r for r in rows if r.get("extra") == name]
        if not ext:
            continue
        L += ["## %s (`benchmarks/%s.py`)" % (desc, module), ""]
        if all(r.get("status") != "ok" for r in ext):
            L += ["Not available in this run: %s" % ext[0].get("note", ""), ""]
            continue
        keys = []
        for r in ext:
            for k in r:
                if k not in keys and k not in ("extra", "status", "process_peak_mem_mb"):
                    keys.append(k)
        L.append("| " + " | ".join(keys) + " |")
        L.append("|" + "---|" * len(keys))
        for r in ext:
            L.append("| " + " | ".join(_fmt(r.get(k), 4) if not isinstance(r.get(k), list)
                                       else "" for k in keys) + " |")
        L.append("")
    return L


def _machine_line(info, rows, threads):
    kind = {"avx512": "AVX-512", "avx2": "AVX2 + FMA"}.get(machine_kind(info), "no AVX2")
    return ("%s (%s), %s CPUs, %s GiB; kernels' ISA path: %s; numpy sgemm 2048^3: %s"
            % (info.get("cpu", "?"), kind, info.get("cpus"), info.get("mem_gib", "?"),
               _isa_text(info), _sgemm_text(rows, threads)))


def markdown(doc, extras, chart=None, others=()):
    """The report; ``chart``: the PNG's path relative to the report, or None;
    ``others``: results of other machine kinds, whose targets are shown too."""
    rows, rat, info, args = doc["rows"], doc["ratios"], doc["machine"], doc["args"]
    threads = args["threads"]
    L = ["# Benchmarks: neonlearn vs PyTorch (CPU), ONNX Runtime and scikit-learn", "",
         "*Generated by `python benchmarks/run.py%s` on %s; do not edit by hand "
         "(hand-written notes go in `benchmarks/NOTES.md`, included below).*" % (
             " --quick" if args["quick"] else "", doc["date"]), ""]
    L.append("Machine: %s.  Python %s, numpy %s (BLAS: %s), torch %s, ONNX Runtime %s, "
             "scikit-learn %s; neonlearn commit %s%s.  Load average %s at the start and "
             "%s at the end of the run." % (
                 _machine_line(info, rows, threads), info.get("python"), info.get("numpy"),
                 ", ".join(info.get("blas", [])),
                 info.get("torch"), info.get("onnxruntime"), info.get("sklearn"),
                 info.get("neonlearn_commit"),
                 " (with uncommitted changes)" if info.get("worktree_dirty") else "",
                 "/".join("%.1f" % x for x in info["loadavg_start"]),
                 "/".join("%.1f" % x for x in info["loadavg_end"])))
    L.append("")
    L.append("Method: float32 everywhere, the same arrays for every framework (seeded).  "
             "For each workload and thread count (%s) every framework runs one warm-up, "
             "then the frameworks alternate, one timed run each in turn (the first one "
             "rotating), %d times, with a pause of 0.25 s before each run (the thread "
             "pools of the previous framework stop spinning); medians with min-max.  "
             "**Speed ratio = peer median time / neonlearn median time** (above 1: "
             "neonlearn faster).  Peak memory = increase of the workload process's peak "
             "RSS (`ru_maxrss`) over its RSS before building data and model.  CPU s = "
             "median process CPU time per unit (all threads, spinning included); CPU "
             "ratio = peer CPU s / neonlearn CPU s.  Threads: "
             "`threadpoolctl.threadpool_limits` (BLAS + OpenMP), `torch.set_num_threads`"
             ", ONNX Runtime's `intra_op_num_threads`.  Timings on a shared machine are "
             "noisy: see the min-max and the load averages." % (
                 ", ".join(map(str, threads)), args["repeats"]))
    L += ["", "## Issue 15 targets", "",
          "The issue sets them at %d threads (first columns); the same checks at the "
          "other thread counts are given for reference." % max(threads), ""]
    L += _targets_table(doc)
    if chart:
        L += ["", "![Speed ratios](%s)" % chart]
    for other in others:
        o_info, o_threads = other["machine"], other["args"]["threads"]
        L += ["", "### The same targets on %s (`run.py%s`, %s, commit %s)" % (
            _machine_line(o_info, other["rows"], o_threads),
            " --quick" if other["args"].get("quick") else "", other["date"],
            o_info.get("neonlearn_commit")), "",
            "Kept from `benchmarks/results/`: workloads and method as of that commit "
            "(see the notes below); a target it did not measure is n/a.", ""]
        L += _targets_table(other)
    L += ["", "## Workloads", ""]
    L += _workload_table(rows, rat, threads)
    L += ["", "Workloads:", ""]
    for workload, (desc, fws) in W.WORKLOADS.items():
        notes = sorted({r.get("note") for r in rows if r.get("workload") == workload
                        and r.get("note")})
        L.append("- `%s`: %s.%s" % (workload, desc,
                                    (" Notes: " + "; ".join(notes) + ".") if notes else ""))
    L.append("")
    L += _extras_tables(rows, extras)
    notes = os.path.join(HERE, "NOTES.md")
    if os.path.exists(notes):
        with open(notes) as f:
            L.append(f.read().rstrip())
        L.append("")
    return "\n".join(L) + "\n"


def chart(doc, path):
    """A PNG of the speed ratios (peer time / neonlearn time) per workload, one bar
    per peer and thread count measured, on a log scale with the 1.0 line and the
    issue's goals as black ticks; False when matplotlib is missing or nothing to
    draw."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rat = doc["ratios"]
    threads = sorted(doc["args"]["threads"])
    series = [(peer, n) for peer in ("torch", "onnxruntime", "sklearn") for n in threads
              if any(r["peer"] == peer and r["threads"] == n for r in rat)]
    names = [w for w in W.WORKLOADS if any(r["workload"] == w for r in rat)]
    if not names or not series:
        return False
    colors = dict(zip(series, plt.get_cmap("tab10").colors))
    height, gap = 0.22, 0.35
    bars, ticks, y = [], [], 0.0
    for w in names:
        first = y
        for peer, n in series:
            r = next((r for r in rat if r["workload"] == w and r["peer"] == peer
                      and r["threads"] == n), None)
            if r is not None:
                bars.append((y, r["speed_ratio"], (peer, n), goal(w, peer)))
                y += height
        ticks.append((first + y - height) / 2)
        y += gap
    fig, ax = plt.subplots(figsize=(8, 1.2 + y))
    labelled = set()
    for yy, ratio, key, g in bars:
        peer, n = key
        label = None if key in labelled else "vs %s, %d thread%s" % (
            peer, n, "s" if n > 1 else "")
        labelled.add(key)
        ax.barh(yy, ratio, height=height * 0.9, color=colors[key], label=label)
        if g is not None:
            ax.plot([g, g], [yy - height / 2, yy + height / 2], color="black",
                    linewidth=2)
    ax.set_xscale("log", base=2)
    lo = min(0.25, min(b[1] for b in bars) / 1.2)
    hi = max(4.0, max(b[1] for b in bars) * 1.2)
    ax.set_xlim(lo, hi)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: "%gx" % v))
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(ticks)
    ax.set_yticklabels(names)
    ax.set_ylim(y - gap + height / 2, -height)
    ax.set_xlabel("peer time / neonlearn time (right of 1x: neonlearn faster; black "
                  "ticks: the issue's goals)")
    ax.set_title("neonlearn vs peers: %s, %s" % (doc["machine"].get("cpu", ""),
                                                  doc["date"]), fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def print_table(rows, rat):
    print("\n%-20s %3s %-11s %10s %21s %12s %8s %9s" % (
        "workload", "thr", "framework", "median s", "min-max s", "items/s", "nl ratio",
        "peak MB"))
    for r in rows:
        if "workload" not in r:
            continue
        if r.get("status") != "ok":
            print("%-20s %3d %-11s %s: %s" % (r["workload"], r["threads"], r["framework"],
                                             r["status"], r.get("note", "")[:80]))
            continue
        rr = [x for x in rat if x["workload"] == r["workload"] and x["threads"] == r["threads"]
              and x["peer"] == r["framework"]]
        print("%-20s %3d %-11s %10.4g %10.4g-%-10.4g %12.5g %8s %9.1f" % (
            r["workload"], r["threads"], r["framework"], r["median_s"], r["min_s"],
            r["max_s"], r.get("gflops", r["throughput"]),
            "%.2fx" % rr[0]["speed_ratio"] if rr else "", r.get("peak_mem_mb") or 0.0))

