"""CPU cost of one password check, the dominant cost of a password sign-in.

Run with the project's venv: `.venv/bin/python bench/password_cost.py`.
CPU time (not wall time) so a busy machine does not inflate the figure.
"""

import sys
import time

ROUNDS = 20

try:
    from idp.passwords import hash_password, verify_password
except ImportError as exc:
    # The benchmark goes on without this figure rather than failing outright.
    print(f"password verify (argon2id): skipped, cannot import idp.passwords ({exc})")
    sys.exit(0)

stored = hash_password("correct horse battery staple")
if not verify_password(stored, "correct horse battery staple"):
    print("error: verify_password rejected the password it just hashed", file=sys.stderr)
    sys.exit(1)

start = time.process_time()
for _ in range(ROUNDS):
    verify_password(stored, "correct horse battery staple")
each_ms = (time.process_time() - start) / ROUNDS * 1000
print(f"password verify (argon2id): {each_ms:.1f} ms CPU each")
