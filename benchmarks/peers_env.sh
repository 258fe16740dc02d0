#!/usr/bin/env bash
# Make the peer environment for benchmarks/compare_peers.py: imagededup, cleanvision, fastdup.
#
#   bash benchmarks/peers_env.sh [VENV]        # default /work/bench-venv
#
# Benchmark-only dependencies, in their own venv, never refinery's. imagededup imports
# torchvision at import time, so it needs a torch and torchvision built for each other:
# the registry's Linux wheels, which pull the CUDA libraries (about 3 GB of wheels, 6 GB
# installed). A torch "+cpu" wheel with the registry's torchvision fails at import
# ("operator torchvision::nms does not exist"); where download.pytorch.org is reachable,
# its CPU index is the small alternative.
#
# fastdup 2.x ships its native libraries in the wheel (manylinux_2_31: glibc 2.31 or newer,
# plus libstdc++, zlib and expat from the system); it pins numpy<2, Pillow==10.3.0 and
# scikit-learn==1.5.0, which the other peers then share. fastdup reports to Sentry and checks
# PyPI for a newer version unless told not to: peers.py and compare_peers.py set
# SENTRY_OPT_OUT=1 and FASTDUP_PRODUCTION=1 and pass run_sentry=False; do the same if you
# import it yourself.
set -euo pipefail
venv="${1:-/work/bench-venv}"
python3 -m venv "$venv"
"$venv/bin/pip" install torch==2.14.1 torchvision==0.29.1 imagededup cleanvision fastdup
SENTRY_OPT_OUT=1 FASTDUP_PRODUCTION=1 "$venv/bin/python" "$(dirname "$0")/peers.py" --available
