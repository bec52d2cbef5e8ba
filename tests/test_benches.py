"""The benches run in --quick mode, print their table, write valid JSON, and the contenders agree on the loss.

Timings are never asserted: they depend on the machine.
"""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

BENCHES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benches")
LOSS_RTOL = {"float32": 1e-3, "float64": 1e-9}


def run_bench(script, tmp_path, *args):
    out = tmp_path / (script + ".json")
    proc = subprocess.run([sys.executable, os.path.join(BENCHES, script + ".py"), "--quick", "--threads", "1",
                           "--json", str(out), *args],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(out) as f:
        return proc.stdout, json.load(f)


def check_agreement(doc, contender, dtype):
    rows = [r for r in doc["results"] if r["contender"] == contender and r["dtype"] == dtype]
    assert rows, f"no {contender} rows"
    for r in rows:
        ref = next(x for x in doc["results"] if x["contender"] == "numpy" and x["workload"] == r["workload"]
                   and x["batch"] == r["batch"] and x["dtype"] == dtype)
        assert r["final_loss"] == pytest.approx(ref["final_loss"], rel=LOSS_RTOL[dtype]), (r, ref)
        assert r["loss_rel_diff"] <= LOSS_RTOL[dtype]


def check_table(stdout, doc, contenders, workloads_expected=("seed", "digits", "wide")):
    assert "us/step" in stdout and "records/s" in stdout and "% peak" in stdout
    assert doc["threads"] == 1 and doc["gemm_peak_gflops"]
    workloads = {r["workload"] for r in doc["results"]}
    assert workloads == set(workloads_expected)
    for r in doc["results"]:
        assert r["contender"] in contenders
        assert r["us_per_step"] > 0 and r["records_per_s"] > 0 and r["gflops"] > 0
        assert r["final_loss"] == r["final_loss"]  # not NaN
        if r["contender"] == "numpy":
            assert r["speedup"] == pytest.approx(1.0)
    for name in {r["contender"] for r in doc["results"]}:
        assert any(line.split()[2:3] == [name] for line in stdout.splitlines()), f"no table row for {name}"


@pytest.fixture(scope="module")
def tmp_module(tmp_path_factory):
    return tmp_path_factory.mktemp("benches")


def test_bench_vs_numpy_quick(tmp_module):
    stdout, doc = run_bench("bench_vs_numpy", tmp_module)
    check_table(stdout, doc, {"numpy", "fastbatch"})
    check_agreement(doc, "fastbatch", "float32")
    assert "targets" in stdout


def test_bench_vs_numpy_quick_float64(tmp_path):
    stdout, doc = run_bench("bench_vs_numpy", tmp_path, "--dtype", "float64", "--workloads", "seed,wide",
                            "--no-memory")
    assert {r["dtype"] for r in doc["results"]} == {"float64"}
    check_agreement(doc, "fastbatch", "float64")


PEERS = {"numpy", "fastbatch", "torch", "torch.compile", "jax", "jax-unroll4", "numba", "sklearn"}
COMPILED = {"torch.compile": "torch", "jax": "jax", "numba": "numba"}


def check_compiled(stdout, doc, peers):
    for peer in peers:
        module = COMPILED[peer]
        if not importlib.util.find_spec(module):
            assert f"{peer} is not installed" in stdout
            continue
        check_agreement(doc, peer, "float32")
        times = [r["compile_seconds"] for r in doc["results"] if r["contender"] == peer]
        assert times[0] is not None and times[0] > 0, times  # compiled before timing, and the time reported


def test_bench_vs_peers_quick(tmp_module):
    # every peer but torch.compile (a cold compile per point: its own test, at one point)
    stdout, doc = run_bench("bench_vs_peers", tmp_module, "--batches", "seed:1,32;digits:32;wide:32",
                            "--contenders", "fastbatch,torch,jax,jax-unroll4,numba,sklearn")
    check_table(stdout, doc, PEERS - {"torch.compile"})
    check_agreement(doc, "fastbatch", "float32")
    if importlib.util.find_spec("torch"):
        check_agreement(doc, "torch", "float32")
    check_compiled(stdout, doc, ["jax", "numba"])
    if importlib.util.find_spec("jax"):  # whole epochs for everyone, so the losses are comparable
        for r in doc["results"]:
            assert r["check_steps"] % -(-r["n_records"] // r["batch"]) == 0, r
        assert {r["batch"] for r in doc["results"] if r["contender"] == "jax-unroll4"} <= {1, 32}
        assert "fastbatch vs jax" in stdout
    if importlib.util.find_spec("sklearn"):
        rows = [r for r in doc["results"] if r["contender"] == "sklearn"]
        assert rows and all(r["loss_rel_diff"] is None for r in rows)  # its loss is its own
    for r in doc["results"]:
        assert r["spread_pct"] >= 0 and r["cores"] > 0
    assert "% of the gemm peak" in stdout and "seed net batch 32" in stdout


def test_bench_vs_peers_torch_compile(tmp_path):
    stdout, doc = run_bench("bench_vs_peers", tmp_path, "--workloads", "seed", "--batches", "32",
                            "--contenders", "torch.compile", "--no-memory")
    check_table(stdout, doc, {"numpy", "torch.compile"}, workloads_expected=("seed",))
    check_compiled(stdout, doc, ["torch.compile"])


def test_bench_vs_peers_contenders_option(tmp_path):
    stdout, doc = run_bench("bench_vs_peers", tmp_path, "--contenders", "fastbatch", "--workloads", "seed",
                            "--batches", "32", "--no-memory")
    assert {r["contender"] for r in doc["results"]} == {"numpy", "fastbatch"}
    assert [r["batch"] for r in doc["results"]] == [32, 32]


def test_bench_optimizers_quick(tmp_path):
    stdout, doc = run_bench("bench_optimizers", tmp_path)
    rows = doc["results"]
    assert {r["batch"] for r in rows} == {1, 32} and {r["workload"] for r in rows} == {"seed"}
    got = {(r["contender"], r["optimizer"]) for r in rows}
    assert {("numpy", "sgd"), ("numpy", "adam"), ("fastbatch", "sgd"), ("fastbatch", "adam"),
            ("fastbatch", "adamw"), ("fastbatch", "momentum")} <= got
    assert (("fastbatch", "sgd+noise") in got) == doc["has_track_noise"]
    if importlib.util.find_spec("torch"):
        assert {("torch", "sgd"), ("torch", "adam")} <= got
    for r in rows:
        assert r["us_per_step"] > 0 and r["check_us_per_step"] > 0 and r["check_steps"] >= doc["warm_steps"]
        if (r["contender"], r["optimizer"]) == ("numpy", "sgd"):
            assert r["speedup"] == pytest.approx(1.0)
        if r["optimizer"] in ("sgd", "adam") and r["contender"] != "numpy":  # same init, order and optimizer
            assert r["loss_rel_diff"] <= LOSS_RTOL["float32"], r
        if r["contender"] in ("numpy", "fastbatch") and r["optimizer"] == "adam":
            assert r["subnormals"] >= 0
    assert "x fastbatch sgd" in stdout and "fastbatch adam / fastbatch sgd" in stdout


def test_bench_calls_quick(tmp_path):
    stdout, doc = run_bench("bench_calls", tmp_path)
    calls = {(r["workload"], r["call"]): r for r in doc["calls"]}
    for workload in ("seed", "digits", "wide"):
        warm = calls[(workload, "fit(steps=1), warm trainer")]
        assert warm["us_per_call"] > 0 and warm["fixed_us"] == pytest.approx(warm["us_per_call"] - warm["step_us"])
        assert calls[(workload, "numpy loop, 1 step")]["speedup"] == pytest.approx(1.0)
        assert (workload, "Trainer(...).fit(steps=1), fresh") in calls and (workload, "init_params alone") in calls
        if importlib.util.find_spec("sklearn"):
            assert (workload, "FastBatchClassifier.partial_fit") in calls
    hooks = {r["hook"]: r for r in doc["hooks"]}
    assert set(hooks) == {"none", "on_progress", "validation_split=0.2", "on_epoch_end callback"}
    assert hooks["none"]["ratio"] == pytest.approx(1.0) and hooks["none"]["ratio_run"] == pytest.approx(1.0)
    assert hooks["validation_split=0.2"]["steps"] < hooks["none"]["steps"] == hooks["on_progress"]["steps"]
    assert {r["command"] for r in doc["cli"]} == {"fastbatch train (progress bar)", "fastbatch train --quiet",
                                              "fastbatch train --track-noise, batch 4",
                                              "fastbatch train --track-noise --quiet, batch 4"}
    assert "fixed cost of fit(steps=1)" in stdout and "targets:" in stdout


def test_bench_calls_parts_option(tmp_path):
    stdout, doc = run_bench("bench_calls", tmp_path, "--parts", "hooks")
    assert doc["calls"] == [] and doc["cli"] == [] and doc["hooks"]


def test_bench_busy_quick(tmp_path):
    stdout, doc = run_bench("bench_busy", tmp_path, "--points", "digits:32")
    rows = doc["results"]
    assert {r["condition"] for r in rows} == {"idle", "busy"}
    assert {r["contender"] for r in rows} == {"numpy", "fastbatch default", "fastbatch n_threads=1"}
    for r in rows:
        if r["contender"] == "fastbatch n_threads=1":
            assert r["vs_one_thread"] == pytest.approx(1.0)
        assert r["cores"] > 0
    assert "busy, digits batch 32" in stdout


def test_plot_sweep(tmp_module):
    if not (importlib.util.find_spec("matplotlib")
            or (importlib.util.find_spec("pyqtgraph") and importlib.util.find_spec("PySide6"))):
        pytest.skip("neither matplotlib nor pyqtgraph + PySide6 is installed")
    src = tmp_module / "bench_vs_numpy.json"
    if not src.exists():
        run_bench("bench_vs_numpy", tmp_module)
    png = tmp_module / "sweep.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run([sys.executable, os.path.join(BENCHES, "plot_sweep.py"), str(src), "-o", str(png)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_speed_tables(tmp_module, tmp_path):
    """The README's tables come out of the benches' JSON."""
    sources = {"bench_vs_peers_1thread.json": ("bench_vs_peers", ["--contenders", "fastbatch,jax", "--workloads",
                                                                  "seed", "--batches", "1,32", "--no-memory"]),
               "bench_optimizers.json": ("bench_optimizers", []),
               "bench_busy.json": ("bench_busy", ["--points", "seed:1"])}
    for target, (script, args) in sources.items():
        _, doc = run_bench(script, tmp_path, *args)
        with open(tmp_path / target, "w") as f:
            json.dump(doc, f)
    proc = subprocess.run([sys.executable, os.path.join(BENCHES, "speed_tables.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "| seed 10-32-2 | 1 | **" in out and "compile times" in out
    assert "| 32 | adam | **" in out and "| busy | seed 10-32-2 | 1 |" in out
