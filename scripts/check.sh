#!/usr/bin/env bash
# Every check CI runs, exactly as CI runs it: install what is missing, then ruff, mypy (strict on
# kubelite/) and the whole pytest suite with warnings as errors. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export PATH="$PWD/.venv/bin:$PATH"

echo "== ruff"
ruff check kubelite tests bench
ruff format --check kubelite tests bench
echo "== mypy"
mypy
echo "== pytest"
set +e
python -m pytest -p no:cacheprovider "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$rc"
