#!/usr/bin/env bash
# The whole test suite: lint (ruff), types (mypy), layering (import-linter), the docs site (mkdocs --strict),
# then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "run scripts/install.sh first" >&2; exit 1; }
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff";          ruff check crane_iac tests bench scripts
echo "== mypy";          mypy
echo "== import-linter"; lint-imports --no-cache
site=$(mktemp -d); trap 'rm -rf "$site"' EXIT       # the built site is thrown away: the build is the check
echo "== docs";          NO_MKDOCS_2_WARNING=1 mkdocs build --strict --site-dir "$site"   # not --quiet: it hides the warnings strict counts
echo "== pytest";        python -m pytest -q -p no:cacheprovider "$@"
