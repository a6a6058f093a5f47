"""A throwaway PostgreSQL cluster for the tests: initdb in a temp dir, a free port, gone afterwards."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise RuntimeError("PostgreSQL server binaries not found: install the `postgresql` package (make test does)")


class Cluster:
    def __init__(self, root: Path, port: int, settings: dict[str, str] | None = None):
        """`settings`: server parameters beyond the tests' own (e.g. the bench's shared_buffers)."""
        self.bindir = _bindir()
        self.settings = dict(settings or {})
        self.root = root
        self.data = root / "data"
        self.sock = root / "sock"
        self.port = port
        # initdb refuses to run as root: run the server as the postgres system user then.
        self.user = "postgres" if os.geteuid() == 0 else None

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = list(args)
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=120)

    def start(self) -> str:
        self.root.mkdir(parents=True, exist_ok=True)
        self.sock.mkdir(exist_ok=True)
        if self.user:
            pw = pwd.getpwnam(self.user)
            for p in (self.root, self.sock):
                os.chown(p, pw.pw_uid, pw.pw_gid)
            # the parent temp dirs must be traversable by that user
            for parent in self.root.parents:
                if str(parent).startswith("/tmp") and parent != Path("/tmp"):
                    os.chmod(parent, os.stat(parent).st_mode | 0o711)
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "idp", "--auth=trust",
                  "-E", "UTF8", "--no-sync")
        self.resume()
        self._run(str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "idp", "idp")
        return f"postgresql+psycopg://idp@127.0.0.1:{self.port}/idp"

    def resume(self) -> None:
        """Start the server on the existing data directory (after `start` made it, or a `stop`)."""
        opts = f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        opts += "".join(f" -c {name}={value}" for name, value in self.settings.items())
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l",
                  str(self.root / "log"), "-w", "start")
        for _ in range(50):
            if self._run(str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port),
                         check=False).returncode == 0:
                break
            time.sleep(0.1)

    def stop(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop", check=False)
