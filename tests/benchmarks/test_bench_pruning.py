"""benchmarks/bench_pruning.py writes its report atomically and refuses bad options first.

No benchmark runs here: the refusals come before the networks are built, and the writer is
given a small report.
"""

from __future__ import annotations

import json

import pytest

bench = pytest.importorskip("benchmarks.bench_pruning")


def test_the_report_is_written_whole_as_json(tmp_path):
    target = tmp_path / "figures" / "bench_pruning.json"
    report = {"speed": {"bf16/nhwc/BN folded": {"unpruned": 3.5, "pruned": 5.6,
                                                "ratios": [1.5, 1.6], "speedup": 1.55}},
              "machine": {"device": "CPU (AVX2, 1 threads)", "cores": 2}}
    bench.write_json(report, target)
    assert json.loads(target.read_text(encoding="utf-8")) == report
    assert [p.name for p in target.parent.iterdir()] == ["bench_pruning.json"]  # no temporary


@pytest.mark.parametrize("argv, message", [
    (["--rounds", "0"], "--rounds must be >= 1, got 0"),
    (["--rate", "1.5"], "--rate must be between 0.01 and 0.9, got 1.5"),
    (["--json", "{tmp}"], "is a folder; give a file name"),
    (["--json", "{tmp}/old.json/x.json"], "which is a file; give a path in a folder"),
])
def test_a_bad_option_is_refused_before_any_timing_and_writes_nothing(tmp_path, capsys, argv,
                                                                      message):
    old = tmp_path / "old.json"
    old.write_text('{"kept": true}')
    argv = [a.format(tmp=tmp_path) for a in argv]
    if "--json" not in argv:
        argv += ["--json", str(old)]
    assert bench.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert old.read_text() == '{"kept": true}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.json"]
