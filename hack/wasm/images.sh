#!/usr/bin/env bash
# hack/wasm/images.sh: the wasm test images, as OCI archives in $IMAGES
# (default _output/images) built by hack/mkimage (no registry):
#
#   wasm-go.tar   localhost/magnetar/wasm-go:v1   /guest.wasm (hack/wasm/guest, Go,
#                 GOOS=wasip1 GOARCH=wasm), /etc/input.txt, /data/, /tmp/;
#                 entrypoint ["/guest.wasm"], cmd ["hello"]
#   wasm-c.tar    localhost/magnetar/wasm-c:v1    /hello.wasm (hack/wasm/cguest/hello.c,
#                 clang-14 + wasi-libc); entrypoint ["/hello.wasm"]
#   wasm-bad.tar  localhost/magnetar/wasm-bad:v1  /bad.wasm (text, not wasm) and
#                 /broken.wasm (the wasm magic, then garbage); entrypoint ["/bad.wasm"]
#
# The images are linux/amd64 like the node (containerd's CRI matches an
# image's platform with the sandbox's). Deterministic: same inputs, same
# digests. Modules are rebuilt only when their source is newer.
#   hack/wasm/images.sh            build
#   hack/wasm/images.sh import     build, then import into the harness containerd (WORK)
source "$(dirname "$0")/../lib.sh"

IMAGES=${IMAGES:-$OUT/images}
WBIN=$OUT/wasm
BIN=$OUT/bin
CLANG=${CLANG:-clang-14}
mkdir -p "$IMAGES" "$WBIN" "$BIN"

(cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -o "$BIN/mkimage" ./hack/mkimage)
newer() { [ ! -f "$1" ] || [ -n "$(find "${@:2}" -newer "$1" -print -quit)" ]; }
if newer "$WBIN/guest.wasm" "$ROOT/hack/wasm/guest"; then
  (cd "$ROOT" && GOOS=wasip1 GOARCH=wasm go build -trimpath -o "$WBIN/guest.wasm" ./hack/wasm/guest)
fi
if newer "$WBIN/hello.wasm" "$ROOT/hack/wasm/cguest"; then
  command -v "$CLANG" >/dev/null || die "$CLANG missing: apt-get install clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32"
  "$CLANG" --target=wasm32-wasi --sysroot=/usr -O2 -fuse-ld=lld -Wl,--strip-all \
    -o "$WBIN/hello.wasm" "$ROOT/hack/wasm/cguest/hello.c"
fi
F=$WBIN/files
rm -rf "$F"; mkdir -p "$F"
echo "input file of the wasm image" > "$F/input.txt"
echo "this is a text file, not a WebAssembly module" > "$F/bad.wasm"
printf '\0asm\1\0\0\0\377\377garbage' > "$F/broken.wasm"

"$BIN/mkimage" -o "$IMAGES/wasm-go.tar" -t localhost/magnetar/wasm-go:v1 \
  -f "$WBIN/guest.wasm:/guest.wasm:0755" -f "$F/input.txt:/etc/input.txt:0644" \
  -d /data:0777 -d /tmp:1777 -env GREETING=from-image -entrypoint '["/guest.wasm"]' -cmd '["hello"]'
"$BIN/mkimage" -o "$IMAGES/wasm-c.tar" -t localhost/magnetar/wasm-c:v1 \
  -f "$WBIN/hello.wasm:/hello.wasm:0755" -d /tmp:1777 -entrypoint '["/hello.wasm"]'
"$BIN/mkimage" -o "$IMAGES/wasm-bad.tar" -t localhost/magnetar/wasm-bad:v1 \
  -f "$F/bad.wasm:/bad.wasm:0644" -f "$F/broken.wasm:/broken.wasm:0644" -entrypoint '["/bad.wasm"]'
for t in wasm-go wasm-c wasm-bad; do
  log "image $IMAGES/$t.tar $(sha256sum "$IMAGES/$t.tar" | cut -c1-12) ($(du -k "$IMAGES/$t.tar" | cut -f1) KiB)"
done

if [ "${1:-}" = import ]; then
  for t in wasm-go wasm-c wasm-bad; do
    "$PREFIX/bin/ctr" --address "$WORK/run/containerd.sock" -n k8s.io images import --platform linux/amd64 "$IMAGES/$t.tar" >/dev/null ||
      die "import of $IMAGES/$t.tar into the containerd of $WORK failed"
  done
  log "imported the wasm images into the containerd of $WORK"
fi
