#!/usr/bin/env bash
# Installs everything the project needs on a Debian machine: the Debian packages
# in scripts/system-packages.txt and the npm dependencies in package-lock.json.
# Idempotent, and quick when all is present: apt runs only for missing packages,
# npm ci only when package-lock.json changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."

# Node.js: the version package.json's "engines" asks for (Vite 8 needs ≥ 20.19).
required_node=$(sed -n 's/.*"node": ">=\([0-9.]*\)".*/\1/p' package.json)
if ! command -v node >/dev/null; then
  echo "setup: Node.js >= $required_node is needed and none is on PATH" >&2
  exit 1
fi
node_version=$(node -p 'process.versions.node')
if ! node -e '
  const [want, have] = process.argv.slice(1).map((v) => v.split(".").map(Number));
  for (let i = 0; i < 3; i++) if ((have[i] ?? 0) !== (want[i] ?? 0)) process.exit((have[i] ?? 0) > (want[i] ?? 0) ? 0 : 1);
' "$required_node" "$node_version"; then
  echo "setup: Node.js $node_version is too old; this project needs >= $required_node (package.json engines)" >&2
  exit 1
fi

packages=$(grep -Ev '^\s*(#|$)' scripts/system-packages.txt)
missing=()
for package in $packages; do
  status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$package")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup: need root or sudo to install ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
stamp=node_modules/.d2nwg-lock-sha256
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_hash" ]; then
  echo "setup: installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_hash" > "$stamp"
fi
