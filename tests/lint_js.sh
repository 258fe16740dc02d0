#!/usr/bin/env bash
# The pages' scripts (refinery/pages/*.js) through ESLint's recommended rules
# (tests/eslint.config.mjs). ESLint comes from the npm registry into build/jslint once; where
# there is no npm, or the registry cannot be reached, this says so and checks nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
LINT=build/jslint
if ! command -v npm >/dev/null; then
  echo "lint_js: no npm here: the pages' scripts were not linted" >&2
  exit 0
fi
if [ ! -x "$LINT/node_modules/.bin/eslint" ]; then
  mkdir -p "$LINT"
  if ! (cd "$LINT" && npm install --no-audit --no-fund --silent eslint@10 @eslint/js@10 globals@16 >/dev/null); then
    echo "lint_js: could not install eslint from the npm registry: the pages' scripts were not linted" >&2
    exit 0
  fi
fi
cp tests/eslint.config.mjs "$LINT/eslint.config.mjs"  # beside eslint, whose packages it imports
"$LINT/node_modules/.bin/eslint" --config "$LINT/eslint.config.mjs" refinery/pages/*.js
echo "lint_js: refinery/pages/*.js ok"
