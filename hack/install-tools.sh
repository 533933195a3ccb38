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
#
# `hack/install-tools.sh packages` installs the Debian packages only (gcc for
# the cgo build of bin/wasm-sandboxer among them).
# `hack/install-tools.sh k8s` builds the Kubernetes node of hack/k8s instead
# (about 11 min and 3.7 GB of Go build cache the first time on 2 cores, 1.5 min
# with a warm cache):
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl  $KUBERNETES_VERSION
#   etcd                                                                       $ETCD_VERSION
source "$(dirname "$0")/lib.sh"
FORCE=${FORCE:-0}
SET=${1:-base}
case "$SET" in base|k8s|packages) ;; *) echo "usage: $0 [base|k8s|packages]" >&2; exit 2 ;; esac

apt_install() {
  # build: gcc libc6-dev pkg-config libseccomp-dev (runc, static pause/ipcmk);
  # images: busybox-static; harness: iptables iproute2 (CNI bridge, ip),
  # jq (e2e JSON), procps (ps, pgrep), bsdutils (script: TTY tests), util-linux (ipcrm);
  # wasm test modules: clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32;
  # agent protocol: protobuf-compiler and libprotobuf-dev (google/protobuf/*.proto,
  # which --no-install-recommends leaves out); guest image and VM tests: qemu-system-x86
  # (QEMU 7.2 + virtiofsd) qemu-utils kmod cpio lz4 xz-utils; the Kubernetes node
  # of hack/k8s: openssl (its certificates) curl (health and the kubelet's API)
  local pkgs=(busybox-static libseccomp-dev pkg-config iptables iproute2 gcc libc6-dev jq procps bsdutils util-linux
    clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32 protobuf-compiler libprotobuf-dev
    qemu-system-x86 qemu-utils kmod cpio lz4 xz-utils openssl curl)
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

# module_copy MODULE@VERSION DIR: the module's source from the Go module proxy
# into DIR, writable
module_copy() {
  local dir
  dir=$(go mod download -json "$1" | jq -r .Dir)
  [ -n "$dir" ] && [ "$dir" != null ] || die "$1: module download failed"
  cp -r "$dir" "$2"; chmod -R u+w "$2"
}

# Kubernetes and etcd are single repositories of several modules: their main
# modules replace the others with ../ paths (k8s.io/kubernetes: ./staging/src/
# k8s.io/*, which its module zip does not even hold), so `go install ...@v`
# refuses them. Build from a copy of the main module with the replaces dropped
# and the published modules of the same release required instead.
b_kubernetes() {
  local src=$DEST/src mods m staging ld p date
  module_copy "k8s.io/kubernetes@$KUBERNETES_VERSION" "$src"
  # the zip's vendor/ holds only OWNERS, but its presence means -mod=vendor
  rm -rf "$src/go.work" "$src/go.work.sum" "$src/vendor"
  staging=v0.${KUBERNETES_VERSION#v1.}   # v1.37.2 -> v0.37.2: the staging modules' tag
  mods=$(sed -n '/^replace (/,/^)/p' "$src/go.mod" | awk '/=> \.\/staging\//{print $1}')
  [ -n "$mods" ] || die "k8s.io/kubernetes@$KUBERNETES_VERSION: no staging replaces in go.mod"
  for m in $mods; do
    (cd "$src" && go mod edit -dropreplace="$m")
    # required as v0.0.0 (a placeholder for the replace): the published tag instead
    if grep -q "^	$m v0.0.0$" "$src/go.mod"; then (cd "$src" && go mod edit -require="$m@$staging"); fi
  done
  # the version stamp hack/lib/version.sh would give (else the node says v0.0.0-master)
  date=$(jq -r .Time "$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | jq -r .Info)")
  local major=${KUBERNETES_VERSION#v} minor
  minor=${major#*.}; minor=${minor%%.*}; major=${major%%.*}
  ld="-s -w"
  for p in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    ld="$ld -X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor"
    ld="$ld -X $p.gitTreeState=clean -X $p.buildDate=$date"
  done
  mkdir -p "$DEST/bin"
  (cd "$src" && GOTOOLCHAIN=local CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags "$ld" -o "$DEST/bin/" \
    ./cmd/kube-apiserver ./cmd/kube-controller-manager ./cmd/kube-scheduler ./cmd/kubelet ./cmd/kubectl)
  rm -rf "$src"
}
b_etcd() {
  local src=$DEST/src m
  module_copy "go.etcd.io/etcd/server/v3@$ETCD_VERSION" "$src"
  for m in go.etcd.io/etcd/api/v3 go.etcd.io/etcd/client/pkg/v3 go.etcd.io/etcd/client/v3 go.etcd.io/etcd/pkg/v3; do
    (cd "$src" && go mod edit -dropreplace="$m" -require="$m@$ETCD_VERSION")
  done
  # its go.mod names a newer patch toolchain than ours; the go line (1.26.0) is what it needs
  (cd "$src" && go mod edit -toolchain=none &&
    GOTOOLCHAIN=local CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags "-s -w" -o "$DEST/bin/etcd" .)
  rm -rf "$src"
}

apt_install
[ "$SET" != packages ] || exit 0
mkdir -p "$MAGNETAR_TOOLS" "$PREFIX/bin" "$PREFIX/cni-bin"
if [ "$SET" = k8s ]; then
  build kubernetes "$KUBERNETES_VERSION" bin/kubelet b_kubernetes
  build etcd "$ETCD_VERSION" bin/etcd b_etcd
  for f in "$MAGNETAR_TOOLS/kubernetes-$KUBERNETES_VERSION"/bin/* "$MAGNETAR_TOOLS/etcd-$ETCD_VERSION"/bin/*; do
    ln -sfn "$f" "$PREFIX/bin/$(basename "$f")"
  done
  log "kubernetes in $PREFIX: $("$PREFIX/bin/kubelet" --version), etcd $("$PREFIX/bin/etcd" --version | awk '/etcd Version/ {print $3}')"
  exit 0
fi
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
