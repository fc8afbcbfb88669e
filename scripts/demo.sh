#!/usr/bin/env bash
# Set up etaflow in .venv, simulate an HBT measurement (HydraHarp T2 PTU, written by etaflow's
# own simulator) and describe it with `etaflow info`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
mkdir -p demo-data
.venv/bin/etaflow simulate demo-data/hbt_t2.ptu --kind hh-t2 --duration 1
.venv/bin/etaflow info demo-data/hbt_t2.ptu
