#!/usr/bin/env bash
# hack/install-tools.sh: build the real test components from the Go module proxy
# and Debian apt into $MAGNETAR_TOOLS/<name>-<version>, then link them into
# $PREFIX/bin and $PREFIX/cni-bin. Idempotent; FORCE=1 rebuilds.
#
#   containerd, ctr, containerd-shim-runc-v2  $CONTAINERD_VERSION (CGO off, no_btrfs)
#   runc                                      $RUNC_VERSION (cgo, seccomp)
#   crictl, critest                           $CRI_TOOLS_VERSION (built from the module zip)
#   CNI bridge, host-local, loopback, portmap $CNI_PLUGINS_VERSION
#   runsc (gVisor)                            $RUNSC_VERSION (CGO off: static)
source "$(dirname "$0")/lib.sh"
FORCE=${FORCE:-0}

apt_install() {
  # build: gcc libc6-dev pkg-config libseccomp-dev (runc, static pause/ipcmk);
  # images: busybox-static; harness: iptables iproute2 (CNI bridge, ip),
  # jq (e2e JSON), procps (ps, pgrep), bsdutils (script: TTY tests), util-linux (ipcrm);
  # wasm test modules: clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32;
  # agent protocol: protobuf-compiler and libprotobuf-dev (google/protobuf/*.proto,
  # which --no-install-recommends leaves out); guest image and VM tests: qemu-system-x86
  # (QEMU 7.2 + virtiofsd) qemu-utils kmod cpio lz4 xz-utils
  local pkgs=(busybox-static libseccomp-dev pkg-config iptables iproute2 gcc libc6-dev jq procps bsdutils util-linux
    clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32 protobuf-compiler libprotobuf-dev
    qemu-system-x86 qemu-utils kmod cpio lz4 xz-utils)
  local missing=() p i
  for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  for i in $(seq 1 20); do
    if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then return 0; fi
    log "apt busy? retry $i"; sleep 10
  done
  die "apt-get install ${missing[*]} failed"
}

# build NAME VERSION CHECKFILE CMD...: run CMD with $DEST set unless CHECKFILE exists
build() {
  local name=$1 version=$2 check=$3; shift 3
  DEST=$MAGNETAR_TOOLS/$name-$version
  if [ "$FORCE" != 1 ] && [ -x "$DEST/$check" ]; then return 0; fi
  log "building $name $version"
  local tmp=$DEST.tmp.$$
  rm -rf "$tmp"; mkdir -p "$tmp"
  local t0=$SECONDS
  ( DEST=$tmp; "$@" )
  rm -rf "$DEST"; mv "$tmp" "$DEST"
  log "built $name $version in $((SECONDS - t0)) s"
}

b_containerd() {
  GOBIN=$DEST/bin CGO_ENABLED=0 go install -tags no_btrfs \
    "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION"
}
b_runc() {
  GOBIN=$DEST/bin CGO_ENABLED=1 go install -tags seccomp "github.com/opencontainers/runc@$RUNC_VERSION"
}
b_critools() {
  # `go install sigs.k8s.io/cri-tools/...@v` fails on this proxy (its @v/list
  # answers 403); an exact-version module download works, so build from a copy.
  local dir src
  dir=$(go mod download -json "sigs.k8s.io/cri-tools@$CRI_TOOLS_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  [ -n "$dir" ] || die "cri-tools $CRI_TOOLS_VERSION: module download failed"
  src=$DEST/src; cp -r "$dir" "$src"; chmod -R u+w "$src"
  local ld="-X sigs.k8s.io/cri-tools/pkg/version.Version=$CRI_TOOLS_VERSION"
  (cd "$src" && CGO_ENABLED=0 go build -ldflags "$ld" -o "$DEST/bin/crictl" ./cmd/crictl &&
    CGO_ENABLED=0 go test -c -ldflags "$ld" -o "$DEST/bin/critest" ./cmd/critest)
  rm -rf "$src"
}
b_cni() {
  local p=github.com/containernetworking/plugins/plugins
  GOBIN=$DEST/bin CGO_ENABLED=0 go install "$p/main/bridge@$CNI_PLUGINS_VERSION" \
    "$p/ipam/host-local@$CNI_PLUGINS_VERSION" "$p/main/loopback@$CNI_PLUGINS_VERSION" \
    "$p/meta/portmap@$CNI_PLUGINS_VERSION"
}
b_runsc() {
  # static (CGO_ENABLED=0): the sandbox re-executes /proc/self/exe inside its
  # chroot, where a dynamically linked runsc finds no ld.so
  GOBIN=$DEST/bin CGO_ENABLED=0 go install -ldflags=-s "gvisor.dev/gvisor/runsc@$RUNSC_VERSION"
}

apt_install
mkdir -p "$MAGNETAR_TOOLS" "$PREFIX/bin" "$PREFIX/cni-bin"
build containerd "$CONTAINERD_VERSION" bin/containerd b_containerd
build runc "$RUNC_VERSION" bin/runc b_runc
build cri-tools "$CRI_TOOLS_VERSION" bin/critest b_critools
build cni-plugins "$CNI_PLUGINS_VERSION" bin/bridge b_cni
build runsc "$RUNSC_VERSION" bin/runsc b_runsc

for f in "$MAGNETAR_TOOLS/containerd-$CONTAINERD_VERSION"/bin/* "$MAGNETAR_TOOLS/runc-$RUNC_VERSION"/bin/* \
         "$MAGNETAR_TOOLS/cri-tools-$CRI_TOOLS_VERSION"/bin/* "$MAGNETAR_TOOLS/runsc-$RUNSC_VERSION"/bin/*; do
  ln -sfn "$f" "$PREFIX/bin/$(basename "$f")"
done
for f in "$MAGNETAR_TOOLS/cni-plugins-$CNI_PLUGINS_VERSION"/bin/*; do
  ln -sfn "$f" "$PREFIX/cni-bin/$(basename "$f")"
done
log "tools in $PREFIX: containerd $("$PREFIX/bin/containerd" --version | awk '{print $3}'), $("$PREFIX/bin/runc" --version | head -1), runsc $RUNSC_VERSION"
