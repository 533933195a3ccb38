#!/usr/bin/env bash
# hack/packages/test.sh: tests of the deb/rpm packages and the deploy files.
# Ends with exactly one line "packages: N passed, M failed" (skips are listed
# with their reason and not counted); exit 1 when M > 0.
#
#   static (per sandboxer): deploy files match their templates; the default
#     config names every key of the code, with a comment, and the daemon
#     serves with it (and rejects a bad key); deb and rpm contents, modes,
#     conffiles / %config(noreplace), dependencies, maintainer scripts;
#     `systemd-analyze verify` of the unit in the unpacked package; apt
#     resolves the dependencies (simulation); rpm install + erase in a scratch
#     root; a second, made-up sandboxer and a handler of its daemon built
#     from the same templates share no file with the real ones (only the
#     common directories)
#   static (per handler of another sandboxer's daemon, DAEMON=...: clh,
#     stratovirt, wasm-wazero): drop-in and RuntimeClass match the templates;
#     the daemon's config maps the handler; deb and rpm hold those two files
#     only, the drop-in a conffile; they depend on the daemon's package of the
#     same version (apt resolves that, and refuses another version); the
#     scripts touch no unit (%preun warns about the handler's pods only)
#   install (root), for each package of INSTALL_HANDLERS (default
#     "magnetar-runc magnetar-vmm"; set but empty: none), one after the other, each purged and
#     cleaned up before the next (skipped with the reason when anything of the
#     package already exists on the host, never overwritten; magnetar-vmm
#     also when QEMU or virtiofsd is missing or the guest image was not
#     built): dpkg -i, verify the installed unit, start the daemon with the
#     unit's ExecStart and a stand-in NOTIFY_SOCKET (READY=1, WATCHDOG=1; vmm:
#     the guest image of the package, /usr/share/magnetar/vmm), a throwaway
#     containerd that imports the installed drop-in (proxy plugin and runtime
#     handler loaded), the e2e smoke through it (vmm: the pod was a VM that
#     booted and was shut down), (vmm: a pod's QEMU boots the installed
#     kernel and initramfs, the container runs on the guest's kernel,) a
#     reinstall (kept conffile) + daemon restart with a running pod (runc: the
#     container process survives; vmm: the VM's QEMU and virtiofsd survive),
#     dpkg -r (only the conffiles stay, keeper stopped), dpkg -P (nothing
#     stays). Where systemd runs, the unit is masked in /run for the test so
#     that postinst cannot start it for real. An EXIT trap removes everything
#     on any failure. The rpm scriptlets run in private namespaces.
#     A handler's package (e.g. magnetar-clh, not in the default) is
#     installed after its daemon's and runs no pod: see handler_install_test.
#
# Needs: bin/ (make build), nfpm (built on first use), dpkg-deb, rpm (installed
# with apt when missing), and for the install test the harness tools
# (make tools) and images (make images); for magnetar-vmm's also the guest
# image (make guest-image) and QEMU. Bounded by PKGTEST_TIMEOUT (counted after
# the apt step and nfpm's first build: 260 s, plus 10 s per handler's package
# (DAEMON=...), plus 140 s when magnetar-vmm's install test is asked for: every
# pod is a VM, about 5 s to boot under TCG; plus 40 s per handler's package in
# INSTALL_HANDLERS; the whole run takes about 270 s here with magnetar-vmm's).
# WORK (default _output/pkgtest) holds the test's containerd and scratch files;
# it uses the CNI bridge $BRIDGE (mgbr3) and $SUBNET (10.238.0.0/16).
set -euo pipefail
export WORK=${PKGTEST_WORK:-$(cd "$(dirname "$0")/../.." && pwd)/_output/pkgtest}
source "$(dirname "$0")/lib.sh"
BRIDGE=${BRIDGE:-mgbr3}
SUBNET=${SUBNET:-10.238.0.0/16}
# the packages the install test installs, in order (INSTALL_HANDLER, one
# package, is still understood); set but empty: none (the static checks only)
INSTALL_HANDLERS=${INSTALL_HANDLERS-${INSTALL_HANDLER:-magnetar-runc magnetar-vmm}}
if [ -z "${PKGTEST_TIMEOUT:-}" ]; then
  PKGTEST_TIMEOUT=260
  # the static checks of a handler's package (DAEMON=...): about 10 s
  for n in $(sandboxer_names); do
    ! grep -q '^DAEMON=.' "$DEPLOY/sandboxers/$n.conf" || PKGTEST_TIMEOUT=$((PKGTEST_TIMEOUT + 10))
  done
  if [ "$(id -u)" = 0 ]; then
    # magnetar-vmm's install test boots VMs; a handler's package (DAEMON=...)
    # installs its daemon's too, no pod
    [[ " $INSTALL_HANDLERS " != *" magnetar-vmm "* ]] || PKGTEST_TIMEOUT=$((PKGTEST_TIMEOUT + 140))
    for h in $INSTALL_HANDLERS; do
      ! grep -qs '^DAEMON=.' "$DEPLOY/sandboxers/${h#magnetar-}.conf" || PKGTEST_TIMEOUT=$((PKGTEST_TIMEOUT + 40))
    done
  fi
fi
BIN=$PREFIX/bin
T=$WORK/scratch
PASS=0 FAIL=0
SKIPS=()
T0=$SECONDS

