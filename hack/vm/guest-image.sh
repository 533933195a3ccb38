#!/usr/bin/env bash
# hack/vm/guest-image.sh (`make guest-image`): the vmm sandboxer's guest image,
# built from Debian packages and the Go module proxy only, on a fresh Debian
# bookworm machine (root for dpkg -x ownership is not needed, but apt-get is).
#
# Output, in $GUEST_OUT (default _output/guest):
#   vmlinuz                 Debian's cloud kernel (bzImage, LZ4), from the
#                           concrete package that linux-image-cloud-amd64
#                           depends on (apt-get download + dpkg -x: the
#                           package is never installed on the host)
#   initramfs.cpio          uncompressed newc cpio (hack/vm/mkinitramfs,
#                           byte-reproducible): /init = the agent
#                           (bin/magnetar-agent), /bin/runc = static runc
#                           $RUNC_VERSION with seccomp, /modules/*.ko and
#                           /modules/load (file names in dependency order,
#                           from modprobe --show-depends)
#   manifest.json           versions and sha256 of the kernel package, vmlinuz,
#                           agent, runc, every module and the initramfs itself
#   initramfs-marker.cpio   the same with /init = hack/vm/markerinit (prints a
#   manifest-marker.json    marker, loads the modules, powers off): the bare
#                           guest boot the boot benchmark compares against
#
# Cache ($GUEST_CACHE, default ~/.cache/magnetar/guest):
#   kernel/<package>_<version>/   the .deb and its extracted tree (+ depmod)
#   runc/<version>-<flags>/runc   static runc (flags: hash of tags, ldflags, Go)
#   images/<key>/                 an initramfs + manifest; the key is the sha256
#                                 of the layout version, kernel package version,
#                                 module list, and the sha256 of /init, runc and
#                                 mkinitramfs. A second build only hashes and
#                                 copies; a changed agent rebuilds only its
#                                 initramfs. The $GUEST_KEEP (4) most recently used
#                                 images are kept.
#
# Knobs: AGENT (the /init binary), AGENT_VERSION (recorded in the manifest), KERNEL_PACKAGE (linux-image-cloud-amd64),
# GUEST_MODULES (space-separated module names), RUNC_VERSION, GUEST_OUT,
# GUEST_CACHE, FORCE=1 (rebuild everything in the cache).
source "$(dirname "$0")/../lib.sh"
GUEST_CACHE=${GUEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/magnetar/guest}
GUEST_OUT=${GUEST_OUT:-$OUT/guest}
KERNEL_PACKAGE=${KERNEL_PACKAGE:-linux-image-cloud-amd64}
AGENT=${AGENT:-$ROOT/bin/magnetar-agent}
FORCE=${FORCE:-0}
# transports: virtio-mmio (microvm) and virtio-pci; agent channel: virtio-serial
# (virtio_console) or vsock; shares: virtio-fs; block rootfs: virtio-blk +
# erofs; network: virtio-net; container rootfs stacking: overlay; bridge (+
# stp, llc): a container with NET_ADMIN may create a bridge in the pod's
# network namespace (critest's Privileged and adding-capability specs run
# `brctl addbr`; the guest has no modprobe for the kernel to load it on
# demand: without the module the ioctl fails with ENOPKG)
read -r -a MODULES <<<"${GUEST_MODULES:-virtio_mmio virtio_pci virtio_console fuse virtiofs vsock vmw_vsock_virtio_transport virtio_net virtio_blk overlay erofs bridge}"
# bump when what goes into the initramfs changes in a way the key does not see
LAYOUT=1
LOAD_ORDER=load

t_start=$SECONDS
sha() { sha256sum "$1" | cut -d' ' -f1; }

