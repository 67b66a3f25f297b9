#!/usr/bin/env bash
# Installs what the project needs and is missing: npm packages, PostgreSQL and a Java
# runtime (for DynamoDB Local). System packages come from Debian when run as root;
# otherwise this names them and stops.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
[ -n "$(pg_bin)" ] && [ -x "$(pg_bin)/pg_rewind" ] || missing+=(postgresql)
command -v java >/dev/null 2>&1 || missing+=(default-jre-headless)

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${missing[*]} from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # The package starts a cluster of its own on port 5432; this project needs none.
    service postgresql stop >/dev/null 2>&1 || true
  else
    echo "setup: missing system packages: ${missing[*]}" >&2
    echo "setup: install them (as root: apt-get install ${missing[*]}) and run again" >&2
    exit 1
  fi
fi

# npm packages: install when missing or when the lock file changed since the last install.
if [ ! -x node_modules/.bin/node ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm packages"
  # Not `npm ci`: the lock file cannot list the optional native bindings for other
  # platforms that this registry does not serve, and `npm ci` rejects it for that.
  npm install --no-fund --no-audit --loglevel=error
fi
