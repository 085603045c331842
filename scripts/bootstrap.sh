#!/usr/bin/env bash
# Installs what yitu needs on a Debian/Ubuntu machine, and nothing twice.
#
#   scripts/bootstrap.sh          system packages for the stack + .venv with the project
#   scripts/bootstrap.sh --test   the same, plus Chromium, ChromeDriver, nginx, openssl and the test extras
#
# Safe to run again: packages already installed and an up-to-date .venv are left alone,
# so a second run takes a second or two. Root installs directly; a normal user needs sudo.
set -euo pipefail

cd "$(dirname "$0")/.."
want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1

say() { printf '[bootstrap] %s\n' "$*"; }
die() { printf '[bootstrap] error: %s\n' "$*" >&2; exit 1; }

# --- Python ---------------------------------------------------------------
PYTHON="${PYTHON:-python3}"
command -v "$PYTHON" >/dev/null || die "python3 not found; install Python 3.11 or newer"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || die "Python 3.11+ is required, $("$PYTHON" --version) found (set PYTHON=/path/to/python3.11)"

# --- Debian packages --------------------------------------------------------
# The PostGIS package must match the PostgreSQL server's major version.
pg_major=""
if [[ -d /usr/lib/postgresql ]]; then
  pg_major=$(ls /usr/lib/postgresql | grep -E '^[0-9]+$' | sort -n | tail -n 1 || true)
fi
pg_major="${YITU_PG_MAJOR:-${pg_major:-15}}"

# fonts-noto-cjk: the place names of the server's own base map (geodata/basemap.py; the browsers' too).
packages=("postgresql-$pg_major" "postgresql-$pg_major-postgis-3" "postgresql-$pg_major-pgrouting" redis-server fonts-noto-cjk)
if (( want_test )); then
  # nginx and openssl: tests/test_nginx.py runs deploy/nginx.conf in front of the app with a throwaway
  # certificate (its own prefix and ports; the package's service is neither needed nor started by the test).
  packages+=(chromium chromium-driver nginx openssl)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if (( ${#missing[@]} )); then
  say "installing Debian packages: ${missing[*]}"
  if [[ $(id -u) -eq 0 ]]; then
    as_root=()
  elif command -v sudo >/dev/null; then
    as_root=(sudo)
  else
    die "missing packages (${missing[*]}) and no sudo to install them; ask an administrator"
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  say "Debian packages installed"
else
  say "Debian packages present (${#packages[@]} checked)"
fi

# --- The virtual environment ------------------------------------------------
extras="."
(( want_test )) && extras=".[test]"
stamp=$( { cat pyproject.toml; "$PYTHON" --version; } | sha256sum | cut -c1-16)
stamp_file=".venv/.yitu-installed-$stamp-base"
(( want_test )) && stamp_file=".venv/.yitu-installed-$stamp-test"

# An install with the test extras also satisfies a plain one.
if [[ -f "$stamp_file" || ( $want_test -eq 0 && -f ".venv/.yitu-installed-$stamp-test" ) ]]; then
  say ".venv up to date"
else
  [[ -x .venv/bin/python ]] || { say "creating .venv"; "$PYTHON" -m venv .venv; }
  say "installing yitu into .venv ($extras)"
  pip_log=.venv/pip-install.log
  if ! { .venv/bin/python -m pip install --disable-pip-version-check --upgrade pip \
         && .venv/bin/python -m pip install --disable-pip-version-check -e "$extras"; } >"$pip_log" 2>&1; then
    tail -n 30 "$pip_log" >&2
    die "pip install failed (full log: $pip_log)"
  fi
  rm -f .venv/.yitu-installed-*
  touch "$stamp_file"
  say ".venv ready"
fi
