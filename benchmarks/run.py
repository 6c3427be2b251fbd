#!/usr/bin/env python
"""Side-by-side benchmark: neonlearn vs PyTorch (CPU), ONNX Runtime and scikit-learn.

    python benchmarks/run.py [--quick] [--threads 1 2] [--out DIR] [--only W ...]
    python benchmarks/run.py --smoke --only w1_mlp_infer   # one quick repeat, no report

Runs every workload of :mod:`workloads` for neonlearn and its peers on the same data
in the same run, at each thread count; prints the medians, min-max, the speed ratio
of neonlearn to each peer and the peak memory; writes ``DIR/benchmarks.json``, the
Markdown report ``doc/benchmarks.md`` (``--doc``) and a PNG chart of the ratios beside
it.  The convolution and recurrent layer micro-benchmarks (``bench_conv.py``,
``bench_recurrent.py``, each exposing ``run(quick, threads) -> list of dict rows``)
are included when present.  The targets checked are issue 15's (:mod:`targets`); the
report is :mod:`report`.

How it measures
---------------
- One worker process per framework (``--worker``) imports only that framework.  Each
  workload runs in a child forked from it, so every workload starts from the same
  state and its memory is measured on its own.  Children fork before any
  computation (OpenMP thread pools do not survive a fork).
- Same-run alternation: the children of all frameworks of a workload are open at
  once.  At each thread count every framework runs its warm-up, then the
  orchestrator asks each framework in turn for one timed run, ``--repeats`` rounds,
  the first framework of a round rotating, so that all of them see the same machine
  load (the cores may be shared with other jobs).  Before each run the orchestrator
  waits ``SETTLE_S``: the thread pools of the framework that ran before (OpenBLAS,
  OpenMP, ONNX Runtime) spin for a while after their work and would take the cores
  from the next one.
- Threads: ``threadpoolctl.threadpool_limits(n)`` limits BLAS and OpenMP (neonlearn's
  kernels read OpenMP's limit at call time; sklearn uses BLAS);
  ``torch.set_num_threads(n)`` for PyTorch; ONNX Runtime gets a session with
  ``intra_op_num_threads = n``.
- Peak memory: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the child at the end
  minus its resident set size (``/proc/self/statm``) before the workload built its
  data and model: the high-water increase due to data + model + buffers, over all
  thread counts.  RSS (not tracemalloc) because tracemalloc does not see PyTorch's
  allocator.
- Wall time (``perf_counter``) and process CPU time (``process_time``) per run.
- Speed ratio ("x peer") = peer median time / neonlearn median time: above 1 means
  neonlearn is faster.
"""
import argparse
import contextlib
import datetime
import glob
import json
import math
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from _paths import use_working_tree  # noqa: E402

use_working_tree()

import report  # noqa: E402
import registry  # noqa: E402
import workloads as W  # noqa: E402
from targets import ratios, targets  # noqa: E402

WORKER_GROUPS = {  # worker process -> frameworks it runs (and the layer benchmarks)
    "neonlearn": ["numpy", "neonlearn"],
    "torch": ["torch"],
    "onnxruntime": ["onnxruntime"],
    "sklearn": ["sklearn"],
}
SETTLE_S = 0.25  # pause before each run (see "Same-run alternation")
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


def _reply(out, obj):
    out.write(json.dumps(obj, default=str) + "\n")
    out.flush()


