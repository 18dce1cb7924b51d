#!/usr/bin/env bash
# The whole test suite: lint (ruff), types (mypy), layering (import-linter), then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "run scripts/install.sh first" >&2; exit 1; }
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff";          ruff check crane_iac tests bench
echo "== mypy";          mypy
echo "== import-linter"; lint-imports --no-cache
echo "== pytest";        python -m pytest -q -p no:cacheprovider "$@"