# resolve_kernel: sets KPKG (the concrete package KERNEL_PACKAGE depends on)
# and KPKG_VERSION. apt-cache takes about a second per call here (no
# pkgcache.bin), so the answer is remembered for as long as the apt lists it
# came from are unchanged.
resolve_kernel() {
  local i stamp memo=$GUEST_CACHE/resolve-$KERNEL_PACKAGE line
  stamp=$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -printf '%f %s %T@\n' 2>/dev/null | sort | sha256sum | cut -c1-16)
  if [ "$FORCE" != 1 ] && [ -f "$memo" ] && read -r line <"$memo" && [ "${line%% *}" = "$stamp" ]; then
    read -r _ KPKG KPKG_VERSION <<<"$line"
    [ -n "$KPKG_VERSION" ] && return 0
  fi
  for i in 1 2; do
    # "Depends: linux-image-6.1.0-57-cloud-amd64 (= 6.1.192-3)"
    line=$(apt-cache show --no-all-versions "$KERNEL_PACKAGE" 2>/dev/null | sed -n 's/^Depends: \(linux-image-[^ ,]*\) (= \([^)]*\)).*/\1 \2/p' | head -1)
    if [ -n "$line" ]; then
      read -r KPKG KPKG_VERSION <<<"$line"
      printf '%s %s %s\n' "$stamp" "$KPKG" "$KPKG_VERSION" >"$memo"
      return 0
    fi
    [ "$i" = 1 ] || break
    log "apt-cache knows no $KERNEL_PACKAGE: apt-get update"
    apt_update || true
    stamp=$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -printf '%f %s %T@\n' 2>/dev/null | sort | sha256sum | cut -c1-16)
  done
  # offline fallback: the newest kernel already in the cache
  local d
  d=$(find "$GUEST_CACHE/kernel" -mindepth 1 -maxdepth 1 -type d -name 'linux-image-*_*' 2>/dev/null | sort -V | tail -1)
  [ -n "$d" ] && [ -f "$d/.done" ] || die "cannot resolve $KERNEL_PACKAGE (no apt lists, nothing cached)"
  d=$(basename "$d")
  KPKG=${d%%_*}
  KPKG_VERSION=${d#*_}
  log "warning: apt cannot resolve $KERNEL_PACKAGE; using the cached $KPKG $KPKG_VERSION"
}

apt_update() {
  local i
  for i in $(seq 1 20); do
    if apt-get update -qq; then return 0; fi
    log "apt busy? retry $i"
    sleep 10
  done
  return 1
}

# fetch_kernel: sets KDIR (extracted tree), KVER (uname -r), KDEB
fetch_kernel() {
  KDIR=$GUEST_CACHE/kernel/${KPKG}_$KPKG_VERSION
  if [ "$FORCE" = 1 ] || [ ! -f "$KDIR/.done" ]; then
    log "kernel: apt-get download $KPKG=$KPKG_VERSION"
    local tmp=$KDIR.tmp.$$ i ok=0
    rm -rf "$tmp"
    mkdir -p "$tmp/root"
    for i in $(seq 1 10); do
      # (as root apt warns that the download is unsandboxed: harmless)
      if (cd "$tmp" && apt-get download -qq "$KPKG=$KPKG_VERSION"); then ok=1; break; fi
      log "apt-get download failed, retry $i"
      sleep 10
    done
    [ "$ok" = 1 ] || die "apt-get download $KPKG=$KPKG_VERSION failed"
    local deb
    deb=$(find "$tmp" -maxdepth 1 -name "${KPKG}_*.deb" | head -1)
    [ -n "$deb" ] || die "apt-get download left no .deb"
    dpkg -x "$deb" "$tmp/root"
    local kver
    kver=$(ls "$tmp/root/lib/modules")
    depmod -b "$tmp/root" "$kver"
    touch "$tmp/.done"
    rm -rf "$KDIR"
    mv "$tmp" "$KDIR"
  fi
  KDEB=$(find "$KDIR" -maxdepth 1 -name "${KPKG}_*.deb" | head -1)
  KVER=$(ls "$KDIR/root/lib/modules")
  VMLINUZ=$KDIR/root/boot/vmlinuz-$KVER
  [ -f "$VMLINUZ" ] || die "no $VMLINUZ in $KDEB"
}

