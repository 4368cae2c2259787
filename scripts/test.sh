#!/usr/bin/env bash
# Every test of the project, in order: types and lint, TypeScript unit tests
# (Vitest, onnxruntime-node), the Python factory (pytest), then the browser
# suite (Playwright driving Debian's Chromium on WebGPU and wasm), then the quick
# browser benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

stage() {
  local name=$1
  shift
  local started=$SECONDS
  echo "== $name"
  "$@"
  echo "== $name: ok in $((SECONDS - started)) s"
}

stage "typecheck" npx tsc -p .
stage "lint" npm run --silent lint
stage "unit (vitest)" npx vitest run
stage "factory (pytest)" bash -c 'cd models && /usr/bin/python3 -m pytest -q'
stage "e2e (chromium)" npx vitest run --config e2e/vitest.config.ts
# Speed is measured, not asserted: the quick browser benchmark runs the page end to end
# and writes bench/BROWSER-QUICK.md (the full one: npm run bench:browser).
stage "browser bench (quick)" npm run --silent bench:browser -- --quick
