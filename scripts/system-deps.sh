#!/usr/bin/env bash
# Make sure the system packages the tests (`test`), the benchmark (`bench`) or the
# soak run (`soak`) need are installed; no argument means all of them. Checks files,
# not the package database, so it is quick when everything is there and it never
# calls apt then.
set -euo pipefail

usage() { echo "usage: $0 [test|bench|soak]" >&2; exit 2; }
[ $# -le 1 ] || usage
mode=${1:-all}
case $mode in test|bench|soak|all) ;; *) usage ;; esac

missing=()
want() { # want PACKAGE: record a Debian package to install
  missing+=("$1")
}

# Every mode runs a throwaway PostgreSQL cluster with these binaries: the tests'
# fixture, the SCIM benchmark's PostgreSQL run, the soak run.
for bin in initdb pg_ctl; do
  compgen -G "/usr/lib/postgresql/*/bin/$bin" >/dev/null || { want postgresql; break; }
done
# pysaml2 signs SAML messages by calling xmlsec1: the tests' IdP, and the one
# bench/saml_cost.py signs its responses with.
if [ "$mode" != soak ]; then
  command -v xmlsec1 >/dev/null || want xmlsec1
fi
if [ "$mode" = test ] || [ "$mode" = all ]; then
  command -v redis-server >/dev/null || want redis-server  # the rate-limit tests' Redis
  # Browser tests drive Debian's chromium, never a browser Playwright downloads.
  [ -x /usr/bin/chromium ] || want chromium
  # chromium's dependencies pull in DejaVu only; Liberation gives the
  # Arial/Times/Courier metrics pages usually ask for, so layouts are stable.
  [ -d /usr/share/fonts/truetype/liberation ] || want fonts-liberation
fi
if [ "$mode" = bench ] || [ "$mode" = all ]; then
  command -v wrk >/dev/null || want wrk
fi

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "error: missing system packages: ${missing[*]} (install them with your package manager)" >&2
  exit 1
fi

# Run an apt-get command, waiting (up to 10 minutes) while another apt/dpkg
# holds its lock: CI images often run unattended upgrades right after boot.
apt_wait() {
  local deadline=$((SECONDS + 600)) log rc
  log=$(mktemp)
  while :; do
    rc=0
    "$@" -o DPkg::Lock::Timeout=60 2>"$log" || rc=$?
    cat "$log" >&2
    [ $rc -eq 0 ] && break
    if grep -qiE 'could not (get|open) lock|unable to (acquire|lock)' "$log" && [ $SECONDS -lt $deadline ]; then
      echo "system-deps: apt is locked by another process, waiting..." >&2
      sleep 10
    else
      rm -f "$log"
      echo "error: '$*' failed (exit $rc)" >&2
      return 1
    fi
  done
  rm -f "$log"
}

echo "system-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt_wait apt-get update -q
apt_wait apt-get install -y -q --no-install-recommends "${missing[@]}"
