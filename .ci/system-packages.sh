#!/usr/bin/env bash
# The Debian packages that `make test` (and so .ci/run) needs besides Python, checked
# before anything else: both call this first.
#
#   bash .ci/system-packages.sh
#
# All present: does nothing, silently. Some missing: as root, installs them with
# apt-get (update first, noninteractive, quiet); otherwise prints one line naming them
# and the command that installs them, and exits 2, before any test has run.
#
# Environment: PYTHON (default python3), the interpreter `make` builds .venv with;
# PG_BINDIR, where initdb lives if not at Debian's PostgreSQL 15 (as tests/servers_pg.py).
# Only bash builtins are used until something is missing, so that PATH decides alone
# which commands are found.
set -euo pipefail

need=()
# the tests hash with b3sum as the reference BLAKE3; so does `make bench-smoke`
command -v b3sum >/dev/null || need+=(b3sum)
# the CI-gate tests drive git and the real pre-commit against scratch repositories
command -v git >/dev/null || need+=(git)
# the tests run a real PostgreSQL (initdb + pg_ctl in a temp dir, see tests/servers_pg.py)
[ -x "${PG_BINDIR:-/usr/lib/postgresql/15/bin}/initdb" ] || need+=(postgresql-15)
# the reliability suite injects I/O faults with libfiu (tests/reliability/test_faults.py)
command -v fiu-run >/dev/null || need+=(fiu-utils)
# the web view's browser test drives Debian's chromium with Playwright (tests/web/)
command -v chromium >/dev/null || need+=(chromium)
# `python3 -m venv` needs ensurepip, which Debian ships apart (only until .venv exists)
if [ ! -x .venv/bin/python ] && ! "${PYTHON:-python3}" -c 'import ensurepip' 2>/dev/null; then
  need+=(python3-venv)
fi

[ ${#need[@]} -eq 0 ] && exit 0

if [ "$EUID" -ne 0 ]; then
  echo "make test needs the system packages ${need[*]}: run it as root (it installs them), or: sudo apt-get install -y ${need[*]}" >&2
  exit 2
fi
if ! command -v apt-get >/dev/null; then
  echo "make test needs the system packages ${need[*]} (Debian names) and there is no apt-get: install them with this system's package manager" >&2
  exit 2
fi
echo "installing the system packages make test needs: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${need[@]}" >/dev/null
