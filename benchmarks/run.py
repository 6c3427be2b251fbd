#!/usr/bin/env python
"""Side-by-side benchmark: neonlearn vs PyTorch (CPU) vs scikit-learn (issue 5).

    python benchmarks/run.py [--quick] [--threads 1 2] [--out DIR] [--only W ...]

Runs every workload of :mod:`workloads` for neonlearn, PyTorch and sklearn's
MLPClassifier on the same data in the same run, at each thread count: one warm-up,
then ``--repeats`` timed runs; prints the medians, min-max, the speed ratio of
neonlearn to each peer and the peak memory; writes ``DIR/benchmarks.json`` and the
Markdown report ``doc/benchmarks.md`` (``--doc``).  The convolution and recurrent
layer micro-benchmarks (``bench_conv.py``, ``bench_recurrent.py``, each exposing
``run(quick, threads) -> list of dict rows``) are included when present.

How it measures
---------------
- One worker process per framework (``--worker``) imports only that framework; each
  workload then runs in a child forked from it, so every workload starts from the
  same state and its memory is measured on its own.  Children fork before any
  computation (OpenMP thread pools do not survive a fork).  The orchestrator runs
  the frameworks of one workload back to back, so that they see the same machine
  load (the cores may be shared with other jobs).
- Threads: ``threadpoolctl.threadpool_limits(n)`` limits BLAS and OpenMP (neonlearn's
  kernels read OpenMP's limit at call time; sklearn uses BLAS);
  ``torch.set_num_threads(n)`` for PyTorch (plus the same ``threadpool_limits``).
- Peak memory: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the child at the end
  minus its resident set size (``/proc/self/statm``) before the workload built its
  data and model: the high-water increase due to data + model + training buffers,
  over all thread counts.  RSS (not tracemalloc) because tracemalloc does not see
  PyTorch's allocator.
- Speed ratio ("x peer") = peer median time / neonlearn median time: above 1 means
  neonlearn is faster.
"""
import argparse
import contextlib
import datetime
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
# benchmark the working tree, not an installed copy
sys.path[:0] = [REPO, HERE]

import workloads as W  # noqa: E402

WORKER_GROUPS = {  # worker process -> frameworks it runs (and the layer benchmarks)
    "neonlearn": ["numpy", "neonlearn"],
    "torch": ["torch"],
    "sklearn": ["sklearn"],
}
EXTRAS = {
    "conv": ("bench_conv", "Convolution layers alone (forward + backward)"),
    "recurrent": ("bench_recurrent", "Recurrent layers alone"),
}


# ---- measuring (worker side) ----------------------------------------------------------
def rss_kb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


@contextlib.contextmanager
def thread_limit(framework, n):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n):
        if framework == "torch":
            import torch

            old = torch.get_num_threads()
            torch.set_num_threads(n)
            try:
                yield
            finally:
                torch.set_num_threads(old)
        else:
            yield


class _Timeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Timeout()


