#!/usr/bin/env bash
# Install what is missing and start a kubelite cluster in the foreground: the API server and
# ${KUBELITE_NODES:-2} nodes, each node in its own network namespace on a bridge (kubelite up).
# Then, in another terminal:  export KUBECONFIG=${KUBELITE_DATA_DIR:-/var/lib/kubelite}/kubeconfig; kubectl get nodes
# Extra arguments go to `kubelite up` (e.g. --overlay host-gw, --host-netns kl-host to keep the
# machine's own network namespace untouched). Ctrl-C removes everything it made.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/kubelite up --data-dir "${KUBELITE_DATA_DIR:-/var/lib/kubelite}" --nodes "${KUBELITE_NODES:-2}" "$@"
