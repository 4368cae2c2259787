#!/usr/bin/env bash
# Every test of the project, in order: types and lint, TypeScript unit tests
# (Vitest, onnxruntime-node), the Python factory (pytest), then the browser
# suite (Playwright driving Debian's Chromium on WebGPU and wasm).
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
