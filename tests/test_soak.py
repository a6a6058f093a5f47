"""`make soak` (bench/soak.py), shortened: a real `idp serve --workers 2` on a throwaway
PostgreSQL under every kind of traffic, and the summary and exit code it promises."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parent.parent / "bench" / "soak.py"
KINDS = ("signin", "code", "refresh", "client_credentials", "userinfo", "introspection", "discovery", "jwks")


def run_soak(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SOAK), *args], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=600)


def test_short_soak_passes_and_prints_the_summary(tmp_path):
    done = run_soak("--seconds", "10", "--threads", "8", "--workdir", str(tmp_path / "soak"))
    out = done.stdout
    assert done.returncode == 0, out + done.stderr[-3000:]
    assert "=== soak: 10 s measured" in out
    for kind in KINDS:
        # every kind ran in the measured time, with its rate, p50, p99 and no error
        row = re.search(rf"^{kind} +(\d+) +([\d.]+) +([\d.]+) +([\d.]+) +(\d+)$", out, re.M)
        assert row, f"no summary row for {kind}:\n{out}"
        ops, _rate, p50, p99, errors = row.groups()
        assert int(ops) > 0 and float(p50) <= float(p99) and errors == "0", row.group(0)
    assert re.search(r"^throughput: [\d.]+ ops/s, [\d.]+ HTTP requests/s", out, re.M), out
    assert re.search(r"^errors: 0 \(0 5xx\)$", out, re.M), out
    families = re.search(r"^lost refresh families: 0 \(of (\d+) families, (\d+) rotations\)$", out, re.M)
    assert families and int(families.group(2)) > 0, out
    for moment in ("start", "end  "):
        assert re.search(rf"^memory at {moment}: RSS [\d.]+ MiB, PSS [\d.]+ MiB \(3 processes", out, re.M), out
    assert re.search(r"^memory growth: PSS [+-][\d.]+%", out, re.M), out
    assert out.rstrip().endswith("result: PASS"), out
    # the server and the cluster are gone with the run
    assert "postgres" not in subprocess.run(["pgrep", "-af", str(tmp_path)], capture_output=True,
                                            text=True).stdout


def test_a_bad_duration_is_refused_before_anything_starts(tmp_path):
    for value in ("abc", "0", "-5", "1.5"):
        done = run_soak("--workdir", str(tmp_path / "never"), SOAK_SECONDS=value)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("error: SOAK_SECONDS must be a positive whole number"), done.stderr
        assert "Traceback" not in done.stderr
    done = run_soak("--seconds", "0", "--workdir", str(tmp_path / "never"))
    assert done.returncode == 2 and done.stderr.startswith("error: --seconds"), done.stderr
    assert not (tmp_path / "never").exists()


def _verdict(capsys, *, errors=(), lost=(), pids_after=(1, 2, 3), pss_after=100_000):
    """The summary and exit code of bench/soak.py for a run that saw these outcomes."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("soak", SOAK)
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    measured, warmup = soak.Stats(), soak.Stats()
    for kind in KINDS:
        measured.done(kind, 0.01, 1)
    for kind, status, what in errors:
        measured.error(kind, status, what)
    warmup.lost.extend(lost)
    run = soak.Soak.__new__(soak.Soak)
    run.families_started, run.rotations = 5, 10
    before = {"rss": 200_000, "pss": 100_000, "pids": [1, 2, 3]}
    after = {"rss": 200_000, "pss": pss_after, "pids": list(pids_after)}
    code = soak.report(run, measured, warmup, 10.0, 5, before, after, 16)
    return code, capsys.readouterr().out


def test_the_verdict_fails_on_each_kind_of_trouble(capsys):
    code, out = _verdict(capsys, pss_after=115_000)  # +15% is still within the limit
    assert code == 0 and out.rstrip().endswith("result: PASS"), out
    code, out = _verdict(capsys, errors=[("refresh", 502, "refresh: HTTP 502")])
    assert code == 1 and "errors: 1 (1 5xx)" in out and "result: FAIL (1 errors)" in out, out
    code, out = _verdict(capsys, errors=[("userinfo", 401, "userinfo: HTTP 401")])
    assert code == 1 and "errors: 1 (0 5xx)" in out, out  # an unexpected 4xx is an error too
    code, out = _verdict(capsys, lost=["refresh refused"])  # lost in the warm-up counts as well
    assert code == 1 and "lost refresh families: 1 " in out and "1 lost refresh families" in out, out
    code, out = _verdict(capsys, pids_after=(1, 2, 4))  # a worker died and was replaced
    assert code == 1 and "server processes changed" in out, out
    code, out = _verdict(capsys, pss_after=115_100)
    assert code == 1 and "memory grew 15.1%" in out, out