# module_order: writes $1 with the absolute paths of the modules to load, in
# dependency order, each once (built-in ones need nothing)
module_order() {
  local out=$1 path
  module_deps "$out" "$KDIR/root" "$KVER" "${MODULES[@]}" || die "a module is not in $KPKG"
  # crc32c-intel needs SSE4.2 (TCG has it only with -cpu max): load the
  # generic implementation first so libcrc32c always finds one
  if grep -q '/libcrc32c\.ko$' "$out" && ! grep -q '/crc32c_generic\.ko$' "$out"; then
    path=$(find "$KDIR/root/lib/modules/$KVER" -name crc32c_generic.ko | head -1)
    if [ -n "$path" ]; then
      { echo "$path"; cat "$out"; } >"$out.new"
      mv "$out.new" "$out"
    fi
  fi
}

# build_runc: sets RUNC (static runc with seccomp), cached per version and
# build flags
RUNC_TAGS="seccomp netgo osusergo"
RUNC_LDFLAGS="-s -w -extldflags -static"
build_runc() {
  local flags
  flags=$(printf '%s\n' "$RUNC_TAGS" "$RUNC_LDFLAGS" "$(go env GOVERSION)" | sha256sum | cut -c1-8)
  RUNC=$GUEST_CACHE/runc/$RUNC_VERSION-$flags/runc
  if [ "$FORCE" != 1 ] && [ -x "$RUNC" ]; then return 0; fi
  log "runc: building $RUNC_VERSION static (cgo, seccomp, libseccomp.a)"
  [ -f /usr/lib/x86_64-linux-gnu/libseccomp.a ] || die "libseccomp.a missing: apt-get install libseccomp-dev"
  local dir tmp
  dir=$(dirname "$RUNC")
  tmp=$dir.tmp.$$
  rm -rf "$tmp"
  mkdir -p "$tmp"
  # the module zip is the one hack/install-tools.sh already downloaded (same
  # GOMODCACHE), so this needs no network when `make tools` ran before
  GOBIN=$tmp CGO_ENABLED=1 go install -trimpath -tags "$RUNC_TAGS" -ldflags "$RUNC_LDFLAGS" \
    "github.com/opencontainers/runc@$RUNC_VERSION"
  if ldd "$tmp/runc" >/dev/null 2>&1; then die "runc is not statically linked"; fi
  "$tmp/runc" --version | grep -q '^libseccomp: ' || die "runc built without seccomp"
  rm -rf "$dir"
  mv "$tmp" "$dir"
}

# order_names: the file names of the modules in $ORDER, in order
order_names() {
  local p
  while read -r p; do basename "$p"; done <"$ORDER"
}

