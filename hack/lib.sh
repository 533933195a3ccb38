#!/usr/bin/env bash
# hack/lib.sh: shared settings for every hack/ script. Source it.
#
# Test components are built from the Go module proxy into a cache keyed by
# version (MAGNETAR_TOOLS, outside the clone so CI reruns reuse it), then linked
# into the project-local prefix $PREFIX (_output/prefix). Nothing is installed
# over the system's own containerd, runc or sockets.
set -euo pipefail
ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
OUT=${OUT:-$ROOT/_output}
PREFIX=${PREFIX:-$OUT/prefix}
MAGNETAR_TOOLS=${MAGNETAR_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/magnetar/tools}
CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.4.2}
RUNC_VERSION=${RUNC_VERSION:-v1.5.2}
CRI_TOOLS_VERSION=${CRI_TOOLS_VERSION:-v1.36.0}
CNI_PLUGINS_VERSION=${CNI_PLUGINS_VERSION:-v1.9.1}
export PATH=/usr/local/go/bin:$PATH
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- e2e harness: hack/containerd.sh, hack/e2e/*, hack/critest.sh, hack/demo.sh
# Everything of one harness instance lives below WORK (throwaway): containerd's
# root/state/sockets, the sandboxers' dirs, CNI config and IPAM, logs.
WORK=${WORK:-$OUT/e2e}
CSOCK=$WORK/run/containerd.sock
CRICTL_CONFIG=$WORK/etc/crictl.yaml
# Magnetar sandboxers the harness knows, one line each: "HANDLER BINARY".
# HANDLER names both the containerd proxy plugin and the CRI runtime handler;
# the daemon is $ROOT/bin/BINARY and is configured only when that file exists.
# Per-sandboxer config file content: sandboxer_config() in hack/containerd.sh.
MAGNETAR_SANDBOXERS=(
  "magnetar-runc runc-sandboxer"
)
# sandboxer_binary HANDLER: prints BINARY for a known HANDLER (rc 1 otherwise)
sandboxer_binary() {
  local line name bin
  for line in "${MAGNETAR_SANDBOXERS[@]}"; do
    read -r name bin <<<"$line"
    if [ "$name" = "$1" ]; then echo "$bin"; return 0; fi
  done
  return 1
}
