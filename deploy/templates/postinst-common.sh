# included in postinst.sh and handler-postinst.sh from
# deploy/templates/postinst-common.sh: the action from the arguments, note,
# and containerd_advice (how containerd loads the drop-in, on a first install)
case "$1" in
configure) if [ -n "${2:-}" ]; then action=upgrade; else action=install; fi ;;
[0-9]*) if [ "$1" -gt 1 ]; then action=upgrade; else action=install; fi ;;
*) exit 0 ;;
esac
note() { echo "@PACKAGE@: $*"; }
containerd_advice() {
  if [ "$action" = install ]; then
    cfg=/etc/containerd/config.toml
    if [ ! -f "$cfg" ]; then
      note "containerd reads /etc/containerd/conf.d/@HANDLER@.toml only through the imports of"
      note "$cfg, which does not exist. Create it with these two lines:"
      note '  version = 3'
      note '  imports = ["/etc/containerd/conf.d/*.toml"]'
    elif ! grep -Eq '^[[:space:]]*imports[[:space:]]*=.*conf\.d' "$cfg"; then
      note "$cfg does not import /etc/containerd/conf.d: add this line at its top (before any [table]):"
      note '  imports = ["/etc/containerd/conf.d/*.toml"]'
    fi
    note "restart containerd to load the runtime handler @HANDLER@ (running containers are not affected):"
    note "  systemctl restart containerd"
  fi
}