# go_tools: builds hack/vm/mkinitramfs and hack/vm/markerinit (static,
# reproducible: -trimpath, no build id) into $TOOLS
go_tools() {
  (cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -buildid=" -o "$TOOLS/" ./hack/vm/mkinitramfs ./hack/vm/markerinit)
}

# image NAME INIT: initramfs with /init = INIT; sets IMG_DIR
image() {
  local name=$1 init=$2 key
  local init_sha runc_sha mk_sha
  # PID 1 of an initramfs without libraries must be static
  if ldd "$init" >/dev/null 2>&1; then die "$init is dynamically linked (build it with CGO_ENABLED=0)"; fi
  init_sha=$(sha "$init")
  runc_sha=$(sha "$RUNC")
  mk_sha=$(sha "$TOOLS/mkinitramfs")
  key=$(printf '%s\n' "layout=$LAYOUT" "kernel=$KPKG=$KPKG_VERSION" "init=$init_sha" "runc=$RUNC_VERSION=$runc_sha" \
    "mkinitramfs=$mk_sha" "modules=$(order_names | tr '\n' ' ')" | sha256sum | cut -c1-16)
  IMG_DIR=$GUEST_CACHE/images/$key
  if [ "$FORCE" != 1 ] && [ -f "$IMG_DIR/initramfs.cpio" ] && [ -f "$IMG_DIR/manifest.json" ]; then
    log "$name initramfs: cached ($key)"
    touch "$IMG_DIR" # recently used: kept by the pruning below
    return 0
  fi
  local tmp=$IMG_DIR.tmp.$$ args=() p
  rm -rf "$tmp"
  mkdir -p "$tmp"
  order_names >"$tmp/$LOAD_ORDER"
  args=("/init=$init:0755" "/bin/runc=$RUNC:0755" "/modules/$LOAD_ORDER=$tmp/$LOAD_ORDER:0644")
  while read -r p; do args+=("/modules/$(basename "$p")=$p:0644"); done <"$ORDER"
  "$TOOLS/mkinitramfs" -o "$tmp/initramfs.cpio" -manifest "$tmp/manifest.json" \
    -meta "image=$name" -meta "key=$key" -meta "layout=$LAYOUT" \
    -meta "kernel_package=$KPKG" -meta "kernel_package_version=$KPKG_VERSION" \
    -meta "kernel_metapackage=$KERNEL_PACKAGE" -meta "kernel_release=$KVER" \
    -meta "runc_version=$RUNC_VERSION" -meta "runc_build=static, cgo, seccomp (libseccomp $(dpkg-query -W -f '${Version}' libseccomp-dev))" \
    -meta "init=$(basename "$init")" -meta "init_version=${INIT_VERSION:-unknown}" -meta "go=$(go env GOVERSION)" -meta "modules=$(order_names | tr '\n' ' ')" \
    -hash "kernel_deb=$KDEB" -hash vmlinuz="$VMLINUZ" -hash "init=$init" -hash "runc=$RUNC" \
    "${args[@]}"
  rm -f "$tmp/$LOAD_ORDER"
  rm -rf "$IMG_DIR"
  mv "$tmp" "$IMG_DIR"
  log "$name initramfs: built ($key, $(stat -c %s "$IMG_DIR/initramfs.cpio") bytes)"
}

# install SRC DST: hard link (or copy) SRC to DST unless DST already has its content
install_out() {
  if [ -f "$2" ] && cmp -s "$1" "$2"; then return 0; fi
  rm -f "$2"
  ln "$1" "$2" 2>/dev/null || cp "$1" "$2"
}

[ -x "$AGENT" ] || die "no agent at $AGENT (make bin/magnetar-agent)"
mkdir -p "$GUEST_CACHE" "$GUEST_OUT"
# one build at a time per cache (another checkout may share it)
exec 9>"$GUEST_CACHE/.lock"
if ! flock -n 9; then
  log "waiting for another guest-image build ($GUEST_CACHE/.lock)"
  flock 9
fi
TOOLS=$GUEST_CACHE/tools
mkdir -p "$TOOLS"
resolve_kernel
fetch_kernel
build_runc
go_tools
ORDER=$KDIR/order.$$
trap 'rm -f "$ORDER"' EXIT
module_order "$ORDER"

INIT_VERSION=${AGENT_VERSION:-unknown} image agent "$AGENT"
install_out "$IMG_DIR/initramfs.cpio" "$GUEST_OUT/initramfs.cpio"
install_out "$IMG_DIR/manifest.json" "$GUEST_OUT/manifest.json"
INIT_VERSION=markerinit image marker "$TOOLS/markerinit"
install_out "$IMG_DIR/initramfs.cpio" "$GUEST_OUT/initramfs-marker.cpio"
install_out "$IMG_DIR/manifest.json" "$GUEST_OUT/manifest-marker.json"
install_out "$VMLINUZ" "$GUEST_OUT/vmlinuz"
# every agent build is a new image: keep the GUEST_KEEP (default 4) most
# recently used
find "$GUEST_CACHE/images" -mindepth 1 -maxdepth 1 -type d -printf '%T@ %p\n' | sort -rn |
  tail -n +"$((${GUEST_KEEP:-4} + 1))" | while read -r _ d; do rm -rf "$d"; done
log "guest image in $GUEST_OUT ($((SECONDS - t_start)) s): $KPKG $KPKG_VERSION ($KVER), runc $RUNC_VERSION," \
  "$(wc -l <"$ORDER") modules, initramfs $(($(stat -c %s "$GUEST_OUT/initramfs.cpio") / 1024)) KiB," \
  "vmlinuz $(($(stat -c %s "$GUEST_OUT/vmlinuz") / 1024)) KiB"
