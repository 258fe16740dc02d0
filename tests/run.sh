#!/usr/bin/env bash
# Set up a test environment in .venv (runner + export extras + the fastreid oracle) and run
# the whole test suite. This is the README's test command; .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch 2.13.0 first: a bare `torch` requirement can pull a multi-GB CUDA build on Linux.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[export,train,serve,ray,test]"
# Upstream fastreid, only as the oracle the loader is checked against. Its metadata pins
# torch 1.13, so it goes in without dependencies; the modeling code runs on current torch.
.venv/bin/python -m pip install -q --no-deps -r tests/oracle-requirements.txt
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
exec .venv/bin/python -m pytest "$@"