# --- reporting ------------------------------------------------------------------
# check NAME CMD...: run CMD (errexit on) in a subshell, output to a file;
# count it; show the output of a failure. Always returns 0 and leaves the rc
# in CHECK_RC: never call it inside if/&&/|| (bash would silently turn errexit
# off inside CMD). State that must outlive CMD goes to files under $T.
check() {
  local name=$1 t=$SECONDS
  shift
  set +e
  ( set -e; "$@" ) >"$T/.out" 2>&1 </dev/null
  CHECK_RC=$?
  set -e
  if [ "$CHECK_RC" -eq 0 ]; then
    PASS=$((PASS + 1)); printf 'ok   packages: %s (%d s)\n' "$name" $((SECONDS - t))
  else
    FAIL=$((FAIL + 1)); printf 'FAIL packages: %s (rc=%d)\n' "$name" "$CHECK_RC"
    tail -n 25 "$T/.out" | cut -c1-300 | sed 's/^/    | /'
  fi
  return 0
}
skip() { SKIPS+=("$1"); printf 'skip packages: %s\n' "$1"; }
fail() { echo "$*" >&2; return 1; }
expect_eq() { [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"; }
wait_for() { # wait_for SECONDS CMD...
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$end" ]; then fail "timed out waiting for: $*"; return 1; fi
    sleep 0.1
  done
}

# --- setup ------------------------------------------------------------------------
[ -f "$WORK/.lock" ] && [ -n "$(cat "$WORK/.lock")" ] && pid_alive "$(cat "$WORK/.lock")" &&
  die "another hack/packages/test.sh runs (pid $(cat "$WORK/.lock"))"
rm -rf "$T"; mkdir -p "$T" "$WORK"
echo $$ > "$WORK/.lock"
WATCHDOG=

install_cleanup() { :; } # redefined by the install test
finish() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  [ -z "$WATCHDOG" ] || kill "$WATCHDOG" 2>/dev/null
  install_cleanup
  rm -f "$WORK/.lock"
  if [ "$rc" -ne 0 ] && [ "$FAIL" -eq 0 ]; then
    echo "FAIL packages: script error (rc=$rc)"; FAIL=$((FAIL + 1))
  fi
  if [ "$FAIL" -gt 0 ]; then echo "     logs kept in $WORK/logs"; else rm -rf "$T"; fi
  printf 'packages: %d passed, %d failed (%d skipped, %d s)\n' "$PASS" "$FAIL" "${#SKIPS[@]}" $((SECONDS - T0))
  # (a bare `exit` in an EXIT trap exits with the status the script had
  # before the trap, not with the last command's)
  if [ "$FAIL" -eq 0 ]; then exit 0; fi
  exit 1
}
trap finish EXIT
trap 'exit 130' INT TERM

# the inspection tools, from apt when missing (as root; a fresh Debian
# bookworm has dpkg and systemd but not rpm): "COMMAND PACKAGE"
apt_tools() {
  local line c p missing=() i
  for line in "dpkg-deb dpkg" "rpm rpm" "systemd-analyze systemd" "jq jq" "unshare util-linux" "ip iproute2" "pgrep procps"; do
    read -r c p <<<"$line"
    command -v "$c" >/dev/null || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || { log "missing: ${missing[*]} (not root or no apt: checks needing them are skipped)"; return 0; }
  log "apt-get install ${missing[*]}"
  for i in $(seq 1 6); do
    if timeout 300 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then return 0; fi
    log "apt busy? retry $i"; sleep 10
  done
  die "apt-get install ${missing[*]} failed"
}
apt_tools
command -v dpkg-deb >/dev/null || die "dpkg-deb missing (apt-get install dpkg)"
HAVE_RPM=0; command -v rpm >/dev/null && HAVE_RPM=1
# nfpm is built once into the tools cache (a few minutes cold, more on a
# busy machine): before the time limit, which bounds the tests, not a build
nfpm_bin >/dev/null
# the time limit starts now (apt above may wait for a lock)
# (its sleep dies with it: a sleep left behind would hold the caller's fds,
# a flock on the harness lock among them, for the whole limit)
(trap 'kill "$s" 2>/dev/null; exit 0' TERM
 sleep "$PKGTEST_TIMEOUT" </dev/null >/dev/null 2>&1 & s=$!
 wait "$s" || exit 0
 echo "packages: timed out after $PKGTEST_TIMEOUT s" >&2; kill -TERM $$) 2>/dev/null &
WATCHDOG=$!

# one version for the whole run (a commit meanwhile must not change it)
VERSION=$(pkg_version)
export PKG_VERSION=$VERSION
log "building the packages $VERSION (hack/packages/build.sh)"
"$ROOT/hack/packages/build.sh" >"$T/build.log" 2>&1 || { cat "$T/build.log"; die "build.sh failed"; }

# deb_of HANDLER / rpm_of HANDLER [DIR]: the package file
deb_of() { ls "${2:-$PKG_OUT}/$1_"*.deb; }
rpm_of() { ls "${2:-$PKG_OUT}/$1-"[0-9]*.rpm; }

# --- static checks ----------------------------------------------------------------

# config keys: every toml tag of the sandboxer's config types (shared/config and
# cmd/BINARY) is in the default file, every key of the file is a tag, every
# key line has a comment
config_keys() {
  local tags keys nocomment
  # a field documented "Deprecated:" is an old key still read for a release:
  # the default file does not show it
  tags=$(cat "$ROOT/shared/config/config.go" $(find "$ROOT/cmd/$BINARY" -name config.go) |
    awk '/^[[:space:]]*\/\/.*Deprecated:/ {dep=1; next} /^[[:space:]]*\/\// {next} /toml:"/ && dep {dep=0; next} {dep=0; print}' |
    grep -o 'toml:"[a-z_]*"' | sed 's/toml:"\(.*\)"/\1/' | sort -u)
  # the keys of an array of tables ([[pool.shapes]]: empty by default) are
  # shown in a commented example, "#   key = value  # comment"
  keys=$( (grep -Eo '^\[[a-z_]+\]' "$CONFIG" | tr -d '[]'; grep -Eo '^[a-z_]+ *=' "$CONFIG" | tr -d ' =';
    { grep -E '^# +[a-z_]+ *= .*#' "$CONFIG" || true; } | sed -E 's/^# +([a-z_]+) *=.*/\1/') | sort -u)
  expect_eq "keys of $(basename "$CONFIG") vs toml tags in the code" "$(echo $keys)" "$(echo $tags)"
  nocomment=$(grep -E '^[a-z_]+ *=' "$CONFIG" | grep -v '#' || true)
  [ -z "$nocomment" ] || fail "key lines without a comment: $nocomment"
}

# the --help defaults of the common keys equal the file's values
config_defaults() {
  local help k v
  help=$("$ROOT/bin/$BINARY" --help 2>&1 || true)
  for k in listen dir containerd_address log_level; do
    v=$(sed -n "s/^$k *= *\"\([^\"]*\)\".*/\1/p" "$CONFIG")
    grep -q "default from config: $v)" <<<"$help" || fail "$k = \"$v\" is not the daemon's default (--help: $(grep -i -- "-${k//_/-}" -A1 <<<"$help" | tail -1))"
  done
}

# the daemon serves with the default config: in a private mount namespace with
# its own /run (the file's runc root is under /run/magnetar), sockets and
# state under $T; READY=1 then, on SIGTERM, STOPPING=1 and exit 0
config_serves() {
  local d=$T/cfg-$NAME n pid keepers cfg=$CONFIG
  rm -rf "$d"; mkdir -p "$d"
  if [ -n "$TEST_CONFIG_EDIT" ]; then cfg=$d/$NAME.toml; sed "$TEST_CONFIG_EDIT" "$CONFIG" >"$cfg"; fi
  "$T/notifylisten" "$d/notify.sock" >"$d/notify.log" 2>&1 &
  n=$!
  wait_for 5 test -S "$d/notify.sock"
  # the binaries the config names (runc) are checked at start-up: the
  # project's own, as a node would have them in PATH
  NOTIFY_SOCKET=$d/notify.sock PATH="$BIN:$PATH" unshare -m sh -c 'mount --make-rprivate / && mount -t tmpfs tmpfs /run && exec "$@"' sh \
    "$ROOT/bin/$BINARY" --config "$cfg" --listen "$d/s.sock" --dir "$d/lib" --containerd-address "$d/none.ttrpc" \
    >"$d/daemon.log" 2>&1 &
  pid=$!
  wait_for 15 grep -qx READY=1 "$d/notify.log" || { kill -9 "$n" "$pid"; cat "$d/daemon.log"; return 1; }
  grep -q 'msg=serving' "$d/daemon.log" || fail "no 'serving' in the log"
  kill -TERM "$pid"
  wait "$pid" || { kill "$n"; fail "daemon exited with $? on SIGTERM"; }
  wait_for 2 grep -qx STOPPING=1 "$d/notify.log"
  kill "$n" 2>/dev/null || true
  keepers=$(our_keepers "$d")
  [ -z "$keepers" ] || kill -TERM $keepers
}

# a bad key and a bad value stop the daemon with a message naming them
config_rejects() {
  local d=$T/cfg-$NAME out
  mkdir -p "$d"
  { cat "$CONFIG"; echo 'bogus_key = 1'; } >"$d/bad1.toml"
  out=$("$ROOT/bin/$BINARY" --config "$d/bad1.toml" --listen "$d/x.sock" --dir "$d/x" 2>&1) && fail "started with an unknown key"
  grep -q bogus_key <<<"$out" || fail "error does not name the key: $out"
  sed 's/^log_level = "info"/log_level = "loud"/' "$CONFIG" >"$d/bad2.toml"
  out=$("$ROOT/bin/$BINARY" --config "$d/bad2.toml" --listen "$d/x.sock" --dir "$d/x" 2>&1) && fail "started with log_level = loud"
  grep -q log_level <<<"$out" || fail "error does not name log_level: $out"
}

# pids of keepers whose task socket is below DIR
our_keepers() {
  local p a
  for p in /proc/[0-9]*; do
    mapfile -d '' -t a 2>/dev/null <"$p/cmdline" || continue
    [ "${a[1]:-}" = __magnetar_task_keeper ] && [[ "${a[2]:-}" == "$1"/* ]] && echo "${p#/proc/}"
  done
  return 0
}

# expected package files of the loaded sandboxer; of a handler (DAEMON=...)
# its drop-in and RuntimeClass only
want_files() {
  local line src dst mode
  if is_handler; then
    printf '%s\n' "/etc/containerd/conf.d/$HANDLER.toml" "/usr/share/doc/$HANDLER/runtimeclass-$HANDLER.yaml" | sort
    return 0
  fi
  {
    echo "/usr/bin/$BINARY"
    echo "/etc/magnetar/$NAME.toml"
    echo "/etc/containerd/conf.d/$HANDLER.toml"
    echo "/usr/lib/systemd/system/$HANDLER.service"
    echo "/usr/share/doc/$HANDLER/runtimeclass-$HANDLER.yaml"
    for line in "${EXTRA_FILES[@]}"; do read -r src dst mode <<<"$line"; echo "$dst"; done
  } | sort
}
want_conffiles() {
  if is_handler; then echo "/etc/containerd/conf.d/$HANDLER.toml"; return 0; fi
  printf '%s\n' "/etc/containerd/conf.d/$HANDLER.toml" "/etc/magnetar/$NAME.toml"
}
# want_deb_depends / want_rpm_requires: the dependencies of the loaded conf,
# one a line; a handler's first is its daemon's package of the same version
want_deb_depends() {
  if is_handler; then echo "$DAEMON_PACKAGE (= $VERSION-1)"; fi
  [ ${#DEB_DEPENDS[@]} = 0 ] || printf '%s\n' "${DEB_DEPENDS[@]}"
}
want_rpm_requires() {
  if is_handler; then echo "$DAEMON_PACKAGE = $VERSION-1"; fi
  [ ${#RPM_DEPENDS[@]} = 0 ] || printf '%s\n' "${RPM_DEPENDS[@]}"
}
# handler_dirs: the directories of a handler's deb, exactly
handler_dirs() { printf '%s\n' /etc /etc/containerd /etc/containerd/conf.d /usr /usr/share /usr/share/doc "/usr/share/doc/$HANDLER" | sort; }

# deb_list DEB: "TYPE MODE PATH" per entry (TYPE d or f)
deb_list() { dpkg-deb -c "$1" | awk '{t = substr($1, 1, 1) == "d" ? "d" : "f"; p = $6; sub(/^\./, "", p); sub(/\/$/, "", p); if (p != "") print t, $1, p}'; }

deb_contents() {
  local deb list
  deb=$(deb_of "$HANDLER")
  list=$(deb_list "$deb")
  expect_eq "files" "$(awk '$1 == "f" {print $3}' <<<"$list" | sort | tr '\n' ' ')" "$(want_files | tr '\n' ' ')"
  if is_handler; then
    # no binary, unit, config or state directory: nothing but its own
    expect_eq "directories" "$(awk '$1 == "d" {print $3}' <<<"$list" | sort | tr '\n' ' ')" "$(handler_dirs | tr '\n' ' ')"
    expect_eq "modes of the files" "$(awk '$1 == "f" {print $2}' <<<"$list" | sort -u)" -rw-r--r--
  else
    expect_eq "mode of /usr/bin/$BINARY" "$(awk -v p="/usr/bin/$BINARY" '$3 == p {print $2}' <<<"$list")" -rwxr-xr-x
    expect_eq "mode of /var/lib/magnetar/$NAME" "$(awk -v p="/var/lib/magnetar/$NAME" '$3 == p {print $2}' <<<"$list")" drwx------
    expect_eq "mode of /etc/magnetar" "$(awk '$3 == "/etc/magnetar" {print $2}' <<<"$list")" drwxr-xr-x
  fi
  dpkg-deb -c "$deb" | awk '$2 != "root/root" {print; bad = 1} END {exit bad}' || fail "entries not owned by root"
  ! grep -q ' /run' <<<"$list" || fail "ships something under /run (the unit or the daemon makes it)"
}

deb_control() {
  local deb f
  deb=$(deb_of "$HANDLER")
  f() { dpkg-deb -f "$deb" "$1"; }
  expect_eq Package "$(f Package)" "$HANDLER"
  expect_eq Version "$(f Version)" "$VERSION-1"
  expect_eq Architecture "$(f Architecture)" "$(dpkg --print-architecture)"
  expect_eq Depends "$(f Depends)" "$(want_deb_depends | paste -sd, | sed 's/,/, /g')"
  [[ "$(f Recommends)" == *"containerd (>= 2.0)"* ]] || fail "Recommends: $(f Recommends)"
  dpkg --compare-versions "$(f Version)" gt 0.0.0~ || fail "version $(f Version) is not a valid Debian version"
  expect_eq conffiles "$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles | sort | tr '\n' ' ')" "$(want_conffiles | tr '\n' ' ')"
}

deb_scripts() {
  local deb d s
  deb=$(deb_of "$HANDLER")
  d=$T/ctrl-$NAME; rm -rf "$d"; mkdir -p "$d"
  dpkg-deb -e "$deb" "$d"
  for s in postinst prerm postrm; do
    [ -x "$d/$s" ] || fail "$s missing or not executable"
    sh -n "$d/$s" || fail "$s: syntax error"
    ! grep -n '@[A-Z_]*@' "$d/$s" || fail "$s: placeholder left"
    ! grep -nE '^[[:space:]]*systemctl.*containerd' "$d/$s" || fail "$s runs systemctl on containerd"
    # a handler's package starts, stops and enables nothing (it only asks
    # whether its daemon's unit runs)
    if is_handler; then ! grep -nE '^[[:space:]]*systemctl' "$d/$s" | grep -v 'systemctl -q is-active' || fail "$s of a handler's package runs systemctl"; fi
  done
  # the packaged deploy files are the committed ones
  dpkg-deb --fsys-tarfile "$deb" | tar -xO "./etc/containerd/conf.d/$HANDLER.toml" | cmp - "$DEPLOY/etc/containerd/conf.d/$HANDLER.toml"
  dpkg-deb --fsys-tarfile "$deb" | tar -xO "./usr/share/doc/$HANDLER/runtimeclass-$HANDLER.yaml" | cmp - "$DEPLOY/kubernetes/runtimeclass-$HANDLER.yaml"
  if is_handler; then return 0; fi
  dpkg-deb --fsys-tarfile "$deb" | tar -xO "./usr/lib/systemd/system/$HANDLER.service" | cmp - "$DEPLOY/systemd/$HANDLER.service"
  dpkg-deb --fsys-tarfile "$deb" | tar -xO "./etc/magnetar/$NAME.toml" | cmp - "$CONFIG"
}

# handler_mapped: the daemon's default config maps the handler's name (to a
# hypervisor, an engine): its pods are not run as the default's
handler_mapped() {
  grep -Eq "^$HANDLER *= *\"[a-z-]+\" *#" "$CONFIG" || fail "$(basename "$CONFIG") does not map $HANDLER"
}

rpm_checks() {
  local r q
  r=$(rpm_of "$HANDLER")
  q() { rpm -qp "$@" "$r" 2>/dev/null; }
  expect_eq name-version-release "$(q --qf '%{NAME} %{VERSION} %{RELEASE}')" "$HANDLER $VERSION 1"
  expect_eq files "$(q --qf '[%{FILEMODES:perms} %{FILENAMES}\n]' | awk '$1 !~ /^d/ {print $2}' | sort | tr '\n' ' ')" "$(want_files | tr '\n' ' ')"
  expect_eq "config files" "$(q -c | sort | tr '\n' ' ')" "$(want_conffiles | tr '\n' ' ')"
  expect_eq "config flags (c = config, n = noreplace)" "$(q --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' | awk 'NF == 2 {print $1}' | sort -u | tr '\n' ' ')" "cn "
  if ! is_handler; then
    expect_eq "mode of /var/lib/magnetar/$NAME" "$(q --qf '[%{FILEMODES:perms} %{FILENAMES}\n]' | awk -v p="/var/lib/magnetar/$NAME" '$2 == p {print $1}')" drwx------
  fi
  while read -r dep; do
    [ -z "$dep" ] || q --requires | grep -qxF "$dep" || fail "Requires lacks '$dep': $(q --requires | tr '\n' ';')"
  done < <(want_rpm_requires)
  q --recommends | grep -q '^containerd' || fail "Recommends: $(q --recommends)"
  for s in POSTIN PREUN POSTUN; do
    [ -n "$(q --qf "%{$s}")" ] && [ "$(q --qf "%{$s}")" != "(none)" ] || fail "%$s scriptlet missing"
  done
}

# hermetic CMD...: CMD in private mount and PID namespaces with empty /run
# and /var/lib/magnetar: no systemd to talk to, no host process to signal, no
# host file of ours to delete
hermetic() {
  unshare -m -p -f --mount-proc sh -c 'mount --make-rprivate / && mount -t tmpfs tmpfs /run &&
    if [ -d /var/lib/magnetar ]; then mount -t tmpfs tmpfs /var/lib/magnetar; fi && exec "$@"' sh "$@"
}

# the rpm scriptlets, run as rpm would (sh, numeric $1), hermetic: without
# systemd they only print
rpm_scriptlets() {
  local r out
  r=$(rpm_of "$HANDLER")
  rpm -qp --qf '%{POSTIN}' "$r" >"$T/post.sh" 2>/dev/null
  rpm -qp --qf '%{PREUN}' "$r" >"$T/preun.sh" 2>/dev/null
  rpm -qp --qf '%{POSTUN}' "$r" >"$T/postun.sh" 2>/dev/null
  out=$(hermetic sh "$T/post.sh" 1)
  grep -q 'systemd is not running' <<<"$out" || fail "%post 1 said: $out"
  grep -q 'restart containerd' <<<"$out" || fail "%post 1 gives no containerd advice: $out"
  out=$(hermetic sh "$T/post.sh" 2)
  ! grep -q 'restart containerd' <<<"$out" || fail "%post 2 (upgrade) repeats the install advice"
  hermetic sh "$T/preun.sh" 1 && hermetic sh "$T/postun.sh" 1 && hermetic sh "$T/preun.sh" 0 >/dev/null && hermetic sh "$T/postun.sh" 0
  if is_handler; then handler_preun_pods; fi
}

# handler_preun_pods: a handler's %preun warns about the handler's pods that
# the daemon's records (as shared/store writes them) still hold, and only
# about those; /var/lib is a tmpfs of a private mount namespace
handler_preun_pods() {
  local out rec='mkdir -p "/var/lib/magnetar/$1/state" && printf "{\n  \"id\": \"%s\",\n  \"sandboxer\": \"%s\",\n  \"phase\": \"running\"\n}\n" "$2" "$3" >"/var/lib/magnetar/$1/state/$2.json"'
  out=$(unshare -m sh -c "mount --make-rprivate / && mount -t tmpfs tmpfs /var/lib && $rec"' && exec sh "$4" 0' sh "$DAEMON" p1 "$DAEMON_PACKAGE" "$T/preun.sh" 2>&1)
  ! grep -q warning <<<"$out" || fail "%preun 0 warned about a pod of $DAEMON_PACKAGE: $out"
  out=$(unshare -m sh -c "mount --make-rprivate / && mount -t tmpfs tmpfs /var/lib && $rec"' && exec sh "$4" 0' sh "$DAEMON" p2 "$HANDLER" "$T/preun.sh" 2>&1)
  grep -q "warning: 1 pod(s) of runtime handler $HANDLER" <<<"$out" || fail "%preun 0 with a pod of $HANDLER said: $out"
}

# rpm -i and -e in a scratch root (no scriptlets): paths, %config(noreplace)
# (the config of a sandboxer, the drop-in of a handler)
rpm_root() {
  local r root=$T/rpmroot-$NAME cf=/etc/magnetar/$NAME.toml
  r=$(rpm_of "$HANDLER")
  rm -rf "$root"; mkdir -p "$root"
  rpm --root "$root" --initdb
  rpm --root "$root" -i --nodeps --noscripts "$r" 2>&1 | grep -v '^rpm: ' || true
  for f in $(want_files); do [ -f "$root$f" ] || fail "$f not installed"; done
  if is_handler; then
    cf=/etc/containerd/conf.d/$HANDLER.toml
  else
    expect_eq "mode of /var/lib/magnetar/$NAME" "$(stat -c %a "$root/var/lib/magnetar/$NAME")" 700
  fi
  echo '# local change' >>"$root$cf"
  rpm --root "$root" -e --noscripts "$HANDLER" 2>&1 | grep -v '^rpm: ' || true
  [ -f "$root$cf.rpmsave" ] || fail "changed $cf not kept as .rpmsave"
  if is_handler; then
    # the .rpmsave keeps conf.d: once more, unchanged
    rm -f "$root$cf.rpmsave"
    rpm --root "$root" -i --nodeps --noscripts "$r" 2>&1 | grep -v '^rpm: ' || true
    rpm --root "$root" -e --noscripts "$HANDLER" 2>&1 | grep -v '^rpm: ' || true
  fi
  [ ! -e "$root/usr/bin/$BINARY" ] && [ ! -e "$root/etc/containerd/conf.d/$HANDLER.toml" ] && [ ! -e "$root/usr/share/doc/$HANDLER" ] || fail "files left after rpm -e"
  [ ! -e "$root/var/lib/magnetar" ] && [ ! -e "$root/etc/containerd" ] || fail "directories left after rpm -e: $(cd "$root" && find var etc 2>/dev/null | tr '\n' ' ')"
}

# systemd-analyze verify in the unpacked package (with the system's units, so
# that sysinit.target & co. resolve); any message fails (unknown keys are only
# warnings for systemd)
unit_verify_staged() {
  local root=$T/root-$NAME out
  rm -rf "$root"; mkdir -p "$root"
  dpkg-deb -x "$(deb_of "$HANDLER")" "$root"
  cp -an /usr/lib/systemd/system/. "$root/usr/lib/systemd/system/"
  out=$(systemd-analyze verify --root="$root" "$root/usr/lib/systemd/system/$HANDLER.service" 2>&1) || fail "$out"
  [ -z "$out" ] || fail "$out"
}

# apt resolves the dependencies from the configured repositories (simulation);
# a handler's with its daemon's package of this build, and not with one of
# another version
apt_resolves() {
  local out
  if is_handler; then apt_resolves_handler; return; fi
  out=$(apt-get install -s -o Debug::NoLocking=1 "$(deb_of "$HANDLER")" 2>&1) || fail "$out"
  grep -q "^Inst $HANDLER " <<<"$out" || fail "$out"
  # a package that depends on runc pulls it in (magnetar-wasm needs none)
  if [[ "${DEB_DEPENDS[*]}" == *runc* ]] && ! dpkg -s runc >/dev/null 2>&1; then grep -E '^Inst runc ' <<<"$out" || fail "runc not pulled in: $out"; fi
}

apt_resolves_handler() {
  local out d=$T/other-$DAEMON_PACKAGE
  out=$(apt-get install -s -o Debug::NoLocking=1 "$(deb_of "$DAEMON_PACKAGE")" "$(deb_of "$HANDLER")" 2>&1) || fail "$out"
  grep -q "^Inst $HANDLER " <<<"$out" && grep -q "^Inst $DAEMON_PACKAGE " <<<"$out" || fail "$out"
  # a made-up $DAEMON_PACKAGE of another version (control file only)
  rm -rf "$d"; mkdir -p "$d/DEBIAN"
  printf 'Package: %s\nVersion: %s\nArchitecture: all\nMaintainer: test <test@invalid>\nDescription: made-up\n' \
    "$DAEMON_PACKAGE" "$VERSION.other-1" >"$d/DEBIAN/control"
  dpkg-deb -b "$d" "$T/other.deb" >/dev/null
  if out=$(apt-get install -s -o Debug::NoLocking=1 "$T/other.deb" "$(deb_of "$HANDLER")" 2>&1); then
    fail "apt accepts $DAEMON_PACKAGE $VERSION.other-1 for $HANDLER $VERSION: $out"
  fi
  grep -q "Depends: $DAEMON_PACKAGE (= $VERSION-1)" <<<"$out" || fail "$out"
}

# --- a second sandboxer from the same templates: no shared file ----------------------
SHARED_DIRS_OK=" /etc /etc/containerd /etc/containerd/conf.d /etc/magnetar /usr /usr/bin /usr/lib /usr/lib/systemd /usr/lib/systemd/system /usr/share /usr/share/doc /var /var/lib /var/lib/magnetar "
second_sandboxer() {
  local d=$T/deploy2 b=$T/bin2 out=$T/pkgs2 f
  rm -rf "$d" "$b" "$out"; cp -r "$ROOT/deploy" "$d"; mkdir -p "$b"
  rm -f "$d"/sandboxers/*.conf "$d"/systemd/* "$d"/etc/containerd/conf.d/* "$d"/kubernetes/*
  cat >"$d/sandboxers/demo.conf" <<'EOF'
NAME=demo
SUMMARY="made-up sandboxer of hack/packages/test.sh"
DESCRIPTION="Checks that a sandboxer is a few lines."
DEB_DEPENDS=("busybox")
RPM_DEPENDS=("busybox")
EXTRA_FILES=()
UNIT_SERVICE_EXTRA="DeviceAllow=/dev/kvm rw"
EOF
  # and a second runtime handler of its daemon
  cat >"$d/sandboxers/demo-two.conf" <<'EOF'
NAME=demo-two
DAEMON=demo
SUMMARY="made-up handler of hack/packages/test.sh"
DESCRIPTION="Checks that a handler of a sandboxer's daemon is a few lines."
HANDLER_NOTE="the second handler of the demo daemon"
EOF
  printf 'listen = "/run/magnetar/demo.sock" # Sandbox API socket\n' >"$d/etc/magnetar/demo.toml"
  printf '#!/bin/sh\necho demo\n' >"$b/demo-sandboxer"; chmod +x "$b/demo-sandboxer"
  DEPLOY=$d "$ROOT/hack/packages/gen.sh"
  grep -qx 'DeviceAllow=/dev/kvm rw' "$d/systemd/magnetar-demo.service" || fail "UNIT_SERVICE_EXTRA not in the unit"
  grep -q '^handler: magnetar-demo$' "$d/kubernetes/runtimeclass-magnetar-demo.yaml" || fail "RuntimeClass handler"
  # the handler: the daemon's socket, binary and config under its own names,
  # its note; no unit
  f=$d/etc/containerd/conf.d/magnetar-demo-two.toml
  grep -qx '\[proxy_plugins.magnetar-demo-two\]' "$f" && grep -qx '  address = "/run/magnetar/demo.sock"' "$f" &&
    grep -qx '  runtime_path = "/usr/bin/demo-sandboxer"' "$f" && grep -qx '  sandboxer = "magnetar-demo-two"' "$f" &&
    grep -q '/etc/magnetar/demo.toml' "$f" && ! grep -q 'ConfigPath' "$f" &&
    grep -qx '# the second handler of the demo daemon' "$f" || fail "handler drop-in: $(cat "$f")"
  grep -q '^handler: magnetar-demo-two$' "$d/kubernetes/runtimeclass-magnetar-demo-two.yaml" || fail "handler RuntimeClass"
  [ ! -e "$d/systemd/magnetar-demo-two.service" ] || fail "a unit for a handler"
  DEPLOY=$d BIN_DIR=$b PKG_OUT=$out "$ROOT/hack/packages/build.sh" >"$T/build2.log" 2>&1 || { cat "$T/build2.log"; return 1; }
  expect_eq "Depends of magnetar-demo-two" "$(dpkg-deb -f "$(deb_of magnetar-demo-two "$out")" Depends)" "magnetar-demo (= $VERSION-1)"
  # what a handler may not be: a handler of a handler, one with files of its own
  printf 'NAME=demo-three\nDAEMON=demo-two\nSUMMARY=x\nDESCRIPTION=x\n' >"$d/sandboxers/demo-three.conf"
  ! DEPLOY=$d "$ROOT/hack/packages/gen.sh" --check 2>"$T/gen3.log" || fail "a handler of a handler accepted"
  grep -q 'is itself a handler' "$T/gen3.log" || fail "$(cat "$T/gen3.log")"
  printf 'NAME=demo-three\nDAEMON=demo\nSUMMARY=x\nDESCRIPTION=x\nEXTRA_FILES=("bin/x /usr/bin/x 0755")\n' >"$d/sandboxers/demo-three.conf"
  ! DEPLOY=$d "$ROOT/hack/packages/gen.sh" --check 2>"$T/gen3.log" || fail "a handler with EXTRA_FILES accepted"
  grep -q 'EXTRA_FILES must be empty' "$T/gen3.log" || fail "$(cat "$T/gen3.log")"
  rm "$d/sandboxers/demo-three.conf"
  # a file of the generated directories that no conf renders
  touch "$d/etc/containerd/conf.d/magnetar-handmade.toml"
  ! DEPLOY=$d "$ROOT/hack/packages/gen.sh" --check 2>"$T/gen3.log" || fail "a hand-written drop-in accepted"
  grep -q 'not generated: deploy/etc/containerd/conf.d/magnetar-handmade.toml' "$T/gen3.log" || fail "$(cat "$T/gen3.log")"
  # every pair of packages (the real ones and the made-up ones), each listed once
  local pkgs=() i j common lists=$T/lists
  rm -rf "$lists"; mkdir -p "$lists"
  pkgs=("$PKG_OUT"/*.deb "$out"/*.deb)
  for ((i = 0; i < ${#pkgs[@]}; i++)); do deb_list "${pkgs[i]}" | awk '{print $1, $3}' | sort >"$lists/deb$i"; done
  for ((i = 0; i < ${#pkgs[@]}; i++)); do
    for ((j = i + 1; j < ${#pkgs[@]}; j++)); do
      common=$(comm -12 "$lists/deb$i" "$lists/deb$j")
      check_common "$(basename "${pkgs[i]}") / $(basename "${pkgs[j]}")" "$common"
    done
  done
  if [ "$HAVE_RPM" = 1 ]; then
    pkgs=("$PKG_OUT"/*.rpm "$out"/*.rpm)
    for ((i = 0; i < ${#pkgs[@]}; i++)); do rpm_list "${pkgs[i]}" >"$lists/rpm$i"; done
    for ((i = 0; i < ${#pkgs[@]}; i++)); do
      for ((j = i + 1; j < ${#pkgs[@]}; j++)); do
        common=$(comm -12 "$lists/rpm$i" "$lists/rpm$j")
        check_common "$(basename "${pkgs[i]}") / $(basename "${pkgs[j]}")" "$common"
      done
    done
  fi
  echo "$(ls "$PKG_OUT"/*.deb "$out"/*.deb | wc -l) packages, no file in two"
}
rpm_list() { rpm -qp --qf '[%{FILEMODES:perms} %{FILENAMES}\n]' "$1" 2>/dev/null | awk '{print (substr($1, 1, 1) == "d" ? "d" : "f"), $2}' | sort; }
check_common() { # check_common WHAT "TYPE PATH" lines shared by two packages
  local t p
  while read -r t p; do
    [ -n "$t" ] || continue
    [ "$t" = d ] || fail "$1: both ship the file $p"
    [[ "$SHARED_DIRS_OK" == *" $p "* ]] || fail "$1: both own the directory $p"
  done <<<"$2"
}

export PATH=/usr/local/go/bin:$PATH
go build -o "$T/notifylisten" "$ROOT/hack/packages/notifylisten" || die "building notifylisten failed"

for n in $(sandboxer_names); do
  load_sandboxer "$n"
  check "$HANDLER: deploy files match the templates (gen.sh --check)" "$ROOT/hack/packages/gen.sh" --check
  if is_handler; then
    # a handler of another sandboxer's daemon: its drop-in and RuntimeClass,
    # no binary, unit or config of its own
    check "$HANDLER: $DAEMON.toml maps the handler" handler_mapped
    contents="drop-in and RuntimeClass only" deps="$DAEMON_PACKAGE of this version" scripts="no unit touched"
  else
    check "$HANDLER: $NAME.toml has every key of the code, each with a comment" config_keys
    check "$HANDLER: $NAME.toml values are the daemon's defaults (--help)" config_defaults
    if [ "$(id -u)" = 0 ]; then
      check "$HANDLER: the daemon serves with $NAME.toml (READY=1, STOPPING=1 on SIGTERM)" config_serves
    else
      skip "$HANDLER: the daemon serves with $NAME.toml: needs root"
    fi
    check "$HANDLER: a bad key or value in $NAME.toml stops the daemon naming it" config_rejects
    contents="binary, config, unit, drop-in, RuntimeClass" deps="its own" scripts="the unit's"
  fi
  check "$HANDLER: deb contents ($contents), modes, owner" deb_contents
  check "$HANDLER: deb control fields, version, dependencies ($deps), conffiles" deb_control
  check "$HANDLER: deb maintainer scripts ($scripts), packaged deploy files" deb_scripts
  if [ "$HAVE_RPM" = 1 ]; then
    check "$HANDLER: rpm files, %config(noreplace), requires ($deps), scriptlets" rpm_checks
    if [ "$(id -u)" = 0 ]; then
      check "$HANDLER: rpm scriptlets without systemd" rpm_scriptlets
    else
      skip "$HANDLER: rpm scriptlets: needs root (private namespaces)"
    fi
    check "$HANDLER: rpm -i / -e in a scratch root" rpm_root
  else
    skip "$HANDLER: rpm checks: rpm missing (apt-get install rpm)"
  fi
  if is_handler; then
    : # no unit
  elif command -v systemd-analyze >/dev/null; then
    check "$HANDLER: systemd-analyze verify (unpacked package)" unit_verify_staged
  else
    skip "$HANDLER: systemd-analyze verify: systemd-analyze missing (apt-get install systemd)"
  fi
  if ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then
    check "$HANDLER: apt resolves the dependencies ($deps) (simulation)" apt_resolves
  else
    skip "$HANDLER: apt dependency resolution: no apt lists (apt-get update)"
  fi
done
check "a second sandboxer and a handler of its daemon are a few lines; no two packages share a file" second_sandboxer
sed -n 's/^\([0-9]* packages, no file in two\)$/     \1/p' "$T/.out"

# --- install test (root): dpkg -i, daemon as the unit runs it, containerd with
# the installed drop-in, smoke, reinstall + restart with a pod, -r, -P ----------
CSOCK=$WORK/run/containerd.sock
CRICTL_CONFIG=$WORK/etc/crictl.yaml
CGROUP_PARENT=/magnetar-pkgtest
crictl() { timeout -k 5 60 "$BIN/crictl" -c "$CRICTL_CONFIG" "$@"; }
ctr() { timeout -k 5 60 "$BIN/ctr" --address "$CSOCK" "$@"; }
alive_pidfile() { [ -f "$1" ] && pid_alive "$(cat "$1")"; }
# stop_pidfile FILE: SIGTERM, up to 10 s, then SIGKILL
stop_pidfile() {
  local pid i
  alive_pidfile "$1" || { rm -f "$1"; return 0; }
  pid=$(cat "$1")
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do pid_alive "$pid" || break; sleep 0.1; done
  if pid_alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; fi
  rm -f "$1"
}
# the host paths of the package (none may exist before the test): its files
# and directories, and those of EXTRA_FILES (runc: /usr/bin/magnetar-podinit;
# vmm: the guest image and the directories below /usr/share it makes)
host_paths() {
  echo "/usr/bin/$BINARY" /etc/magnetar /var/lib/magnetar /run/magnetar "/usr/lib/systemd/system/$HANDLER.service" \
    "/etc/containerd/conf.d/$HANDLER.toml" "/usr/share/doc/$HANDLER"
  extra_paths
}
# extra_paths: each EXTRA_FILES destination, then its directories up to a
# common one (SHARED_DIRS_OK), each once
extra_paths() {
  local line src dst mode d
  for line in "${EXTRA_FILES[@]}"; do
    read -r src dst mode <<<"$line"
    echo "$dst"
    d=$(dirname "$dst")
    while [ "$d" != / ] && [[ "$SHARED_DIRS_OK" != *" $d "* ]]; do echo "$d"; d=$(dirname "$d"); done
  done | awk '!seen[$0]++'
}
pkg_status() { dpkg-query -W -f '${Status}' "$HANDLER" 2>/dev/null || echo not-installed; }
# dpkg ARGS: retried while another dpkg/apt holds the lock
dpkg_run() {
  local i out
  for i in $(seq 1 15); do
    if out=$(DEBIAN_FRONTEND=noninteractive dpkg --force-confdef --force-confold "$@" 2>&1 </dev/null); then echo "$out"; return 0; fi
    grep -qi 'lock' <<<"$out" || { echo "$out"; return 1; }
    sleep 2
  done
  echo "$out"; return 1
}

install_precheck() { # prints the reason to skip, if any
  local p
  [ "$(id -u)" = 0 ] || { echo "needs root"; return; }
  if [ "$IS_VM" = 1 ]; then
    p=$(vm_precheck)
    if [ -n "$p" ]; then echo "$p"; return; fi
  fi
  command -v dpkg >/dev/null || { echo "dpkg missing"; return; }
  case "$(pkg_status)" in *not-installed* | "") ;; *) echo "$HANDLER is installed on this host ($(pkg_status))"; return ;; esac
  for p in $(host_paths); do
    if [ -e "$p" ]; then echo "$p exists on this host: not overwriting it"; return; fi
  done
  for p in "$BIN/containerd" "$BIN/ctr" "$BIN/crictl" "$BIN/runc" "$PREFIX/cni-bin/bridge" "$PREFIX/cni-bin/host-local"; do
    [ -x "$p" ] || { echo "$p missing: run make tools"; return; }
  done
  [ -f "$OUT/images/busybox.tar" ] || { echo "$OUT/images/busybox.tar missing: run make images"; return; }
  if ip link show "$BRIDGE" >/dev/null 2>&1; then echo "bridge $BRIDGE exists (another test?)"; return; fi
  for p in "/etc/systemd/system/$HANDLER.service" "/run/systemd/system/$HANDLER.service" "/etc/systemd/system/$HANDLER.service.d"; do
    if [ -e "$p" ] || [ -L "$p" ]; then echo "$p exists on this host"; return; fi
  done
}

# --- the VM sandboxer (magnetar-vmm): every pod a QEMU micro-VM booting the
# guest image the package ships below VM_IMAGE_DIR
IS_VM=0
VM_IMAGE_DIR=/usr/share/magnetar/vmm
# vm_config KEY: the value of KEY = "..." in the shipped config
vm_config() { sed -n "s|^$1 *= *\"\([^\"]*\)\".*|\1|p" "$CONFIG" | head -1; }
# vm_image_src: the checkout's guest image directory the package was built
# from (EXTRA_FILES: the source of $VM_IMAGE_DIR/vmlinuz)
vm_image_src() {
  local line src dst mode
  for line in "${EXTRA_FILES[@]}"; do
    read -r src dst mode <<<"$line"
    if [ "$dst" = "$VM_IMAGE_DIR/vmlinuz" ]; then dirname "$ROOT/$src"; return 0; fi
  done
  fail "no EXTRA_FILES line installs $VM_IMAGE_DIR/vmlinuz"
}
# vm_precheck: prints why VM pods cannot run here, if they cannot: QEMU and
# virtiofsd as the shipped config names them, and the guest image (make
# guest-image) that the package was built with
vm_precheck() {
  local q v f d
  q=$(vm_config binary); v=$(vm_config virtiofsd)
  command -v "$q" >/dev/null || { echo "no $q (apt-get install qemu-system-x86): VM pods cannot run here"; return; }
  "$q" -version >/dev/null 2>&1 || { echo "$q -version fails: VM pods cannot run here"; return; }
  [ -x "$v" ] || { echo "no virtiofsd at $v (qemu-system-common 7.2): VM pods cannot run here"; return; }
  d=$(vm_image_src) || { echo "the package ships no guest kernel $VM_IMAGE_DIR/vmlinuz"; return; }
  for f in manifest.json vmlinuz initramfs.cpio; do
    [ -f "$d/$f" ] || { echo "no guest image ($d/$f missing): run make guest-image"; return; }
  done
}
# cmdline PID: the process's command line, one argument a line ("" when
# it is gone)
cmdline() { local a=(); mapfile -d '' -t a 2>/dev/null <"/proc/$1/cmdline" || true; [ ${#a[@]} -eq 0 ] || printf '%s\n' "${a[@]}"; }
# qemu_of POD: the pid of the pod's QEMU (its -name is guest=POD,...)
qemu_of() {
  local p a=()
  for p in /proc/[0-9]*; do
    mapfile -d '' -t a 2>/dev/null <"$p/cmdline" || continue
    if [[ " ${a[*]} " == *" guest=$1,"* ]] && pid_alive "${p#/proc/}"; then echo "${p#/proc/}"; fi
  done
  return 0
}
no_qemu_of() { [ -z "$(qemu_of "$1")" ]; }
# qemu_arg PID FLAG: the argument after FLAG on the process's command line
qemu_arg() { cmdline "$1" | awk -v f="$2" 'take {print; exit} $0 == f {take = 1}'; }
# vm_procs POD: "pid start-time comm" of every live process whose command line
# names the VM's run directory (the directory of QEMU's -pidfile): QEMU and
# its virtiofsd
vm_procs() {
  local q dir p a=()
  q=$(qemu_of "$1")
  [ -n "$q" ] || return 0
  dir=$(dirname "$(qemu_arg "$q" -pidfile)")
  for p in /proc/[0-9]*; do
    mapfile -d '' -t a 2>/dev/null <"$p/cmdline" || continue
    if [[ "${a[*]}" == *"$dir/"* ]] && pid_alive "${p#/proc/}"; then
      echo "${p#/proc/} $(sed 's/.*) //' "$p/stat" | cut -d' ' -f20) $(cat "$p/comm")"
    fi
  done | sort -n
}
# pids of processes whose command line names a path of the package's
# runtime or state directories (VMs, virtiofsd, keepers): only ours, since
# none of these existed before the test
our_pkg_procs() {
  local p a=() re="(/run/magnetar|/var/lib/magnetar)/$NAME[/-]"
  for p in /proc/[0-9]*; do
    mapfile -d '' -t a 2>/dev/null <"$p/cmdline" || continue
    if [[ "${a[*]}" =~ $re ]]; then echo "${p#/proc/}"; fi
  done
  return 0
}

# On a host where systemd runs (PID 1), postinst would enable and start the
# unit for real, against the system's containerd: mask it for the test (in
# /run, gone at reboot), so that postinst only warns and the test runs the
# daemon itself as everywhere else. install_cleanup unmasks.
SYSTEMD_RUNNING=0
[ ! -d /run/systemd/system ] || SYSTEMD_RUNNING=1
mask_unit() {
  [ "$SYSTEMD_RUNNING" = 1 ] || return 0
  touch "$T/masked"
  ln -s /dev/null "/run/systemd/system/$HANDLER.service"
  systemctl daemon-reload || true
}
unmask_unit() {
  [ -f "$T/masked" ] || return 0
  if [ "$(readlink "/run/systemd/system/$HANDLER.service" 2>/dev/null)" = /dev/null ]; then rm -f "/run/systemd/system/$HANDLER.service"; fi
  systemctl daemon-reload 2>/dev/null || true
  rm -f "$T/masked"
}

install_cleanup() {
  [ -f "$T/install-started" ] || return 0
  local p d pids i
  # a handler's package first (before its daemon's, which it depends on),
  # then the rest as for the daemon's
  if is_handler; then
    if [ -f "$T/installed-handler" ] && [[ "$(pkg_status)" != *not-installed* ]]; then
      echo "     cleanup: dpkg -P $HANDLER"; dpkg_run -P "$HANDLER" >/dev/null || true
    fi
    rm -rf "/usr/share/doc/$HANDLER"; rm -f "/etc/containerd/conf.d/$HANDLER.toml" "$T/installed-handler"
    load_sandboxer "$DAEMON"
  fi
  if alive_pidfile "$T/containerd.pid"; then crictl rmp -fa >/dev/null 2>&1 || true; fi
  stop_pidfile "$T/containerd.pid"
  stop_pidfile "$T/daemon.pid"
  stop_pidfile "$T/notify.pid"
  pids=$(our_keepers /run/magnetar); [ -z "$pids" ] || kill -TERM $pids 2>/dev/null || true
  # VMs (QEMU, virtiofsd) and anything else running below the package's
  # runtime or state directories
  pids=$(our_pkg_procs); [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
  # shims and container processes of ours that outlived containerd / the daemon
  for p in $(pgrep -f containerd-shim 2>/dev/null || true); do
    tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | grep -qF -- "$CSOCK" && kill -KILL "$p" 2>/dev/null || true
  done
  for i in 1 2 3; do
    pids=$(for d in /sys/fs/cgroup$CGROUP_PARENT /sys/fs/cgroup/*$CGROUP_PARENT; do
      [ -d "$d" ] && find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null; done | sort -u)
    [ -n "$pids" ] || break
    kill -KILL $pids 2>/dev/null || true; sleep 0.2
  done
  if [ -d /run/magnetar/$NAME/runc ]; then
    for p in $("$BIN/runc" --root "/run/magnetar/$NAME/runc" list -q 2>/dev/null); do
      "$BIN/runc" --root "/run/magnetar/$NAME/runc" delete -f "$p" >/dev/null 2>&1 || true
    done
  fi
  for d in "$WORK" /var/lib/magnetar /run/magnetar; do
    awk -v w="$d/" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r | while read -r p; do
      umount "$p" 2>/dev/null || umount -l "$p" 2>/dev/null || true
    done
  done
  for d in /sys/fs/cgroup$CGROUP_PARENT /sys/fs/cgroup/*$CGROUP_PARENT; do
    [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  if [ -f "$T/installed" ] && [[ "$(pkg_status)" != *not-installed* ]]; then
    echo "     cleanup: dpkg -P $HANDLER"; dpkg_run -P "$HANDLER" >/dev/null || true
  fi
  unmask_unit
  # everything below was absent before the test (install_precheck)
  rm -rf /etc/magnetar /var/lib/magnetar /run/magnetar "/usr/share/doc/$HANDLER"
  rm -f "/usr/bin/$BINARY" "/usr/lib/systemd/system/$HANDLER.service" "/etc/containerd/conf.d/$HANDLER.toml"
  for p in $(extra_paths); do if [ -d "$p" ]; then rmdir "$p" 2>/dev/null || rm -rf "$p"; else rm -f "$p"; fi; done
  # virtiofsd's lock files of our VMs' sockets (its socket path, / -> .)
  rm -f /run/virtiofsd/.run.magnetar."$NAME".* 2>/dev/null || true
  [ -f "$T/had-confd" ] || rmdir /etc/containerd/conf.d 2>/dev/null || true
  [ -f "$T/had-containerd-dir" ] || rmdir /etc/containerd 2>/dev/null || true
  if ip link show "$BRIDGE" >/dev/null 2>&1 && [ -z "$(ip link show master "$BRIDGE" 2>/dev/null)" ]; then ip link del "$BRIDGE" 2>/dev/null || true; fi
  rm -f /var/lib/cni/results/magnetar-pkgtest-* 2>/dev/null || true
  rm -rf "${WORK:?}"/{root,state,run,s,tmp,opt,cni-ipam}
  rm -f "$T/install-started" "$T/installed"
}

# deps_missing: the dependencies of DEB_DEPENDS that no installed package
# satisfies (an alternative "a (>= 1) | b" is satisfied by either)
deps_missing() {
  local dep alt pkg op ver have ok alts
  for dep in "${DEB_DEPENDS[@]}"; do
    ok=0
    IFS='|' read -ra alts <<<"$dep"
    for alt in "${alts[@]}"; do
      read -r pkg op ver <<<"$(sed 's/[()]/ /g' <<<"$alt")"
      have=$(dpkg-query -W -f '${Status} ${Version}' "$pkg" 2>/dev/null) || continue
      [[ "$have" == "install ok installed "* ]] || continue
      if [ -z "$op" ] || dpkg --compare-versions "${have##* }" "$(sed 's/>=/ge/; s/<=/le/; s/>>/gt/; s/<</lt/; s/^=$/eq/' <<<"$op")" "$ver"; then ok=1; break; fi
    done
    [ "$ok" = 1 ] || echo "$dep"
  done
}

# pkg_install: dpkg -i of the loaded package (a handler's after its
# daemon's: handler_pkg_install) and what its postinst said
pkg_install() {
  local force=() out missing f
  missing=$(deps_missing)
  if [ -n "$missing" ]; then force=(--force-depends); echo "not installed: $(echo $missing): dpkg -i --force-depends (apt_resolves checks the dependency)"; fi
  if is_handler; then
    touch "$T/installed-handler"
  else
    mask_unit
    touch "$T/installed"
  fi
  out=$(dpkg_run -i "${force[@]}" "$(deb_of "$HANDLER")") || fail "$out"
  echo "$out"
  expect_eq status "$(pkg_status)" "install ok installed"
  if [ "$SYSTEMD_RUNNING" = 0 ]; then
    grep -q 'systemd is not running' <<<"$out" || fail "postinst did not say that systemd is not running"
  elif is_handler; then
    grep -q "warning: $DAEMON_PACKAGE.service, the daemon of $HANDLER, is not running" <<<"$out" || fail "postinst did not say that the (masked) daemon does not run"
  else
    grep -q "could not start $HANDLER.service" <<<"$out" || fail "postinst did not try to start the (masked) unit"
  fi
  grep -q "restart containerd to load the runtime handler $HANDLER" <<<"$out" || fail "postinst gave no containerd advice"
  [ -f /etc/containerd/config.toml ] || grep -q 'imports = \["/etc/containerd/conf.d/\*.toml"\]' <<<"$out" || fail "postinst did not explain the imports line"
  expect_eq "installed files" "$(dpkg -L "$HANDLER" | while read -r f; do [ ! -f "$f" ] || echo "$f"; done | sort | tr '\n' ' ')" "$(want_files | tr '\n' ' ')"
  for f in $(want_files); do [ -f "$f" ] || fail "$f not installed"; done
  is_handler || expect_eq "mode of /var/lib/magnetar/$NAME" "$(stat -c %a "/var/lib/magnetar/$NAME")" 700
  expect_eq "dpkg conffiles" "$(dpkg-query -W -f '${Conffiles}\n' "$HANDLER" | awk 'NF {print $1}' | sort | tr '\n' ' ')" "$(want_conffiles | tr '\n' ' ')"
  [ ! -e "/etc/systemd/system/multi-user.target.wants/$HANDLER.service" ] || fail "enabled although systemd is not running (or the unit is masked)"
}

# the installed unit and binary with the system's units, in a copy (the
# runtime mask of a systemd host is not in it)
unit_verify_installed() {
  local root=$T/vroot out
  rm -rf "$root"; mkdir -p "$root/usr/lib/systemd/system"
  cp -a /usr/lib/systemd/system/. "$root/usr/lib/systemd/system/"
  mkdir -p "$root/usr/bin"; cp -a "/usr/bin/$BINARY" "$root/usr/bin/"
  cmp "$root/usr/lib/systemd/system/$HANDLER.service" "$DEPLOY/systemd/$HANDLER.service"
  out=$(systemd-analyze verify --root="$root" "$root/usr/lib/systemd/system/$HANDLER.service" 2>&1) || fail "$out"
  [ -z "$out" ] || fail "$out"
}

# unit_key KEY: the value of KEY= in the installed unit
unit_key() { sed -n "s/^$1=//p" "/usr/lib/systemd/system/$HANDLER.service"; }

# start_daemon: what systemd does for the unit (no systemd as PID 1 here): its
# RuntimeDirectory/StateDirectory with their modes, LimitNOFILE, cwd /, a clean
# environment with NOTIFY_SOCKET and WATCHDOG_USEC (2 s here, so that pings
# come fast), then its ExecStart. One flag is added: the events go to the test
# containerd's ttrpc socket, not the system's /run/containerd.
start_daemon() {
  local d mode nofile exec
  mode=$(unit_key RuntimeDirectoryMode)
  for d in $(unit_key RuntimeDirectory); do mkdir -p "/run/$d"; chmod "$mode" "/run/$d"; done
  mode=$(unit_key StateDirectoryMode)
  for d in $(unit_key StateDirectory); do mkdir -p "/var/lib/$d"; chmod "$mode" "/var/lib/$d"; done
  nofile=$(unit_key LimitNOFILE)
  exec=$(unit_key ExecStart)
  [ -n "$exec" ] || fail "no ExecStart in the unit"
  if ! alive_pidfile "$T/notify.pid"; then
    "$T/notifylisten" "$T/notify.sock" >>"$T/notify.log" 2>&1 &
    echo $! >"$T/notify.pid"
    wait_for 5 test -S "$T/notify.sock"
  fi
  echo "=== $(date -Is) start: $exec" >>"$WORK/logs/$HANDLER.log"
  (
    cd /
    ulimit -n "$nofile" 2>/dev/null || echo "LimitNOFILE=$nofile not possible here (hard limit $(ulimit -Hn))" >&2
    # shellcheck disable=SC2086
    exec env -i PATH="$BIN:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
      NOTIFY_SOCKET="$T/notify.sock" WATCHDOG_USEC=2000000 \
      $exec --containerd-address "$CSOCK.ttrpc" </dev/null >>"$WORK/logs/$HANDLER.log" 2>&1
  ) &
  echo $! >"$T/daemon.pid"
}
notify_count() { grep -cx "$1" "$T/notify.log" 2>/dev/null || true; }
# notify_more LINE N: more than N notifications LINE arrived (for wait_for,
# which must re-count on every try)
notify_more() { [ "$(notify_count "$1")" -gt "$2" ]; }
# wait_ready N: the Nth READY=1 arrives, then a WATCHDOG=1
wait_ready() {
  local w
  wait_for 20 notify_more READY=1 $(($1 - 1)) || { tail -20 "$WORK/logs/$HANDLER.log"; return 1; }
  w=$(notify_count WATCHDOG=1)
  wait_for 4 notify_more WATCHDOG=1 "$w" || fail "no WATCHDOG=1 within 4 s (WATCHDOG_USEC=2 s)"
  alive_pidfile "$T/daemon.pid" || fail "daemon died"
}
daemon_start_check() {
  start_daemon
  wait_ready 1
  expect_eq "mode of /run/magnetar/$NAME.sock" "$(stat -c %a "/run/magnetar/$NAME.sock")" 600
  grep -q "limit.*nofile\|LimitNOFILE" "$T/.out" || expect_eq "open files limit" "$(awk '/Max open files/ {print $4}' "/proc/$(cat "$T/daemon.pid")/limits")" "$(unit_key LimitNOFILE)"
  if [ "$IS_VM" = 1 ]; then vm_settings_check; fi
}
# vm_settings_check: the daemon (installed config) boots the guest image the
# package installed, not the checkout's; the accelerator it picked
vm_settings_check() {
  local line
  line=$(grep 'msg="VM settings"' "$WORK/logs/$HANDLER.log" | tail -1)
  [ -n "$line" ] || fail "no \"VM settings\" line in the daemon's log"
  [[ "$line" == *" kernel=$VM_IMAGE_DIR/vmlinuz "* || "$line" == *" kernel=$VM_IMAGE_DIR/vmlinuz" ]] || fail "the daemon's kernel is not $VM_IMAGE_DIR/vmlinuz: $line"
  [[ "$line" == *" initrd=$VM_IMAGE_DIR/initramfs.cpio "* ]] || fail "the daemon's initrd is not $VM_IMAGE_DIR/initramfs.cpio: $line"
  echo "accel=$(sed -n 's/.* accel=\([a-z]*\).*/\1/p' <<<"$line")"
}

# write_containerd_config: a throwaway containerd whose only Magnetar
# configuration is the installed drop-in (hack/containerd.sh writes the rest:
# config, CNI, crictl.yaml, harness.env for hack/e2e/lib.sh)
# TEST_HANDLERS: the runtime handlers whose drop-ins the test installed
TEST_HANDLERS=
write_containerd_config() {
  local import
  # the installed drop-ins, through the glob users write, unless conf.d holds
  # other files (then only ours)
  import="/etc/containerd/conf.d/*.toml"
  if [ "$(ls /etc/containerd/conf.d | sort | tr '\n' ' ')" != "$(printf '%s.toml\n' $TEST_HANDLERS | sort | tr '\n' ' ')" ]; then
    import=$(printf '/etc/containerd/conf.d/%s.toml ' $TEST_HANDLERS)
  fi
  WORK=$WORK BRIDGE=$BRIDGE SUBNET=$SUBNET CGROUP_PARENT=$CGROUP_PARENT HARNESS_SANDBOXERS=none \
    CONTAINERD_IMPORTS=$import EXTRA_HANDLERS=$TEST_HANDLERS "$ROOT/hack/containerd.sh" config >/dev/null
}

containerd_start() {
  write_containerd_config
  echo "=== $(date -Is) start" >>"$WORK/logs/containerd.log"
  "$BIN/containerd" --config "$WORK/etc/containerd.toml" </dev/null >>"$WORK/logs/containerd.log" 2>&1 &
  echo $! >"$T/containerd.pid"
  wait_for 30 ctr version || { tail -20 "$WORK/logs/containerd.log"; return 1; }
  wait_for 20 crictl info || { tail -20 "$WORK/logs/containerd.log"; return 1; }
  ctr -n k8s.io images import --platform linux/amd64 "$OUT/images/busybox.tar" >/dev/null
}

containerd_loaded_dropin() {
  local plugins info
  plugins=$(ctr plugins ls)
  grep -E "^io\.containerd\.sandbox\.controller\.v1 +$HANDLER +.* ok *$" <<<"$plugins" ||
    fail "proxy plugin $HANDLER not loaded: $(grep -i sandbox <<<"$plugins")"
  info=$(crictl info)
  expect_eq "CRI runtime $HANDLER: sandboxer" "$(jq -r ".config.containerd.runtimes[\"$HANDLER\"].sandboxer" <<<"$info")" "$HANDLER"
  expect_eq "CRI runtime $HANDLER: runtimePath" "$(jq -r ".config.containerd.runtimes[\"$HANDLER\"].runtimePath" <<<"$info")" "/usr/bin/$BINARY"
  expect_eq "CRI runtime $HANDLER: runtimeType" "$(jq -r ".config.containerd.runtimes[\"$HANDLER\"].runtimeType" <<<"$info")" "io.containerd.$HANDLER.v1"
  # the main config's own runtime survived the merge
  expect_eq "CRI runtime runc (main config)" "$(jq -r '.config.containerd.runtimes.runc.runtimeType' <<<"$info")" io.containerd.runc.v2
}

run_smoke() {
  local out rc=0 mark=0
  if [ "$IS_VM" = 1 ]; then mark=$(stat -c %s "$WORK/logs/$HANDLER.log"); fi
  out=$(WORK=$WORK RUNTIME_HANDLER=$HANDLER timeout -k 5 120 "$ROOT/hack/e2e/smoke.sh" 2>&1) || rc=$?
  echo "$out" | grep -v '^ok ' || true
  [ "$rc" -eq 0 ] || fail "smoke failed (rc=$rc)"
  if [ "$IS_VM" = 1 ]; then vm_smoke_check "$mark"; fi
}
# vm_smoke_check OFFSET: the daemon's log since OFFSET shows the smoke's pod
# as one VM that QEMU started, that booted (its agent answered) and was
# shut down; no QEMU of it is left
vm_smoke_check() {
  local new ids id
  new=$(tail -c +"$(($1 + 1))" "$WORK/logs/$HANDLER.log")
  ids=$(grep 'msg="qemu started"' <<<"$new" | sed -n 's/.* sandbox_id=\([0-9a-f]*\).*/\1/p')
  expect_eq "VMs QEMU started during the smoke" "$(grep -c . <<<"$ids" || true)" 1
  id=$ids
  grep -q "msg=\"pod VM ready\".* sandbox_id=$id" <<<"$new" || fail "no \"pod VM ready\" for pod $id"
  grep -q "msg=\"sandbox shut down\".* sandbox_id=$id" <<<"$new" || fail "no \"sandbox shut down\" for pod $id"
  [ -z "$(qemu_of "$id")" ] || fail "QEMU of pod $id still runs: $(qemu_of "$id")"
  echo "pod $id: $(grep "msg=\"pod VM ready\".* sandbox_id=$id" <<<"$new" | grep -o 'total_ms=[0-9]*' || true) (QEMU start to agent ready)"
}

pod_files() {
  mkdir -p "$T/logs"
  cat >"$T/pod.json" <<EOF
{ "metadata": { "name": "pkgtest", "namespace": "magnetar-pkgtest", "uid": "$(cat /proc/sys/kernel/random/uuid)", "attempt": 1 },
  "hostname": "pkgtest", "log_directory": "$T/logs", "linux": { "cgroup_parent": "$CGROUP_PARENT" } }
EOF
  cat >"$T/ctr.json" <<EOF
{ "metadata": { "name": "sleeper" }, "image": { "image": "docker.io/library/busybox:latest" },
  "command": ["sleep", "3600"], "log_path": "sleeper.log", "linux": {} }
EOF
}
pod_state() { crictl inspectp -o go-template --template '{{.status.state}}' "$(cat "$T/pod.id")"; }
ctr_state() { crictl inspect -o go-template --template '{{.status.state}}' "$(cat "$T/ctr.id")"; }
ctr_running() { [ "$(ctr_state)" = CONTAINER_RUNNING ]; }
pid_gone() { ! pid_alive "$1"; }
no_keepers() { [ -z "$(our_keepers /run/magnetar)" ]; }
ctr_pid() { crictl inspect -o go-template --template '{{.info.pid}}' "$(cat "$T/ctr.id")"; }

# pod_start: the pod of upgrade_restart with its running container
pod_start() {
  pod_files
  crictl runp -r "$HANDLER" "$T/pod.json" >"$T/pod.id"
  crictl create "$(cat "$T/pod.id")" "$T/ctr.json" "$T/pod.json" >"$T/ctr.id"
  crictl start "$(cat "$T/ctr.id")" >/dev/null
  wait_for 10 ctr_running
}

# vm_image: that pod (started here, kept for upgrade_restart) is a VM whose
# QEMU boots the kernel and initramfs the package installed (the checkout's
# image, byte for byte), named by no path of the checkout; the container
# runs on the guest kernel of that image, not the host's
vm_image() {
  local id q args rel want src
  pod_start
  id=$(cat "$T/pod.id")
  q=$(qemu_of "$id")
  [ -n "$q" ] && [ "$(wc -w <<<"$q")" = 1 ] || fail "QEMU processes of pod $id (-name guest=$id): '$q'"
  expect_eq "QEMU -kernel" "$(qemu_arg "$q" -kernel)" "$VM_IMAGE_DIR/vmlinuz"
  expect_eq "QEMU -initrd" "$(qemu_arg "$q" -initrd)" "$VM_IMAGE_DIR/initramfs.cpio"
  args=$(tr '\0' ' ' <"/proc/$q/cmdline")
  [[ "$args" != *"$ROOT/"* ]] || fail "QEMU's command line names the checkout: $args"
  src=$(vm_image_src)
  cmp "$VM_IMAGE_DIR/vmlinuz" "$src/vmlinuz"
  cmp "$VM_IMAGE_DIR/initramfs.cpio" "$src/initramfs.cpio"
  rel=$(crictl exec -s "$(cat "$T/ctr.id")" uname -r)
  want=$(jq -r .meta.kernel_release "$src/manifest.json")
  expect_eq "kernel release in the container" "$rel" "$want"
  [ "$rel" != "$(uname -r)" ] || fail "the container runs on the host's kernel $rel"
  echo "QEMU pid $q: -kernel $VM_IMAGE_DIR/vmlinuz; in the container: uname -r = $rel (host: $(uname -r))"
}

# a pod with a running container, a local change to the config, a reinstall
# (the upgrade path: prerm upgrade, postinst configure OLD-VERSION), then what
# `systemctl restart` does with KillMode=process: SIGTERM to the daemon alone
# and a new one; the pod and its container live on, the changed config is
# used. runc: the container's process survives the restart; vmm (whose
# container pid is one in the guest): the pod's VM, its QEMU and virtiofsd,
# survives, and the container's guest pid is the same after it
upgrade_restart() {
  local pid out ready stopping vm=
  # vmm: the pod vm_image started
  [ -s "$T/ctr.id" ] || pod_start
  pid=$(ctr_pid)
  if [ "$IS_VM" = 1 ]; then
    vm=$(vm_procs "$(cat "$T/pod.id")")
    grep -q ' qemu-system' <<<"$vm" && grep -q ' virtiofsd' <<<"$vm" || fail "no QEMU or virtiofsd of pod $(cat "$T/pod.id"): $vm"
  fi
  sed -i 's/^log_level = "info"/log_level = "debug"/' "/etc/magnetar/$NAME.toml"
  out=$(dpkg_run -i --force-depends "$(deb_of "$HANDLER")") || fail "$out"
  expect_eq status "$(pkg_status)" "install ok installed"
  grep -q '^log_level = "debug"' "/etc/magnetar/$NAME.toml" || fail "reinstall overwrote the changed /etc/magnetar/$NAME.toml"
  ! ls /etc/magnetar/*.dpkg-* /etc/containerd/conf.d/*.dpkg-* 2>/dev/null || fail "dpkg left .dpkg-* files"
  ! grep -q 'restart containerd' <<<"$out" || fail "upgrade repeated the install advice"
  stopping=$(notify_count STOPPING=1); ready=$(notify_count READY=1)
  kill -TERM "$(cat "$T/daemon.pid")"
  wait_for 15 pid_gone "$(cat "$T/daemon.pid")"
  expect_eq "STOPPING=1 notifications" "$(notify_count STOPPING=1)" $((stopping + 1))
  if [ "$IS_VM" = 1 ]; then
    expect_eq "the VM's processes (pid, start time, name) without the daemon" "$(vm_procs "$(cat "$T/pod.id")")" "$vm"
  else
    kill -0 "$pid" || fail "container process $pid died with the daemon"
  fi
  [ -n "$(our_keepers /run/magnetar)" ] || fail "no keeper while the daemon is away"
  start_daemon
  wait_ready $((ready + 1))
  grep -q 'reusing the keeper' "$WORK/logs/$HANDLER.log" || fail "the new daemon did not reuse the keeper"
  # (not `tail | grep -q`: grep leaving early would SIGPIPE a tail of long lines, and pipefail fails on it)
  grep -q 'level=debug' <(tail -n 50 "$WORK/logs/$HANDLER.log") || fail "the new daemon does not log at the changed level"
  expect_eq "pod state after the restart" "$(pod_state)" SANDBOX_READY
  expect_eq "container state after the restart" "$(ctr_state)" CONTAINER_RUNNING
  expect_eq "container pid after the restart" "$(ctr_pid)" "$pid"
  if [ "$IS_VM" = 1 ]; then
    expect_eq "the VM's processes (pid, start time, name) after the restart" "$(vm_procs "$(cat "$T/pod.id")")" "$vm"
  fi
  expect_eq "exec after the restart" "$(crictl exec -s "$(cat "$T/ctr.id")" echo alive)" alive
  crictl stopp "$(cat "$T/pod.id")" >/dev/null
  crictl rmp "$(cat "$T/pod.id")" >/dev/null
  expect_eq "pods left" "$(crictl pods -q)" ""
  if [ "$IS_VM" = 1 ]; then
    wait_for 10 no_qemu_of "$(cat "$T/pod.id")" || fail "the VM's QEMU still runs after rmp"
    echo "VM processes that survived the restart (pid, start time, name): $(echo $vm)"
  fi
}

# everything stops (as on a node being drained), then dpkg -r: the binary,
# unit, docs, state skeleton and runtime files go, only the conffiles (and
# /etc/magnetar holding one) stay, the keeper is stopped by prerm
pkg_remove() {
  local out k
  crictl rmp -fa >/dev/null
  stop_pidfile "$T/containerd.pid"
  stop_pidfile "$T/daemon.pid"
  [ -n "$(our_keepers /run/magnetar)" ] || fail "no keeper before dpkg -r"
  out=$(dpkg_run -r "$HANDLER") || fail "$out"
  echo "$out"
  expect_eq status "$(pkg_status)" "deinstall ok config-files"
  for f in "/usr/bin/$BINARY" "/usr/lib/systemd/system/$HANDLER.service" "/usr/share/doc/$HANDLER"; do
    [ ! -e "$f" ] || fail "$f left after dpkg -r"
  done
  for f in $(want_conffiles); do [ -f "$f" ] || fail "conffile $f removed by dpkg -r"; done
  grep -q '^log_level = "debug"' "/etc/magnetar/$NAME.toml" || fail "the changed config was not kept"
  wait_for 5 no_keepers || fail "keeper still runs after dpkg -r: $(our_keepers /run/magnetar)"
  if [ "$IS_VM" = 1 ]; then [ -z "$(our_pkg_procs)" ] || fail "VM processes left after dpkg -r: $(our_pkg_procs)"; fi
  # nothing else of the package: no state skeleton, no runtime files
  expect_eq "left after dpkg -r" "$(find $(host_paths) 2>/dev/null | sort | tr '\n' ' ')" "$( (echo /etc/magnetar; want_conffiles) | sort | tr '\n' ' ')"
}

# dpkg -P: nothing of the package stays
pkg_purge() {
  local out p left=
  out=$(dpkg_run -P "$HANDLER") || fail "$out"
  echo "$out"
  [[ "$(pkg_status)" == *not-installed* ]] || fail "status after purge: $(pkg_status)"
  for p in $(host_paths); do [ ! -e "$p" ] || left="$left $p"; done
  if [ ! -f "$T/had-confd" ] && [ -e /etc/containerd/conf.d ]; then left="$left /etc/containerd/conf.d"; fi
  if [ ! -f "$T/had-containerd-dir" ] && [ -e /etc/containerd ]; then left="$left /etc/containerd"; fi
  [ -z "$left" ] || fail "left after dpkg -P:$left $(find $left -maxdepth 2 2>/dev/null | head -20 | tr '\n' ' ')"
}

# install_start: what install_cleanup and pkg_purge go by: the test has
# begun, whether /etc/containerd and its conf.d were there before
install_start() {
  touch "$T/install-started"
  rm -f "$T/had-containerd-dir" "$T/had-confd" "$T/pod.id" "$T/ctr.id"
  [ ! -d /etc/containerd ] || touch "$T/had-containerd-dir"
  [ ! -d /etc/containerd/conf.d ] || touch "$T/had-confd"
  if [ ! -f "$T/logs-reset" ]; then rm -rf "$WORK/logs"; mkdir -p "$WORK/logs"; touch "$T/logs-reset"; fi
  : >"$T/notify.log"
}

# install_test HANDLER: the install test of one package, then its cleanup (so
# that the next package finds nothing of it on the host)
install_test() {
  load_sandboxer "${1#magnetar-}"
  if is_handler; then handler_install_test; return 0; fi
  TEST_HANDLERS=$HANDLER
  IS_VM=0; [ "$NAME" != vmm ] || IS_VM=1
  local reason
  reason=$(install_precheck)
  if [ -n "$reason" ]; then
    skip "install test of $HANDLER: $reason"
    return 0
  fi
  install_start
  check "$HANDLER: dpkg -i (nothing of it on the host before)" pkg_install
  if [ "$CHECK_RC" -eq 0 ]; then
    if command -v systemd-analyze >/dev/null; then
      check "$HANDLER: systemd-analyze verify (installed unit)" unit_verify_installed
    fi
    if [ "$IS_VM" = 1 ]; then
      check "$HANDLER: daemon started as the unit does: READY=1, WATCHDOG=1, socket 0600, guest image of the package ($VM_IMAGE_DIR)" daemon_start_check
      sed -n 's/^accel=/     accel: /p' "$T/.out"
    else
      check "$HANDLER: daemon started as the unit does: READY=1, WATCHDOG=1, socket 0600" daemon_start_check
    fi
    check "$HANDLER: containerd with the installed drop-in: proxy plugin and runtime handler loaded" containerd_start
    if [ "$CHECK_RC" -eq 0 ]; then
      check "$HANDLER: proxy plugin, CRI runtime handler, main config kept (ctr plugins ls, crictl info)" containerd_loaded_dropin
      if [ "$IS_VM" = 1 ]; then
        check "$HANDLER: e2e smoke through the installed package, its pod a VM (QEMU started, booted, shut down)" run_smoke
        grep -E '^(FAIL|e2e:|pod )' "$T/.out" | sed 's/^/     /' || true
        check "$HANDLER: a pod's QEMU boots the installed kernel and initramfs; the container runs on the guest kernel" vm_image
        grep -E '^QEMU pid' "$T/.out" | sed 's/^/     /' || true
        check "$HANDLER: reinstall keeps the changed config; daemon restart keeps the pod's VM (QEMU, virtiofsd) running, exec works" upgrade_restart
        grep -E '^VM processes' "$T/.out" | sed 's/^/     /' || true
      else
        check "$HANDLER: e2e smoke through the installed package" run_smoke
        grep -E '^(FAIL|e2e:)' "$T/.out" | sed 's/^/     /' || true
        check "$HANDLER: reinstall keeps the changed config; daemon restart keeps the pod running" upgrade_restart
      fi
    fi
    check "$HANDLER: dpkg -r stops the keeper and keeps only the conffiles" pkg_remove
    check "$HANDLER: dpkg -P leaves nothing" pkg_purge
  fi
  # (written for the EXIT trap: best effort, errexit off)
  set +e
  install_cleanup
  set -e
}

# --- the install test of a handler's package (DAEMON=...) with its daemon's:
# no pod of the handler runs (its VMM may not be installed here) ---------------

# handler_install_test: the loaded handler's package installed after its
# daemon's (dpkg -i of both), its postinst; a throwaway containerd loading
# both drop-ins through the glob (both proxy plugins and CRI handlers);
# where the handler's program (BINARY_KEY) is not installed, RunPodSandbox
# of the handler fails naming it and its key, served by the daemon as its
# unit runs it; the daemon's package not removable while the handler's is
# installed; the handler's package removed (its drop-in kept) and purged
# (nothing of it left, the daemon's untouched); then the daemon's purged
handler_install_test() {
  local h=$NAME reason
  load_sandboxer "$DAEMON"
  IS_VM=0
  reason=$(install_precheck)
  load_sandboxer "$h"
  [ -n "$reason" ] || reason=$(handler_precheck)
  if [ -n "$reason" ]; then
    skip "install test of $HANDLER: $reason"
    return 0
  fi
  TEST_HANDLERS="$DAEMON_PACKAGE $HANDLER"
  install_start
  check "$HANDLER: dpkg -i of $DAEMON_PACKAGE, then of $HANDLER (nothing of them on the host before)" handler_pkg_install
  if [ "$CHECK_RC" -eq 0 ]; then
    check "$HANDLER: containerd with the installed drop-ins: proxy plugins and CRI handlers $DAEMON_PACKAGE and $HANDLER" handler_containerd
    if [ "$CHECK_RC" -eq 0 ]; then
      if [ -z "$BINARY_KEY" ]; then
        skip "$HANDLER: RunPodSandbox without its program: the conf names none (BINARY_KEY)"
      elif reason=$(handler_binary_installed); then
        skip "$HANDLER: RunPodSandbox without its program: $reason"
      else
        check "$HANDLER: RunPodSandbox fails naming $BINARY_KEY and the missing program; the daemon serves $DAEMON_PACKAGE's handler on" handler_missing_binary
        grep -m1 -o "desc = .*" "$T/.out" | cut -c1-240 | sed 's/^/     /' || true
      fi
    fi
    check "$HANDLER: dpkg -r $DAEMON_PACKAGE refused while $HANDLER is installed" handler_daemon_kept
    check "$HANDLER: dpkg -r keeps only its drop-in, dpkg -P leaves nothing of it; $DAEMON_PACKAGE untouched" handler_remove_purge
    check "$HANDLER: then dpkg -P $DAEMON_PACKAGE leaves nothing" handler_daemon_purge
  fi
  set +e
  install_cleanup
  set -e
}

# handler_precheck: prints why the handler's package cannot be installed here
handler_precheck() {
  local p
  case "$(pkg_status)" in *not-installed* | "") ;; *) echo "$HANDLER is installed on this host ($(pkg_status))"; return ;; esac
  for p in "/etc/containerd/conf.d/$HANDLER.toml" "/usr/share/doc/$HANDLER"; do
    if [ -e "$p" ]; then echo "$p exists on this host: not overwriting it"; return; fi
  done
}

handler_pkg_install() {
  local h=$NAME
  load_sandboxer "$DAEMON"
  pkg_install
  load_sandboxer "$h"
  pkg_install
}

# handler_containerd: the throwaway containerd loads both drop-ins; each
# handler reaches the one daemon (socket, binary, config)
handler_containerd() {
  local h=$NAME
  containerd_start
  load_sandboxer "$DAEMON"
  containerd_loaded_dropin
  load_sandboxer "$h"
  containerd_loaded_dropin
}

# handler_binary_installed: succeeds (printing where) when the program the
# handler's pods need (BINARY_KEY of the installed daemon config) is found
# in the PATH the daemon runs with
handler_binary_installed() {
  local v
  v=$(handler_binary)
  [ -n "$v" ] || { echo "no $BINARY_KEY in /etc/magnetar/$DAEMON.toml"; return 0; }
  if PATH="$BIN:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" command -v "$v" >/dev/null; then
    echo "$BINARY_KEY = \"$v\" is installed here"; return 0
  fi
  return 1
}
# handler_binary: the value of BINARY_KEY (section.key) in the installed config
handler_binary() {
  awk -v sec="[${BINARY_KEY%%.*}]" -v key="${BINARY_KEY#*.}" '
    /^\[/ {in_sec = ($1 == sec); next}
    in_sec && $1 == key && $2 == "=" {v = $3; gsub(/"/, "", v); print v; exit}' "/etc/magnetar/$DAEMON.toml"
}

# handler_missing_binary: the daemon (as its unit runs it) serves; a pod of
# the handler fails at RunPodSandbox, the error naming the key and the
# program; no pod is left
handler_missing_binary() {
  local h=$NAME out
  load_sandboxer "$DAEMON"
  start_daemon
  wait_ready 1
  load_sandboxer "$h"
  pod_files
  if out=$(crictl runp -r "$HANDLER" "$T/pod.json" 2>&1); then
    crictl rmp -f "$out" >/dev/null 2>&1 || true
    fail "RunPodSandbox on $HANDLER succeeded without $(handler_binary)"
  fi
  echo "$out"
  grep -q "$BINARY_KEY" <<<"$out" && grep -qF "$(handler_binary)" <<<"$out" || fail "the error names not $BINARY_KEY and $(handler_binary): $out"
  grep -qi 'FailedPrecondition\|failed precondition\|not installed' <<<"$out" || fail "not a failed precondition: $out"
  expect_eq "pods left" "$(crictl pods -q)" ""
  load_sandboxer "$DAEMON"
  stop_pidfile "$T/daemon.pid"
}

handler_daemon_kept() {
  local out h=$NAME
  if out=$(dpkg_run -r "$DAEMON_PACKAGE"); then fail "dpkg -r $DAEMON_PACKAGE succeeded with $HANDLER installed: $out"; fi
  grep -q "dependency problems prevent removal of $DAEMON_PACKAGE" <<<"$out" || fail "$out"
  load_sandboxer "$DAEMON"
  # still installed; the refused remove left dpkg's selection at deinstall:
  # put it back, as apt would not have asked
  [[ "$(pkg_status)" == *" ok installed" ]] || fail "status of $DAEMON_PACKAGE: $(pkg_status)"
  echo "$DAEMON_PACKAGE install" | dpkg --set-selections
  expect_eq "status of $DAEMON_PACKAGE" "$(pkg_status)" "install ok installed"
  load_sandboxer "$h"
}

handler_remove_purge() {
  local out h=$NAME
  out=$(dpkg_run -r "$HANDLER") || fail "$out"
  echo "$out"
  expect_eq status "$(pkg_status)" "deinstall ok config-files"
  [ -f "/etc/containerd/conf.d/$HANDLER.toml" ] || fail "conffile removed by dpkg -r"
  [ ! -e "/usr/share/doc/$HANDLER" ] || fail "/usr/share/doc/$HANDLER left after dpkg -r"
  grep -q "conf.d/$HANDLER.toml is kept" <<<"$out" || fail "postrm did not say that the drop-in stays"
  out=$(dpkg_run -P "$HANDLER") || fail "$out"
  echo "$out"
  [[ "$(pkg_status)" == *not-installed* ]] || fail "status after purge: $(pkg_status)"
  [ ! -e "/etc/containerd/conf.d/$HANDLER.toml" ] || fail "drop-in left after dpkg -P"
  grep -q "restart containerd to drop the runtime handler $HANDLER" <<<"$out" || fail "postrm gave no containerd advice"
  load_sandboxer "$DAEMON"
  expect_eq "status of $DAEMON_PACKAGE" "$(pkg_status)" "install ok installed"
  [ -f "/etc/containerd/conf.d/$HANDLER.toml" ] && [ -x "/usr/bin/$BINARY" ] || fail "files of $DAEMON_PACKAGE gone"
  load_sandboxer "$h"
}

handler_daemon_purge() {
  crictl rmp -fa >/dev/null
  stop_pidfile "$T/containerd.pid"
  load_sandboxer "$DAEMON"
  stop_pidfile "$T/daemon.pid"
  pkg_purge
}

for h in $INSTALL_HANDLERS; do
  install_test "$h"
done
