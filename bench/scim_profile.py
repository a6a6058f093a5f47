"""CPU of one SCIM POST /Users in process (Flask's test client), and where it goes: an org of
10,000 people on a fresh SQLite database, or on a throwaway PostgreSQL cluster
(`--postgresql`); own-IdP org and an org whose new people are mailed an invitation.

    .venv/bin/python bench/scim_profile.py [--postgresql] [--top N]

Prints the CPU per create (time.process_time) of each kind and cProfile's top lines
(cumulative, then own time) over the invited kind. Not part of `make bench`.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CREATES = 300
CORE = "urn:ietf:params:scim:schemas:core:2.0:User"


def creates(app, token: str, domain: str, tag: str, n: int) -> None:
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
    for i in range(n):
        body = {"schemas": [CORE], "userName": f"{tag}{i:05d}@{domain}",
                "name": {"givenName": "New", "familyName": f"{i:05d}"}, "externalId": f"{tag}-{i}"}
        resp = client.post("/scim/v2/Users", json=body, headers=headers)
        assert resp.status_code == 201, resp.get_data(as_text=True)[:300]


def cpu_each(app, token: str, domain: str, tag: str) -> float:
    creates(app, token, domain, tag + "w", 20)  # warm: imports, first statements, last_used_at
    started = time.process_time()
    creates(app, token, domain, tag, CREATES)
    return (time.process_time() - started) / CREATES * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgresql", action="store_true")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="scim-profile-"))
    cluster = None
    try:
        (root / "instance").mkdir()
        env = {"IDP_INSTANCE_DIR": str(root / "instance"), "IDP_ISSUER": "http://127.0.0.1:9",
               "IDP_LOG_LEVEL": "WARNING", "IDP_SMTP_HOST": "127.0.0.1", "IDP_SMTP_PORT": "9"}
        if args.postgresql:
            import socket

            from tests.pg import Cluster

            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            cluster = Cluster(root / "pg", port)
            env["IDP_DATABASE_URL"] = cluster.start()
        else:
            env["IDP_DATABASE_URL"] = f"sqlite:///{root / 'idp.db'}"
        os.environ.update(env)
        init = subprocess.run([str(Path(sys.executable).with_name("idp")), "init"], capture_output=True, text=True)
        if init.returncode:
            sys.exit(f"idp init failed: {init.stderr[-300:]}")
        import logging

        from bench import scim_bench

        app = scim_bench.app_of_environment()
        logging.getLogger().setLevel(logging.ERROR)  # the mails to port 9 fail: not our concern here
        name, domain, _, _ = scim_bench.seed(app)
        scim_bench.attach_idp(app, name)
        own = cpu_each(app, scim_bench.new_token(app, name), domain, "own")
        plain, plain_domain = scim_bench.plain_org(app)
        token = scim_bench.new_token(app, plain)
        invited = cpu_each(app, token, plain_domain, "inv")
        db = "PostgreSQL" if args.postgresql else "SQLite"
        print(f"in process, {db}: {own:.2f} ms CPU per create (own IdP), {invited:.2f} ms (invitation mail)")
        profile = cProfile.Profile(time.process_time)
        profile.enable()
        creates(app, token, plain_domain, "prof", CREATES)
        profile.disable()
        stats = pstats.Stats(profile)
        stats.sort_stats("cumulative").print_stats(args.top)
        stats.sort_stats("tottime").print_stats(args.top)
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
