#!/usr/bin/env bash
# Writes requirements.lock: the exact versions of everything `.[all,dev]` resolves to today, in a throwaway
# virtualenv. scripts/install.sh installs with it as constraints, so CI and every developer get the same versions.
# Run it after changing a range in pyproject.toml, and commit the lock with the change.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --disable-pip-version-check '.[all,dev]'
{
    echo "# The exact versions scripts/install.sh installs (pip's constraints); made by scripts/lock.sh."
    "$tmp/venv/bin/pip" freeze --disable-pip-version-check --exclude crane_iac | LC_ALL=C sort -f
} > requirements.lock
echo "wrote requirements.lock ($(grep -vc '^#' requirements.lock) packages)"
