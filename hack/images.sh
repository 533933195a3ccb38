#!/usr/bin/env bash
# hack/images.sh: build the test images without any registry, as OCI-archive
# tarballs in $IMAGES (default _output/images) that `ctr -n k8s.io images
# import` accepts (hack/containerd.sh start imports them).
#
#   busybox.tar  Debian's busybox-static, one HARD link per applet at its
#                `busybox --list-full` path (symlinks break critest's
#                MaskedPaths spec), /etc/passwd+group, and stand-ins for the
#                missing pgrep applet plus a tiny static `ipcmk -M` that is also
#                `ipcs [-m]` (hack/ipcmk: asks the kernel, not /proc).
#                Tags: $BUSYBOX_TAGS.
#   web.tar      the same + busybox httpd serving /www on :80; prints a line
#                starting with "httpd" first (critest's multi-container spec
#                checks it). Tags: $WEB_TAGS (the names critest asks for).
#   pause.tar    hack/pause/pause.c, static: the runc shim's pod sandbox image.
#
# Output is deterministic (same inputs, same bytes, same digests). Needs
# busybox-static, gcc (static glibc) and Go. Helper binaries go to $OUT/bin.
source "$(dirname "$0")/lib.sh"

IMAGES=${IMAGES:-$OUT/images}
BUSYBOX=${BUSYBOX:-/bin/busybox}
BUSYBOX_TAGS=${BUSYBOX_TAGS:-"docker.io/library/busybox:latest registry.k8s.io/e2e-test-images/busybox:1.29-2"}
WEB_TAGS=${WEB_TAGS:-"localhost/magnetar/web:v1 registry.k8s.io/e2e-test-images/nginx:1.14-2 registry.k8s.io/e2e-test-images/httpd:2.4.39-4"}
PAUSE_IMAGE=${PAUSE_IMAGE:-localhost/magnetar/pause:v1}
BIN=$OUT/bin
mkdir -p "$IMAGES" "$BIN"

[ -x "$BUSYBOX" ] || die "$BUSYBOX missing: apt-get install busybox-static"
if ldd "$BUSYBOX" >/dev/null 2>&1; then die "$BUSYBOX is dynamically linked: apt-get install busybox-static"; fi
command -v gcc >/dev/null || die "gcc missing: apt-get install gcc"

# helpers: rebuilt when their source is newer
(cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -o "$BIN/mkimage" ./hack/mkimage)
for c in pause ipcmk; do
  if [ ! -x "$BIN/$c" ] || [ "$ROOT/hack/$c/$c.c" -nt "$BIN/$c" ]; then
    gcc -static -Os -s -Wall -o "$BIN/$c" "$ROOT/hack/$c/$c.c"
  fi
done

# small files for the image, written to a scratch dir
FILES=$OUT/images/files
rm -rf "$FILES"; mkdir -p "$FILES"
cat > "$FILES/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat > "$FILES/group" <<'EOF'
root:x:0:
daemon:x:1:
www-data:x:33:
nogroup:x:65534:
EOF
cat > "$FILES/pgrep" <<'EOF'
#!/bin/sh
# pgrep PATTERN: stand-in (Debian's busybox has no pgrep). Prints the PID of
# every process whose name (/proc/PID/comm) matches the extended regex
# PATTERN; exits 1 when none does.
[ $# -eq 1 ] || { echo "usage: pgrep PATTERN" >&2; exit 2; }
rc=1
for d in /proc/[0-9]*; do
  pid=${d#/proc/}
  [ "$pid" = "$$" ] && continue
  comm=$(cat "$d/comm" 2>/dev/null) || continue
  if printf '%s\n' "$comm" | grep -Eq -- "$1"; then echo "$pid"; rc=0; fi
done
exit $rc
EOF
echo '<html><body>magnetar web stand-in</body></html>' > "$FILES/index.html"

# the busybox root filesystem, shared by busybox and web
base=(
  -f "$BUSYBOX:/bin/busybox:0755"
  -f "$FILES/passwd:/etc/passwd:0644" -f "$FILES/group:/etc/group:0644"
  -f "$FILES/pgrep:/usr/bin/pgrep:0755"
  -f "$BIN/ipcmk:/usr/bin/ipcmk:0755" -f "$BIN/ipcmk:/usr/bin/ipcs:0755"
  -d /tmp:1777 -d /var/tmp:1777 -d /root:0700 -d /home -d /proc -d /sys -d /dev -d /etc -d /var/www
  -env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
)
napplets=0
while read -r applet; do
  case "$applet" in bin/busybox|usr/bin/pgrep|usr/bin/ipcs|usr/bin/ipcmk) continue ;; esac
  base+=(-H "/$applet:/bin/busybox")
  napplets=$((napplets + 1))
done < <("$BUSYBOX" --list-full | sort)
[ "$napplets" -gt 100 ] || die "busybox --list-full gave only $napplets applets"

tags() { local t; for t in $1; do printf -- '-t\n%s\n' "$t"; done; }

mapfile -t bt < <(tags "$BUSYBOX_TAGS")
"$BIN/mkimage" -o "$IMAGES/busybox.tar" "${bt[@]}" "${base[@]}" -cmd '["sh"]'

mapfile -t wt < <(tags "$WEB_TAGS")
"$BIN/mkimage" -o "$IMAGES/web.tar" "${wt[@]}" "${base[@]}" -f "$FILES/index.html:/www/index.html:0644" \
  -cmd '["sh","-c","echo \"httpd: magnetar busybox stand-in serving /www on :80\"; exec httpd -f -v -p 80 -h /www"]'

"$BIN/mkimage" -o "$IMAGES/pause.tar" -t "$PAUSE_IMAGE" -f "$BIN/pause:/pause:0755" \
  -entrypoint '["/pause"]' -user 65535:65535

for t in busybox web pause; do
  log "image $IMAGES/$t.tar $(sha256sum "$IMAGES/$t.tar" | cut -c1-12) ($(du -k "$IMAGES/$t.tar" | cut -f1) KiB)"
done
