#!/usr/bin/env bash
# Test refinery as it is delivered. This is the README's test command; .ci/run calls exactly this.
#
#   bash tests/run.sh          build the wheel; install it (not editable) in a clean venv without
#                              torch and run every runtime command from there (tests/smoke.py);
#                              install it in .venv with every extra, torch and the fastreid oracle
#                              (the one venv with torch), run export-model and train from there,
#                              then the whole suite against the installed package (never the
#                              checkout's sources)
#   bash tests/run.sh --fast   day to day: lint and types, then the torch-free runtime tests in
#                              the existing .venv (a few minutes); give pytest options after it.
#                              Passes on a torch-free install too (the CLIP export tests skip)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

PYTHON=${PYTHON:-python3}
TORCH="torch==2.13.0"  # pinned first: a bare `torch` requirement can pull a multi-GB CUDA build on Linux

if [ "${1:-}" = "--fast" ]; then
  shift
  [ -x .venv/bin/python ] || { echo "no .venv yet: run 'bash tests/run.sh' once" >&2; exit 2; }
  # The code as written first: format and lint (ruff) and types (mypy), configured in pyproject.toml.
  .venv/bin/python -m ruff format --check refinery tests benchmarks
  .venv/bin/python -m ruff check refinery tests benchmarks
  .venv/bin/python -m mypy
  bash tests/lint_js.sh
  # The checkout's sources, editable or not: day-to-day work tests what is being written.
  exec .venv/bin/python -m pytest -m "not slow" --ignore tests/test_export.py --ignore tests/test_fastreid.py \
    --ignore tests/test_train.py --ignore tests/test_ray.py "$@"
fi

# 1. The wheel, as pip builds it for a user.
rm -rf build/dist
"$PYTHON" -m pip wheel -q --no-deps -w build/dist .
WHEEL=$(ls build/dist/image_refinery-*.whl)

# 2. A clean venv with only the wheel and its [serve] extra - no torch, as a user's runner has
#    none: every command but export-model and train runs from there, outside the checkout.
rm -rf build/smoke-venv
"$PYTHON" -m venv build/smoke-venv
build/smoke-venv/bin/python -m pip install -q --upgrade pip
build/smoke-venv/bin/python -m pip install -q "${WHEEL}[serve]"
(cd "${TMPDIR:-/tmp}" && "$REPO/build/smoke-venv/bin/python" "$REPO/tests/smoke.py" runtime)

# 3. The test environment: the same wheel with every extra, and the fastreid oracle.
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "$TORCH"
.venv/bin/python -m pip install -q --force-reinstall --no-deps "$WHEEL"
.venv/bin/python -m pip install -q "${WHEEL}[export,train,serve,ray,test,clip]"
# Upstream fastreid, only as the oracle the loader is checked against. Its metadata pins
# torch 1.13, so it goes in without dependencies; the modeling code runs on current torch.
.venv/bin/python -m pip install -q --no-deps -r tests/oracle-requirements.txt
# export-model and train from the installed wheel too, outside the checkout (torch is only here).
(cd "${TMPDIR:-/tmp}" && "$REPO/.venv/bin/python" "$REPO/tests/smoke.py" torch)
# The browser test in tests/test_serve.py drives Debian's Chromium through chromedriver; as
# root with apt-get, install them if missing (otherwise that test is skipped, saying why).
if { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; } && [ "$(id -u)" = 0 ] \
    && command -v apt-get >/dev/null; then
  echo "installing chromium and chromium-driver (apt-get) for the browser test"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
      >/dev/null; }; then
    echo "could not install chromium: the browser test will be skipped" >&2
  fi
fi
# The code as written: format and lint (ruff) and types (mypy), configured in pyproject.toml,
# and the pages' scripts (ESLint, tests/lint_js.sh).
.venv/bin/python -m ruff format --check refinery tests benchmarks
.venv/bin/python -m ruff check refinery tests benchmarks
.venv/bin/python -m mypy
bash tests/lint_js.sh
# PYTHONSAFEPATH: neither pytest nor the CLI runs it starts put the checkout on sys.path, so
# `import refinery` is the installed wheel (Python 3.11+; 3.10 ignores it and tests the sources).
export PYTHONSAFEPATH=1
.venv/bin/python -c 'import refinery, sys; print("testing", refinery.__file__, file=sys.stderr)'
exec .venv/bin/python -m pytest "$@"