def serve(framework, workload, args, out):
    """In a forked child: build one workload's unit, then answer the orchestrator's
    requests, one JSON line each: the answer to ``open`` (the unit's items, unit,
    FLOPs and notes), then ``run N`` (one run at N threads: the warm-up or a timed
    run) and ``close`` (the peak memory; then exit).

    Each thread count has ``timeout / len(threads)`` seconds for its warm-up and
    repeats; a run that goes over is answered ``timeout``.
    """
    base = rss_kb()
    try:
        unit = registry.builder(framework, workload)(args.quick)
    except (NotImplementedError, ImportError) as exc:
        return _reply(out, {"status": "not available", "note": str(exc)})
    except Exception as exc:  # noqa: BLE001 - reported as the workload's error
        traceback.print_exc()
        return _reply(out, {"status": "error", "note": "%s: %s" % (type(exc).__name__,
                                                                    exc)})
    _reply(out, dict(status="ok", items=unit.items, unit=unit.unit, flops=unit.flops,
                     notes=unit.notes))
    budget = max(args.timeout // max(len(args.threads), 1), 1)
    spent = {}
    signal.signal(signal.SIGALRM, _on_alarm)
    for line in iter(sys.stdin.readline, ""):
        request, *rest = line.split()
        if request == "close":
            peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
            return _reply(out, dict(peak_mem_mb=max(peak_kb / 1024.0, 0.0),
                                    budget_s=budget))
        n = int(rest[0])
        left = budget - spent.get(n, 0.0)
        if left <= 0:
            _reply(out, {"timeout": True})
            continue
        start = time.perf_counter()
        try:
            signal.alarm(max(int(math.ceil(left)), 1))
            with thread_limit(framework, n):
                if unit.set_threads is not None:
                    unit.set_threads(n)
                c0, t0 = time.process_time(), time.perf_counter()
                unit.run()
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            signal.alarm(0)
            _reply(out, {"wall": wall, "cpu": cpu})
        except _Timeout:
            _reply(out, {"timeout": True})
        except Exception as exc:  # noqa: BLE001 - reported, the others go on
            signal.alarm(0)
            traceback.print_exc()
            _reply(out, {"error": "%s: %s" % (type(exc).__name__, exc)})
        spent[n] = spent.get(n, 0.0) + time.perf_counter() - start


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
    elif group == "onnxruntime":
        import onnxruntime  # noqa: F401
        import torch  # noqa: F401, F811 - exports the models
    elif group == "sklearn":
        import sklearn.model_selection  # noqa: F401
        import sklearn.neural_network  # noqa: F401
    else:
        import neonlearn  # noqa: F401
        import neonlearn.models  # noqa: F401
        import sklearn.model_selection  # noqa: F401
    import threadpoolctl  # noqa: F401


def worker(args):
    """Serve ``open workload framework`` / ``extra name`` requests.

    ``open`` forks a child that answers the workload's requests itself (it reads
    this process's stdin and writes its stdout) until ``close``; a child that dies
    is answered here with an error line.  ``extra`` runs a layer benchmark in a
    child and answers one line of rows.
    """
    try:
        _import_framework(args.worker)
    except ImportError as exc:
        sys.stderr.write("%s worker: %s\n" % (args.worker, exc))
    out = sys.stdout
    sys.stdout = sys.stderr  # anything printed by a workload goes to stderr
    for line in iter(sys.stdin.readline, ""):
        kind, name, *rest = line.split()
        if kind == "extra":
            t0 = time.perf_counter()
            res = in_child(lambda: measure_extra(name, args.threads, args.quick),
                           args.timeout)
            rows = res["ok"] if "ok" in res else [
                dict(extra=name, status="error", note=res["error"])]
            if "error" in res:
                sys.stderr.write(res.get("traceback", res["error"]) + "\n")
            sys.stderr.write("  %s: %d rows, %s (%.1fs)\n" % (
                name, len(rows), rows[0].get("status") if rows else "-",
                time.perf_counter() - t0))
            _reply(out, rows)
            continue
        out.flush()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                serve(rest[0], name, args, out)
            except BaseException:  # noqa: BLE001 - the parent answers for it
                traceback.print_exc()
                code = 1
            out.flush()
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        if status:
            _reply(out, {"error": "child died (status %d)" % status, "died": True})


# ---- orchestration (parent side) --------------------------------------------------------
def group_of(framework):
    return next((g for g, f in WORKER_GROUPS.items() if framework in f), None)


def run_workload(workload, frameworks, threads, repeats, ask):
    """Rows of one workload: every framework open at once, runs alternated."""
    rows, live, info = [], {}, {}
    for fw in frameworks:
        r = ask(group_of(fw), "open %s %s" % (workload, fw), {"status": "error",
                                                               "note": "worker failed"})
        if r.get("status") == "ok":
            live[fw] = {n: dict(times=[], cpu=[], status=None) for n in threads}
            info[fw] = r
        else:
            rows += [dict(workload=workload, framework=fw, threads=n,
                          status=r.get("status", "error"),
                          note=r.get("note") or r.get("error", "")) for n in threads]
    if not live:  # no framework could run it (missing data or package): skip it
        sys.stderr.write("  skipped: %s\n" % "; ".join(
            "%s: %s" % (r["framework"], r["note"]) for r in rows[::len(threads) or 1]))
        return rows
    dead = set()

    def one_run(fw, n, timed):
        state = live[fw][n]
        if fw in dead or state["status"]:
            return
        time.sleep(SETTLE_S)
        r = ask(group_of(fw), "run %d" % n, {"error": "worker failed", "died": True})
        if "wall" in r:
            if timed:
                state["times"].append(r["wall"])
                state["cpu"].append(r["cpu"])
        elif r.get("timeout"):
            state["status"] = "timeout"
        else:
            state["status"], state["note"] = "error", r.get("error", "")
            if r.get("died"):
                dead.add(fw)

    for n in threads:
        for fw in live:
            one_run(fw, n, timed=False)  # warm-up
        order = list(live)
        for i in range(repeats):
            for fw in order[i % len(order):] + order[:i % len(order)]:
                one_run(fw, n, timed=True)
        sys.stderr.write("  %d thread%s: %s\n" % (n, "s" if n > 1 else "", "  ".join(
            "%s %s" % (fw, "%.4gs" % statistics.median(s[n]["times"]) if s[n]["times"]
                       and not s[n]["status"] else s[n]["status"])
            for fw, s in live.items())))
    for fw, per_n in live.items():
        # a child that died reports no peak memory (None)
        if fw not in dead:
            info[fw].update(ask(group_of(fw), "close", {}))
        unit = info[fw]
        for n, s in per_n.items():
            row = dict(workload=workload, framework=fw, threads=n, times_s=s["times"],
                       peak_mem_mb=unit.get("peak_mem_mb"))
            if s["status"] or not s["times"]:
                note = s.get("note") or ("did not finish warm-up + %d repeats in %ss (%d "
                                         "done)" % (repeats, unit.get("budget_s", "?"),
                                                    len(s["times"])))
                rows.append(dict(row, status=s["status"] or "error", note=note))
                continue
            med = statistics.median(s["times"])
            row.update(status="ok", median_s=med, min_s=min(s["times"]),
                       max_s=max(s["times"]), items=unit["items"], unit=unit["unit"],
                       throughput=unit["items"] / med, cpu_s=statistics.median(s["cpu"]),
                       note="; ".join(unit.get("notes") or []))
            if unit.get("flops"):
                row["gflops"] = unit["flops"] / med / 1e9
            rows.append(row)
    return rows


def _result_name(doc, kind=None):
    """``benchmarks[_smoke|_quick].json``, or with ``kind`` the copy kept per machine
    kind and ISA path (``benchmarks_avx2.json``, ``benchmarks_avx512.json``,
    ``benchmarks_avx512_isa_avx2.json``...), so that the report shows every kind's
    run."""
    args = doc["args"]
    suffix = "_smoke" if args.get("smoke") else "_quick" if args.get("quick") else ""
    return "benchmarks%s%s.json" % ("_" + kind if kind else "", suffix)


def _other_kinds(doc, out_dir):
    """Saved results of the same mode from other machine kinds or ISA paths."""
    mine = _result_name(doc, report.result_kind(doc["machine"]))
    pattern = _result_name(doc, "*")
    others = []
    for path in sorted(glob.glob(os.path.join(out_dir, pattern))):
        name = os.path.basename(path)
        if name == mine or (not doc["args"].get("quick") and name.endswith(
                ("_quick.json", "_smoke.json"))):
            continue
        with open(path) as f:
            others.append(json.load(f))
    return others


def _write_report(doc, path, out_dir):
    """The Markdown report at ``path`` and the chart beside it (or in ``out_dir``)."""
    folder = os.path.dirname(os.path.abspath(path)) if path else out_dir
    os.makedirs(folder, exist_ok=True)
    png = os.path.join(folder, "benchmarks_ratios.png")
    made = report.chart(doc, png)
    if made:
        print("wrote %s" % png)
    if path:
        with open(path, "w") as f:
            f.write(report.markdown(doc, EXTRAS, chart=os.path.basename(png) if made
                                    else None, others=_other_kinds(doc, out_dir)))
        print("wrote %s" % path)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument("--quick", action="store_true", help="smaller workloads, 3 repeats")
    p.add_argument("--smoke", action="store_true",
                   help="check that workloads run: --quick sizes, 1 repeat, 1 thread, "
                   "no Markdown report unless --doc is given (combine with --only)")
    p.add_argument("--threads", type=int, nargs="+", default=None,
                   help="thread counts (default 1 2; --smoke: 1)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed repeats after the warm-up (default 3 quick, 5 full)")
    p.add_argument("--out", default=os.path.join(HERE, "results"),
                   help="folder for benchmarks.json (default benchmarks/results)")
    p.add_argument("--doc", default=None,
                   help="Markdown report to write, with the chart beside it ('' to "
                   "skip; default doc/benchmarks.md)")
    p.add_argument("--only", nargs="+", default=None,
                   help="run only these workloads (%s) and extras (%s)" % (
                       ", ".join(W.WORKLOADS), ", ".join(EXTRAS)))
    p.add_argument("--frameworks", nargs="+", default=list(WORKER_GROUPS),
                   choices=list(WORKER_GROUPS),
                   help="worker processes to run (neonlearn also runs numpy's sgemm)")
    p.add_argument("--timeout", type=int, default=None,
                   help="seconds per workload and framework, split over the thread "
                   "counts (default 120 quick, 600 full)")
    p.add_argument("--budget", type=int, default=0,
                   help="overall seconds; workloads not started by then are reported "
                   "as skipped (default: no limit)")
    p.add_argument("--render", default=None, metavar="JSON",
                   help="only rewrite the Markdown report and chart from a saved result")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.smoke:
        args.quick = True
        args.repeats = 1 if args.repeats is None else args.repeats
        args.threads = [1] if args.threads is None else args.threads
        args.doc = "" if args.doc is None else args.doc
    if args.threads is None:
        args.threads = [1, 2]
    if args.doc is None:
        args.doc = os.path.join(REPO, "doc", "benchmarks.md")
    if args.repeats is None:
        args.repeats = 3 if args.quick else 5
    if args.timeout is None:
        args.timeout = 120 if args.quick else 600
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    if args.render:
        with open(args.render) as f:
            doc = json.load(f)
        return _write_report(doc, args.doc, os.path.dirname(args.render))

    start = time.perf_counter()
    info = report.machine_info()
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
        fws = [fw for fw in fws if group_of(fw) in workers]
        if over_budget():
            rows.extend(dict(workload=workload, framework=fw, threads=n, status="skipped",
                             note="--budget %ds used up" % args.budget)
                        for fw in fws for n in args.threads)
            continue
        sys.stderr.write("[%s] %s\n" % (workload, ", ".join(fws)))
        rows.extend(run_workload(workload, fws, args.threads, args.repeats, ask))
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
        quick=args.quick, smoke=args.smoke, threads=args.threads, repeats=args.repeats,
        only=args.only, budget=args.budget, timeout=args.timeout),
        rows=rows, ratios=rat, wall_s=time.perf_counter() - start)
    report.print_table(rows, rat)
    print("\nTargets (issue 15):")
    for label, status, text in targets(rows, rat, args.threads,
                                       avx512=bool(info.get("avx512"))):
        print("  %-7s %s: %s" % (status, label, text))
    os.makedirs(args.out, exist_ok=True)
    for name in (_result_name(doc), _result_name(doc, report.result_kind(info))):
        with open(os.path.join(args.out, name), "w") as f:
            json.dump(doc, f, indent=1, default=str)
        print("wrote %s" % os.path.join(args.out, name))
    _write_report(doc, args.doc, args.out)
    print("total %.0fs" % (time.perf_counter() - start))


if __name__ == "__main__":
    main()