def measure(framework, workload, threads, repeats, quick, timeout=None):
    """Rows (one per thread count) for one framework on one workload.

    Each thread count gets ``timeout / len(threads)`` seconds; one that runs out is
    reported as ``timeout`` (with the runs it finished), the others still run.
    """
    base = rss_kb()
    try:
        unit = W.builder(framework, workload)(quick)
    except (NotImplementedError, ImportError) as exc:
        return [dict(workload=workload, framework=framework, threads=n,
                     status="not available", note=str(exc)) for n in threads]
    rows = []
    budget = max(int((timeout or 0) // max(len(threads), 1)), 0)
    old_handler = signal.signal(signal.SIGALRM, _on_alarm)
    for n in threads:
        times, cpu = [], []
        signal.alarm(budget)
        try:
            with thread_limit(framework, n):
                unit.run()  # warm-up
                for _ in range(repeats):
                    c0, t0 = time.process_time(), time.perf_counter()
                    unit.run()
                    times.append(time.perf_counter() - t0)
                    cpu.append(time.process_time() - c0)
            signal.alarm(0)
        except _Timeout:
            rows.append(dict(workload=workload, framework=framework, threads=n,
                             status="timeout", times_s=times,
                             note="did not finish warm-up + %d repeats in %ds (%d done)"
                             % (repeats, budget, len(times))))
            continue
        med = statistics.median(times)
        row = dict(workload=workload, framework=framework, threads=n, status="ok",
                   times_s=times, median_s=med, min_s=min(times), max_s=max(times),
                   items=unit.items, unit=unit.unit, throughput=unit.items / med,
                   cpu_s=statistics.median(cpu), note="; ".join(unit.notes))
        if unit.flops:
            row["gflops"] = unit.flops / med / 1e9
        rows.append(row)
    signal.signal(signal.SIGALRM, old_handler)
    peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024.0
    for row in rows:
        row["peak_mem_mb"] = max(peak_mb, 0.0)
    return rows


def measure_extra(name, threads, quick):
    module, desc = EXTRAS[name]
    base = rss_kb()
    try:
        mod = __import__(module)
    except ImportError as exc:
        return [dict(extra=name, status="not available",
                     note="benchmarks/%s.py is not there yet (%s)" % (module, exc))]
    rows = mod.run(quick=quick, threads=tuple(threads))
    peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024.0
    out = []
    for row in rows:
        row = dict(row)
        row.setdefault("status", "ok")
        row["extra"] = name
        row["process_peak_mem_mb"] = max(peak_mb, 0.0)
        out.append(row)
    return out


def in_child(fn, timeout):
    """Run ``fn()`` in a forked child; return its JSON-able result (or an error row)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        signal.alarm(timeout)
        try:
            result = {"ok": fn()}
        except BaseException as exc:  # noqa: BLE001 - report anything, never hang
            result = {"error": "%s: %s" % (type(exc).__name__, exc),
                      "traceback": traceback.format_exc()}
        with os.fdopen(w, "w") as f:
            json.dump(result, f, default=str)
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        return {"error": "child died (status %d%s)" % (
            status, ", timeout %ds" % timeout if os.WIFSIGNALED(status)
            and os.WTERMSIG(status) == signal.SIGALRM else "")}
    return json.loads(data)


def _import_framework(group):
    """Import the framework once, in the parent of the forked children."""
    if group == "torch":
        import torch  # noqa: F401
    elif group == "sklearn":
        import sklearn.model_selection  # noqa: F401
        import sklearn.neural_network  # noqa: F401
    else:
        import neonlearn  # noqa: F401
        import neonlearn.models  # noqa: F401
        import sklearn.model_selection  # noqa: F401
    import threadpoolctl  # noqa: F401


def worker(args):
    """Serve ``workload framework`` / ``extra name`` lines from the orchestrator.

    Each request runs in a forked child; the answer is one JSON line of rows.
    Idle workers wait on stdin, so the frameworks of one workload run back to back
    (minutes apart they would see different loads on a shared machine).
    """
    _import_framework(args.worker)
    out = sys.stdout
    sys.stdout = sys.stderr  # anything printed by a workload goes to stderr
    for line in sys.stdin:
        kind, name, *rest = line.split()
        t0 = time.perf_counter()
        if kind == "extra":
            res = in_child(lambda: measure_extra(name, args.threads, args.quick),
                           args.timeout)
            rows = res["ok"] if "ok" in res else [
                dict(extra=name, status="error", note=res["error"])]
            label = "%s: %d rows, %s" % (name, len(rows),
                                         rows[0].get("status") if rows else "-")
        else:
            fw = rest[0]
            res = in_child(lambda: measure(fw, name, args.threads, args.repeats,
                                           args.quick, args.timeout), args.timeout + 60)
            rows = res["ok"] if "ok" in res else [
                dict(workload=name, framework=fw, threads=n, status="error",
                     note=res["error"]) for n in args.threads]
            label = "%-20s %-9s %s" % (name, fw, " ".join(_short(r) for r in rows))
        if "error" in res:
            sys.stderr.write(res.get("traceback", res["error"]) + "\n")
        sys.stderr.write("  %s (%.1fs)\n" % (label, time.perf_counter() - t0))
        out.write(json.dumps(rows, default=str) + "\n")
        out.flush()


def _short(row):
    if row.get("status") != "ok":
        return "[%dt %s]" % (row["threads"], row.get("status"))
    return "[%dt %.4gs]" % (row["threads"], row["median_s"])


# ---- orchestration and report (parent side) -------------------------------------------
def machine_info():
    info = {"python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "loadavg_start": os.getloadavg()}
    try:
        with open("/proc/cpuinfo") as f:
            cpu = f.read()
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in cpu.splitlines()
                           if line.startswith("model name"))
        flags = next(line for line in cpu.splitlines() if line.startswith("flags"))
        info["avx512"] = "avx512f" in flags
    except (OSError, StopIteration):
        pass
    try:
        info["mem_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                                / 2 ** 30, 1)
    except (ValueError, OSError):
        pass
    versions = subprocess.run(
        [sys.executable, "-c", "import json, numpy, sklearn, threadpoolctl\n"
         "v = {'numpy': numpy.__version__, 'sklearn': sklearn.__version__}\n"
         "try:\n import torch; v['torch'] = torch.__version__\n"
         "except ImportError: v['torch'] = None\n"
         "v['blas'] = ['%s %s %s' % (i.get('internal_api'), i.get('version'), "
         "i.get('architecture')) for i in threadpoolctl.threadpool_info() "
         "if i['user_api'] == 'blas'][:1]\n"
         "print(json.dumps(v))"], capture_output=True, text=True, cwd=REPO)
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


def ratios(rows):
    """Per (workload, threads): neonlearn's speed relative to each peer."""
    by = {}
    for r in rows:
        if "workload" in r and r.get("status") == "ok":
            by.setdefault((r["workload"], r["threads"]), {})[r["framework"]] = r
    out = []
    for (workload, n), fws in by.items():
        nl = fws.get("neonlearn")
        if nl is None:
            continue
        for peer in ("torch", "sklearn"):
            if peer in fws:
                p = fws[peer]
                cpu_ratio = (p["cpu_s"] / nl["cpu_s"] if p.get("cpu_s") and nl.get("cpu_s")
                             else None)
                out.append(dict(workload=workload, threads=n, peer=peer,
                                speed_ratio=p["median_s"] / nl["median_s"],
                                cpu_ratio=cpu_ratio,
                                mem_ratio=(nl["peak_mem_mb"] / p["peak_mem_mb"]
                                           if p["peak_mem_mb"] > 0 else None)))
    return out


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


def _get(rows, workload, fw, n):
    for r in rows:
        if (r.get("workload") == workload and r.get("framework") == fw
                and r.get("threads") == n):
            return r
    return None


def targets(rows, rat, threads, n=None):
    """Issue 5's targets at ``n`` threads (default: the largest thread count)."""
    n = max(threads) if n is None else n
    lines = []

    def ratio(workload, peer):
        for r in rat:
            if r["workload"] == workload and r["peer"] == peer and r["threads"] == n:
                return r
        return None

    def check(label, workload, peer, goal):
        r = ratio(workload, peer)
        if r is None:
            nl = _get(rows, workload, "neonlearn", n)
            pr = _get(rows, workload, peer, n)
            if nl and nl.get("status") == "ok" and pr and pr.get("status") == "timeout":
                lines.append((label, "n/a", "%s timed out (%s); neonlearn %.3g s" % (
                    peer, pr.get("note", ""), nl["median_s"])))
                return
            why = nl.get("status") if nl else "not run"
            if nl and nl.get("status") == "ok":
                why = "%s: %s" % (peer, pr.get("status") if pr else "not run")
            lines.append((label, "n/a", "not measured (%s)" % why))
            return
        ok = r["speed_ratio"] >= goal
        lines.append((label, "met" if ok else "MISSED",
                      "%.2fx %s (goal %.2gx%s)%s" % (
                          r["speed_ratio"], peer, goal,
                          "" if ok else ", %.0f%% short" % (100 * (1 - r["speed_ratio"] / goal)),
                          "; CPU time %.2fx" % r["cpu_ratio"] if r.get("cpu_ratio") else "")))

    for w in ("w1_mlp_train", "w2_lenet_train", "w3_lstm_train", "w3_gru_train",
              "w4_embed_lstm_train"):
        check("training >= 1.0x PyTorch: %s" % w, w, "torch", 1.0)
    check("overhead-dominated (digits fit) >= 1.5x PyTorch", "digits_fit", "torch", 1.5)
    check("inference >= 1.2x PyTorch: w1_mlp_infer", "w1_mlp_infer", "torch", 1.2)
    check("digits fit >= 1.0x MLPClassifier", "digits_fit", "sklearn", 1.0)
    check("digits GridSearchCV >= 1.0x MLPClassifier", "digits_grid", "sklearn", 1.0)
    check("W1 training >= 1.0x MLPClassifier (not an issue target; reference)",
          "w1_mlp_train", "sklearn", 1.0)
    # memory
    # peak memory is per workload process (all thread counts), so any row will do
    worse = []
    for workload in W.WORKLOADS:
        nl = [r for r in rows if r.get("workload") == workload
              and r.get("framework") == "neonlearn" and r.get("peak_mem_mb")]
        pt = [r for r in rows if r.get("workload") == workload
              and r.get("framework") == "torch" and r.get("peak_mem_mb")]
        if nl and pt:
            worse.append((workload, nl[0]["peak_mem_mb"] / pt[0]["peak_mem_mb"]))
    if worse:
        bad = [(w, m) for w, m in worse if m > 1.0]
        lines.append(("peak memory <= PyTorch's", "met" if not bad else "MISSED",
                      "; ".join("%s %.2fx" % (w, m) for w, m in worse)))
    # convolution vs sgemm
    sg = _get(rows, "sgemm", "numpy", n)
    conv = [r for r in rows if r.get("extra") == "conv" and r.get("status") == "ok"]
    gkey = _gflops_key(conv)
    conv = [r for r in conv if isinstance(r.get(gkey), (int, float))]
    if sg and sg.get("status") == "ok" and conv and gkey:
        nl_conv = [r for r in conv if _framework_of(r) in (None, "neonlearn")
                   and r.get("threads") == n]
        for r in nl_conv:
            frac = float(r[gkey]) / sg["gflops"]
            lines.append(("conv >= 60%% of sgemm GFLOP/s: %s" % _conv_label(r),
                          "met" if frac >= 0.6 else "MISSED",
                          "%.0f%% (%.1f of %.1f GFLOP/s)" % (100 * frac, float(r[gkey]),
                                                             sg["gflops"])))
        lo = min(threads)
        for r in nl_conv:
            r1 = [x for x in conv if x.get("threads") == lo and _conv_label(x) == _conv_label(r)
                  and _framework_of(x) == _framework_of(r)]
            if r1 and lo != n:
                s = float(r[gkey]) / float(r1[0][gkey])
                lines.append(("conv %d threads >= 1.7x %d thread: %s" % (n, lo, _conv_label(r)),
                              "met" if s >= 1.7 else "MISSED", "%.2fx" % s))
    elif not conv:
        lines.append(("convolution targets", "n/a",
                      "bench_conv.py not available or failed in this run"))
    return lines


def _gflops_key(rows):
    for r in rows:
        for k in r:
            if "gflop" in k.lower() and isinstance(r[k], (int, float)):
                return k
    return None


def _framework_of(row):
    for k in ("framework", "impl", "library"):
        if k in row:
            return row[k]
    return None


def _conv_label(row):
    for k in ("case", "layer", "name", "shape", "workload", "config"):
        if k in row:
            return str(row[k])
    return "conv"


def markdown(doc):
    rows, rat, info, args = doc["rows"], doc["ratios"], doc["machine"], doc["args"]
    threads = args["threads"]
    L = []
    L.append("# Benchmarks: neonlearn vs PyTorch (CPU) vs scikit-learn")
    L.append("")
    L.append("*Generated by `python benchmarks/run.py%s` on %s; do not edit by hand "
             "(hand-written notes go in `benchmarks/NOTES.md`, included below).*" % (
                 " --quick" if args["quick"] else "", doc["date"]))
    L.append("")
    L.append("Machine: %s, %s CPUs%s, %s GiB; Python %s, numpy %s (BLAS: %s), torch %s, "
             "scikit-learn %s; neonlearn commit %s%s.  Load average %s at the start and "
             "%s at the end of the run." % (
                 info.get("cpu", "?"), info.get("cpus"),
                 " (AVX-512)" if info.get("avx512") else "", info.get("mem_gib", "?"),
                 info.get("python"), info.get("numpy"), ", ".join(info.get("blas", [])),
                 info.get("torch"), info.get("sklearn"), info.get("neonlearn_commit"),
                 " (with uncommitted changes)" if info.get("worktree_dirty") else "",
                 "/".join("%.1f" % x for x in info["loadavg_start"]),
                 "/".join("%.1f" % x for x in info["loadavg_end"])))
    L.append("")
    L.append("Method: float32 everywhere, the same arrays for every framework (seeded), one "
             "warm-up then %d timed repeats at each thread count (%s); medians with min-max. "
             "**Speed ratio = peer median time / neonlearn median time** (above 1: neonlearn "
             "faster).  Peak memory = increase of the workload process's peak RSS "
             "(`ru_maxrss`) over its RSS before building data and model (data + model + "
             "training buffers).  CPU s = median process CPU time per unit (all threads, "
             "spinning included); at 1 thread it is a load-independent measure of the work "
             "done, and CPU ratio = peer CPU s / neonlearn CPU s.  Threads: `threadpoolctl.threadpool_limits` (BLAS + OpenMP) "
             "and `torch.set_num_threads`.  The machine is shared with other builds and "
             "tests, so timings are noisy (see the min-max and the load averages)." % (
                 args["repeats"], ", ".join(map(str, threads))))
    L.append("")
    L.append("## Issue 5 targets")
    L.append("")
    L.append("The issue sets them at %d threads (first columns); the same checks at the "
             "other thread counts are given for reference." % max(threads))
    L.append("")
    counts = sorted(threads, reverse=True)
    per_n = [targets(rows, rat, threads, n) for n in counts]
    head = "| target |" + "".join(" %d thread%s | measured |" % (n, "s" if n > 1 else "")
                                  for n in counts)
    L.append(head)
    L.append("|---|" + "---|---|" * len(counts))
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
    L.append("")
    L.append("## Workloads")
    L.append("")
    L.append("| workload | threads | framework | median s | min-max s | items/s | "
             "neonlearn speed ratio | CPU s | CPU ratio | peak mem MB |")
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    for workload, (desc, fws) in W.WORKLOADS.items():
        for n in threads:
            for fw in fws:
                r = _get(rows, workload, fw, n)
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
                        else _fmt(r["throughput"]))
                L.append("| %s | %d | %s | %s | %s-%s | %s | %s | %s | %s | %s |" % (
                    workload, n, fw, _fmt(r["median_s"], 4), _fmt(r["min_s"], 3),
                    _fmt(r["max_s"], 3), rate, ratio, _fmt(r.get("cpu_s"), 4), cratio,
                    _fmt(r["peak_mem_mb"])))
    L.append("")
    L.append("Workloads:")
    L.append("")
    for workload, (desc, fws) in W.WORKLOADS.items():
        notes = sorted({r.get("note") for r in rows if r.get("workload") == workload
                        and r.get("note")})
        L.append("- `%s`: %s.%s" % (workload, desc,
                                    (" Notes: " + "; ".join(notes) + ".") if notes else ""))
    L.append("")
    for name, (module, desc) in EXTRAS.items():
        ext = [r for r in rows if r.get("extra") == name]
        if not ext:
            continue
        L.append("## %s (`benchmarks/%s.py`)" % (desc, module))
        L.append("")
        if all(r.get("status") != "ok" for r in ext):
            L.append("Not available in this run: %s" % ext[0].get("note", ""))
            L.append("")
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
    notes = os.path.join(HERE, "NOTES.md")
    if os.path.exists(notes):
        with open(notes) as f:
            L.append(f.read().rstrip())
        L.append("")
    return "\n".join(L) + "\n"


def print_table(rows, rat):
    print("\n%-20s %3s %-9s %10s %21s %12s %8s %9s" % (
        "workload", "thr", "framework", "median s", "min-max s", "items/s", "nl ratio",
        "peak MB"))
    for r in rows:
        if "workload" not in r:
            continue
        if r.get("status") != "ok":
            print("%-20s %3d %-9s %s: %s" % (r["workload"], r["threads"], r["framework"],
                                            r["status"], r.get("note", "")[:80]))
            continue
        rr = [x for x in rat if x["workload"] == r["workload"] and x["threads"] == r["threads"]
              and x["peer"] == r["framework"]]
        print("%-20s %3d %-9s %10.4g %10.4g-%-10.4g %12.5g %8s %9.1f" % (
            r["workload"], r["threads"], r["framework"], r["median_s"], r["min_s"],
            r["max_s"], r.get("gflops", r["throughput"]),
            "%.2fx" % rr[0]["speed_ratio"] if rr else "", r["peak_mem_mb"]))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller workloads, 3 repeats "
                   "(under two minutes)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=None,
                   help="timed repeats after the warm-up (default 3 quick, 5 full)")
    p.add_argument("--out", default=os.path.join(HERE, "results"),
                   help="folder for benchmarks.json (default benchmarks/results)")
    p.add_argument("--doc", default=os.path.join(REPO, "doc", "benchmarks.md"),
                   help="Markdown report to write ('' to skip)")
    p.add_argument("--only", nargs="+", default=None,
                   help="run only these workloads (%s) and extras (%s)" % (
                       ", ".join(W.WORKLOADS), ", ".join(EXTRAS)))
    p.add_argument("--frameworks", nargs="+", default=list(WORKER_GROUPS),
                   choices=list(WORKER_GROUPS),
                   help="worker processes to run (neonlearn also runs numpy's sgemm)")
    p.add_argument("--timeout", type=int, default=None,
                   help="seconds per workload and framework, split over the thread counts (default 120 quick, 600 full)")
    p.add_argument("--budget", type=int, default=0,
                   help="overall seconds; workloads not started by then are reported "
                   "as skipped (default: no limit)")
    p.add_argument("--render", default=None, metavar="JSON",
                   help="only rewrite the Markdown report from a saved JSON result")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.repeats is None:
        args.repeats = 3 if args.quick else 5
    if args.timeout is None:
        args.timeout = 120 if args.quick else 600
    if args.worker:
        return worker(args)
    if args.render:
        with open(args.render) as f:
            doc = json.load(f)
        with open(args.doc, "w") as f:
            f.write(markdown(doc))
        print("wrote %s from %s" % (args.doc, args.render))
        return

    start = time.perf_counter()
    info = machine_info()
    base_cmd = [sys.executable, os.path.abspath(__file__), "--repeats", str(args.repeats),
                "--timeout", str(args.timeout), "--threads"] + [str(n) for n in args.threads]
    if args.quick:
        base_cmd.append("--quick")
    workers = {}
    for group in args.frameworks:  # start all workers: their imports overlap
        workers[group] = subprocess.Popen(base_cmd + ["--worker", group], cwd=REPO,
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          text=True, bufsize=1)

    def ask(group, request, fallback):
        proc = workers.get(group)
        if proc is None or proc.poll() is not None:
            return fallback
        proc.stdin.write(request + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        try:
            return json.loads(line)
        except ValueError:
            sys.stderr.write("%s worker failed on %r\n" % (group, request))
            return fallback

    rows = []

    def over_budget():
        return args.budget and time.perf_counter() - start > args.budget

    for workload, (desc, fws) in W.WORKLOADS.items():
        if args.only and workload not in args.only:
            continue
        sys.stderr.write("[%s]\n" % workload)
        for fw in fws:
            group = next((g for g, f in WORKER_GROUPS.items() if fw in f), None)
            if group not in workers:
                continue
            if over_budget():
                rows.extend(dict(workload=workload, framework=fw, threads=n,
                                 status="skipped", note="--budget %ds used up" % args.budget)
                            for n in args.threads)
                continue
            rows.extend(ask(group, "run %s %s" % (workload, fw), [
                dict(workload=workload, framework=fw, threads=n, status="error",
                     note="worker failed") for n in args.threads]))
    for name in EXTRAS:
        if (args.only and name not in args.only) or "neonlearn" not in workers:
            continue
        if over_budget():
            rows.append(dict(extra=name, status="skipped",
                             note="--budget %ds used up" % args.budget))
            continue
        sys.stderr.write("[%s]\n" % name)
        rows.extend(ask("neonlearn", "extra %s" % name,
                        [dict(extra=name, status="error", note="worker failed")]))
    for proc in workers.values():
        if proc.poll() is None:
            proc.stdin.close()
        proc.wait()
    info["loadavg_end"] = os.getloadavg()
    rat = ratios(rows)
    doc = dict(date=datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M UTC"), machine=info, args=dict(
        quick=args.quick, threads=args.threads, repeats=args.repeats, only=args.only,
        budget=args.budget, timeout=args.timeout),
        rows=rows, ratios=rat, wall_s=time.perf_counter() - start)
    print_table(rows, rat)
    print("\nTargets (issue 5):")
    for label, status, text in targets(rows, rat, args.threads):
        print("  %-7s %s: %s" % (status, label, text))
    os.makedirs(args.out, exist_ok=True)
    out_json = os.path.join(args.out, "benchmarks%s.json" % ("_quick" if args.quick else ""))
    with open(out_json, "w") as f:
        json.dump(doc, f, indent=1, default=str)
    print("\nwrote %s" % out_json)
    if args.doc:
        with open(args.doc, "w") as f:
            f.write(markdown(doc))
        print("wrote %s" % args.doc)
    print("total %.0fs" % (time.perf_counter() - start))


if __name__ == "__main__":
    main()
