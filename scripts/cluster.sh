#!/usr/bin/env bash
# Install what is missing and start a kubelite control plane in the foreground.
# Then, in another terminal:  export KUBECONFIG=${KUBELITE_DATA_DIR:-/var/lib/kubelite}/kubeconfig; kubectl get ns
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/kubelite server --data-dir "${KUBELITE_DATA_DIR:-/var/lib/kubelite}" "$@"
