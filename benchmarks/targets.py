"""Speed ratios and the targets of issue 15, from the rows of ``run.py``.

A target line is ``(label, status, text)`` with status ``met``, ``MISSED`` or
``n/a`` (not measured in this run, with the reason).
"""
import re

import workloads as W

PEERS = ("torch", "onnxruntime", "sklearn")
TRAINING = ("w1_mlp_train", "w2_lenet_train", "w3_lstm_train", "w3_gru_train",
            "w4_embed_lstm_train", "w5_fashion_train")
INFERENCE = ("w1_mlp_infer", "lenet_infer", "lstm_infer")


def goal(workload, peer):
    """The issue's speed-ratio goal for ``workload`` against ``peer`` (or None)."""
    if peer == "torch":
        if workload in TRAINING:
            return 1.3
        if workload in INFERENCE:
            return 1.2
        return {"digits_fit": 1.5, "ragged_train": 1.5}.get(workload)
    if peer == "onnxruntime" and workload in INFERENCE:
        return 1.0
    if peer == "sklearn" and workload in ("digits_fit", "digits_grid"):
        return 1.5
    return None


def get(rows, workload, fw, n):
    for r in rows:
        if (r.get("workload") == workload and r.get("framework") == fw
                and r.get("threads") == n):
            return r
    return None


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
        for peer in PEERS:
            if peer in fws:
                p = fws[peer]
                cpu_ratio = (p["cpu_s"] / nl["cpu_s"] if p.get("cpu_s") and nl.get("cpu_s")
                             else None)
                out.append(dict(workload=workload, threads=n, peer=peer,
                                speed_ratio=p["median_s"] / nl["median_s"],
                                cpu_ratio=cpu_ratio,
                                mem_ratio=((nl.get("peak_mem_mb") or 0) / p["peak_mem_mb"]
                                           if (p.get("peak_mem_mb") or 0) > 0 else None)))
    return out


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


def conv_label(row):
    for k in ("case", "layer", "name", "shape", "workload", "config"):
        if k in row:
            return str(row[k])
    return "conv"


def conv_channels(label):
    """Input channels of a convolution case named ``... CxHxW->K ...`` (else None)."""
    m = re.search(r"(\d+)x\d+x\d+->", label)
    return int(m.group(1)) if m else None


def targets(rows, rat, threads, n=None, avx512=False):
    """Issue 15's targets at ``n`` threads (default: the largest thread count)."""
    n = max(threads) if n is None else n
    lines = []

    def ratio(workload, peer):
        for r in rat:
            if r["workload"] == workload and r["peer"] == peer and r["threads"] == n:
                return r
        return None

    def not_measured(label, workload, peer):
        nl, pr = get(rows, workload, "neonlearn", n), get(rows, workload, peer, n)
        if nl and nl.get("status") == "ok" and pr and pr.get("status") == "timeout":
            lines.append((label, "n/a", "%s timed out (%s); neonlearn %.3g s" % (
                peer, pr.get("note", ""), nl["median_s"])))
            return
        why = nl.get("status") if nl else "not run"
        if nl and nl.get("status") == "ok":
            why = "%s: %s" % (peer, pr.get("status") if pr else "not run")
        lines.append((label, "n/a", "not measured (%s)" % why))

    def check(label, workload, peer, goal):
        r = ratio(workload, peer)
        if r is None:
            return not_measured(label, workload, peer)
        ok = r["speed_ratio"] >= goal
        lines.append((label, "met" if ok else "MISSED",
                      "%.2fx %s (goal %.2gx%s)%s" % (
                          r["speed_ratio"], peer, goal,
                          "" if ok else ", %.0f%% short" % (100 * (1 - r["speed_ratio"] / goal)),
                          "; CPU time %.2fx" % r["cpu_ratio"] if r.get("cpu_ratio") else "")))

    for w in TRAINING:
        check("training >= 1.3x PyTorch: %s" % w, w, "torch", 1.3)
    check("digits fit >= 1.5x PyTorch", "digits_fit", "torch", 1.5)
    check("digits fit >= 1.5x MLPClassifier", "digits_fit", "sklearn", 1.5)
    check("digits GridSearchCV >= 1.5x MLPClassifier", "digits_grid", "sklearn", 1.5)
    for w in INFERENCE:
        check("inference >= 1.2x PyTorch: %s" % w, w, "torch", 1.2)
        check("inference >= 1.0x ONNX Runtime: %s" % w, w, "onnxruntime", 1.0)
    check("ragged training >= 1.5x PyTorch packed LSTM (tokens/s)", "ragged_train",
          "torch", 1.5)
    _ragged_vs_equal(rows, n, lines)
    _memory(rows, lines)
    _convolutions(rows, n, threads, avx512, lines)
    return lines


def _ragged_vs_equal(rows, n, lines):
    label = "ragged prediction within 1.3x of equal lengths (tokens/s)"
    rg, eq = get(rows, "ragged_infer", "neonlearn", n), get(rows, "ragged_infer_equal",
                                                           "neonlearn", n)
    if not (rg and eq and rg.get("status") == eq.get("status") == "ok"):
        lines.append((label, "n/a", "not measured"))
        return
    slow = eq["throughput"] / rg["throughput"]
    lines.append((label, "met" if slow <= 1.3 else "MISSED",
                  "%.0f vs %.0f tokens/s: %.2fx slower" % (rg["throughput"],
                                                          eq["throughput"], slow)))


def _memory(rows, lines):
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


def _convolutions(rows, n, threads, avx512, lines):
    """Forward + backward GFLOP/s of each convolution case against the same run's
    sgemm: 60% on AVX-512, 70% on AVX2 (50% / 65% for 1-3 input channels)."""
    sg = get(rows, "sgemm", "numpy", n)
    conv = [r for r in rows if r.get("extra") == "conv" and r.get("status") == "ok"]
    gkey = _gflops_key(conv)
    conv = [r for r in conv if gkey and isinstance(r.get(gkey), (int, float))
            and "->" in conv_label(r)]
    if not conv:
        lines.append(("convolution targets", "n/a",
                      "bench_conv.py not available or failed in this run"))
        return
    if not (sg and sg.get("status") == "ok"):
        lines.append(("convolution targets", "n/a", "no sgemm rate in this run"))
        return
    nl_conv = [r for r in conv if _framework_of(r) in (None, "neonlearn")
               and r.get("threads") == n]
    for r in nl_conv:
        few = (conv_channels(conv_label(r)) or 99) <= 3
        goal = (0.5 if few else 0.6) if avx512 else (0.65 if few else 0.7)
        frac = float(r[gkey]) / sg["gflops"]
        lines.append(("conv >= %.0f%% of sgemm GFLOP/s: %s" % (100 * goal, conv_label(r)),
                      "met" if frac >= goal else "MISSED",
                      "%.0f%% (%.1f of %.1f GFLOP/s)" % (100 * frac, float(r[gkey]),
                                                         sg["gflops"])))
    lo = min(threads)
    for r in nl_conv:
        r1 = [x for x in conv if x.get("threads") == lo
              and conv_label(x) == conv_label(r) and _framework_of(x) == _framework_of(r)]
        if r1 and lo != n:
            s = float(r[gkey]) / float(r1[0][gkey])
            lines.append(("conv %d threads >= 1.7x %d thread: %s" % (n, lo, conv_label(r)),
                          "met" if s >= 1.7 else "MISSED", "%.2fx" % s))
