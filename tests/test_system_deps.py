"""scripts/system-deps.sh: what each mode asks for (`make test`, `make bench`, `make soak`).

Run where none of the programs can be found and as an ordinary user, it names every package
the mode would install instead of installing them.
"""

import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "system-deps.sh"


def missing(mode: str, tmp_path: Path) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake_id = bin_dir / "id"  # not root: the script reports instead of calling apt
    fake_id.write_text("#!/bin/sh\necho 1000\n")
    fake_id.chmod(0o755)
    bash = subprocess.run(["sh", "-c", "command -v bash"], capture_output=True, text=True).stdout.strip()
    done = subprocess.run([bash, str(SCRIPT), mode], env={"PATH": str(bin_dir)}, capture_output=True,
                          text=True, timeout=30)
    # 0 when nothing is missing (the soak run needs only PostgreSQL, which may be installed)
    assert done.returncode in (0, 1), done.stderr
    assert (done.returncode == 1) == done.stderr.startswith("error: missing system packages:"), done.stderr
    return done.stderr


@pytest.mark.parametrize("mode", ["test", "bench"])
def test_the_tests_and_the_bench_ask_for_xmlsec1(mode, tmp_path):
    # bench/saml_cost.py signs its responses with pysaml2, which calls xmlsec1: `make bench`
    # on a machine that had not run the tests first stopped there.
    assert "xmlsec1" in missing(mode, tmp_path).split()


def test_the_bench_asks_for_wrk_and_the_soak_run_for_neither(tmp_path):
    bench = missing("bench", tmp_path).split()
    assert "wrk" in bench and "chromium" not in bench
    soak = missing("soak", tmp_path).split()
    assert "xmlsec1" not in soak and "wrk" not in soak
