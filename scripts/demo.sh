#!/usr/bin/env bash
# Set up etaflow in .venv, simulate an HBT measurement of a single-photon source (HydraHarp T2 PTU,
# written by etaflow's own simulator), describe the file, and run the bundled Correlation recipe
# on it: the g2 histogram shows the antibunching dip (g2(0) near 0).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[plot]"
mkdir -p demo-data
.venv/bin/etaflow simulate demo-data/hbt_t2.ptu --kind hh-t2 --duration 1
.venv/bin/etaflow info demo-data/hbt_t2.ptu
.venv/bin/etaflow run Correlation --panel g2 --set file=demo-data/hbt_t2.ptu --output demo-data/results
