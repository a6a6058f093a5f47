#!/usr/bin/env bash
# `make bench`: throughput of the token endpoint (client_credentials), discovery
# and JWKS under wrk against `idp serve --workers 2` on a fresh SQLite
# instance; SCIM with 10,000 people in an org (a userName filter's server time, users
# created per second and server CPU per user), on that SQLite and on a throwaway PostgreSQL;
# plus the CPU cost of one argon2id password check.
# BENCH_SECONDS (default 10) sets the length of each measured run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

die() { echo "error: $*" >&2; exit 1; }

dur=${BENCH_SECONDS:-10}
[[ $dur =~ ^[1-9][0-9]*$ ]] || die "BENCH_SECONDS must be a positive whole number of seconds"
[ -x .venv/bin/idp ] || die ".venv/bin/idp not found: run 'make install' first"
command -v wrk >/dev/null || die "wrk not found: run 'scripts/system-deps.sh bench'"

tmp=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then
    # The server runs in its own process group (setsid): end the master and
    # its workers together, politely first.
    kill -TERM -- "-$server_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 -- "-$server_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$server_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM # run the EXIT trap on Ctrl-C too

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export IDP_INSTANCE_DIR=$tmp/inst IDP_ISSUER=http://127.0.0.1:$port IDP_LOG_LEVEL=WARNING
unset IDP_DATABASE_URL IDP_REDIS_URL # fresh SQLite, process-local rate limits
mkdir -p "$IDP_INSTANCE_DIR"

# probe URL [FORM_BODY]: print the body if the answer is 2xx, else explain and
# fail. Redirects are not followed: wrk would count a 3xx as a success.
probe() {
  python3 - "$@" <<'PY'
import os, sys, urllib.error, urllib.request

class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None

req = urllib.request.Request(sys.argv[1])
if len(sys.argv) > 2:
    req.data = sys.argv[2].encode()
    req.add_header("Content-Type", "application/x-www-form-urlencoded")
    req.add_header("Authorization", "Basic " + os.environ["BASIC"])
try:
    with urllib.request.build_opener(NoRedirect).open(req, timeout=10) as resp:
        sys.stdout.write(resp.read().decode())
except urllib.error.HTTPError as exc:
    sys.exit(f"HTTP {exc.code} from {sys.argv[1]}: {exc.read()[:300].decode(errors='replace')}")
except OSError as exc:
    sys.exit(f"{sys.argv[1]}: {exc}")
PY
}

# json_get KEY...: print the named fields of the JSON document on stdin, one a line.
json_get() {
  python3 -c 'import json, sys; d = json.load(sys.stdin); print("\n".join(str(d[k]) for k in sys.argv[1:]))' "$@" 2>/dev/null
}

.venv/bin/idp init >"$tmp/init.log" 2>&1 || { cat "$tmp/init.log" >&2; die "idp init failed"; }

client=$(.venv/bin/idp clients create --name bench --grant-type client_credentials --json) \
  || die "idp clients create failed"
# RFC 6749 §2.3.1: id and secret are form-urlencoded before base64.
BASIC=$(python3 -c '
import base64, json, sys
from urllib.parse import quote
c = json.load(sys.stdin)
pair = quote(c["client_id"], safe="") + ":" + quote(c["client_secret"], safe="")
print(base64.b64encode(pair.encode()).decode())
' <<<"$client" 2>/dev/null) || die "no client_id/client_secret in 'idp clients create --json' output: $client"
export BASIC

setsid .venv/bin/idp serve --host 127.0.0.1 --port "$port" --workers 2 >"$tmp/server.log" 2>&1 &
server_pid=$! # a background job of a script is no group leader, so setsid does not fork: pid = pgid

discovery_url=$IDP_ISSUER/.well-known/openid-configuration
for _ in $(seq 120); do
  discovery=$(probe "$discovery_url" 2>/dev/null) && break
  kill -0 "$server_pid" 2>/dev/null || { tail -n 20 "$tmp/server.log" >&2; die "idp serve exited before answering"; }
  sleep 0.5
done
[ -n "${discovery:-}" ] || { tail -n 20 "$tmp/server.log" >&2; die "idp serve did not answer $discovery_url within 60 s"; }
{ read -r token_url; read -r jwks_url; } < <(json_get token_endpoint jwks_uri <<<"$discovery") \
  || die "discovery lacks token_endpoint or jwks_uri"

# One request per scenario first, so a broken endpoint fails here with its
# answer instead of producing a meaningless request rate.
probe "$token_url" grant_type=client_credentials | json_get access_token >/dev/null \
  || die "client_credentials grant did not return an access_token"
probe "$jwks_url" | python3 -c 'import json, sys; sys.exit(not json.load(sys.stdin)["keys"])' 2>/dev/null \
  || die "JWKS at $jwks_url has no keys"

results=() warnings=()
# measure NAME URL [LUA_SCRIPT]: warm up 2 s, then measure; rate counts 2xx only.
measure() {
  local name=$1 url=$2 script=() out ok p99 total bad sockerr
  [ $# -ge 3 ] && script=(-s "$3")
  wrk -t2 -c32 -d2s "${script[@]}" "$url" >/dev/null 2>&1 || die "wrk warm-up failed for $name"
  out=$(wrk -t2 -c32 -d"${dur}s" --latency "${script[@]}" "$url" 2>&1) || { echo "$out" >&2; die "wrk failed for $name"; }
  # wrk's "Non-2xx or 3xx responses" really counts status >= 400 (and the
  # probe above made sure no endpoint redirects); p99 is converted to ms.
  read -r ok p99 total bad sockerr < <(awk '
    / requests in / { total = $1 }
    /^Requests\/sec:/ { rps = $2 }
    /Non-2xx or 3xx responses:/ { bad = $NF }
    /Socket errors:/ { gsub(/,/, ""); for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+$/) serr += $i }
    $1 == "99%" { v = $2 + 0; u = $2; sub(/^[0-9.]+/, "", u)
                  p99 = u == "us" ? v / 1000 : u == "s" ? v * 1000 : u == "m" ? v * 60000 : v }
    END { printf "%.0f %.1f %d %d %d\n", total ? rps * (total - bad) / total : 0, p99, total, bad, serr }
  ' <<<"$out")
  [ "$total" -gt 0 ] || { echo "$out" >&2; die "wrk completed no requests for $name"; }
  results+=("$name: $ok req/s (2xx only), p99 ${p99}ms")
  echo "${results[-1]}"
  if [ "$bad" -gt 0 ] || [ "$sockerr" -gt 0 ]; then
    warnings+=("$name: $bad of $total responses were not 2xx, $sockerr socket errors")
    echo "!!! WARNING: ${warnings[-1]} -- server log tail:" >&2
    tail -n 5 "$tmp/server.log" >&2
  fi
}

echo "wrk -t2 -c32 -d${dur}s against idp serve --workers 2 (SQLite) on $IDP_ISSUER"
measure client_credentials "$token_url" bench/cc.lua
measure discovery "$discovery_url"
measure jwks "$jwks_url"

scim=$(.venv/bin/python -W ignore bench/scim_bench.py "$IDP_ISSUER" "$server_pid") || die "bench/scim_bench.py failed"
echo "$scim"
scim_pg=$(.venv/bin/python -W ignore bench/scim_bench.py --postgresql) || die "bench/scim_bench.py --postgresql failed"
echo "$scim_pg"
password=$(.venv/bin/python bench/password_cost.py) || die "bench/password_cost.py failed"
echo "$password"
saml=$(.venv/bin/python -W ignore bench/saml_cost.py) || die "bench/saml_cost.py failed"
echo "$saml"
dpop=$(.venv/bin/python bench/dpop_cost.py) || die "bench/dpop_cost.py failed"
echo "$dpop"
# Memory of this server after all of the above plus a mixed warm-up, and the CLI's speed.
memory=$(.venv/bin/python bench/memory.py --issuer "$IDP_ISSUER" --pid "$server_pid") || die "bench/memory.py failed"
echo "$memory"

echo
echo "=== summary ($(nproc) CPUs, $(git rev-parse --short HEAD 2>/dev/null || echo 'no commit'), ${dur}s per scenario) ==="
printf '%s\n' "${results[@]}" "$scim" "$scim_pg" "$password" "$saml" "$dpop"
printf '%s\n' "$memory"
if [ ${#warnings[@]} -gt 0 ]; then
  printf '!!! WARNING: %s\n' "${warnings[@]}"
fi
