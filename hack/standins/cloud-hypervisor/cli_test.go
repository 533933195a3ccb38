package main

import (
	"errors"
	"strings"
	"testing"
)

func TestParseArgs(t *testing.T) {
	for _, c := range []struct {
		args []string
		path string
		fd   int
	}{
		{[]string{"--api-socket", "path=/run/x/api.sock"}, "/run/x/api.sock", -1},
		{[]string{"--api-socket", "/tmp/cloud-hypervisor.sock"}, "/tmp/cloud-hypervisor.sock", -1},
		{[]string{"--api-socket=/tmp/c.sock"}, "/tmp/c.sock", -1},
		{[]string{"--api-socket", "fd=7"}, "", 7},
	} {
		got, err := parseArgs(c.args)
		if err != nil || got.apiPath != c.path || got.apiFD != c.fd || got.vm != nil {
			t.Errorf("%q: %+v, %v", c.args, got, err)
		}
	}
	// the VM options of the docs (fs.md, vsock.md, snapshot_restore.md)
	got, err := parseArgs([]string{"--api-socket", "/tmp/c.sock", "--cpus", "boot=4", "--memory", "size=1G,shared=on",
		"--kernel", "vmlinux", "--cmdline", "console=hvc0 root=/dev/vda1 rw",
		"--fs", "tag=myfs,socket=/tmp/virtiofs,num_queues=1,queue_size=512", "tag=b,socket=/tmp/b",
		"--vsock", "cid=3,socket=/tmp/ch.vsock"})
	if err != nil {
		t.Fatal(err)
	}
	v := got.vm
	if v == nil || v.Cpus.BootVcpus != 4 || v.Memory.Size != 1<<30 || !*v.Memory.Shared || *v.Payload.Kernel != "vmlinux" ||
		*v.Payload.Cmdline != "console=hvc0 root=/dev/vda1 rw" || len(*v.Fs) != 2 || (*v.Fs)[0].QueueSize != 512 ||
		(*v.Fs)[1].QueueSize != 1024 || v.Vsock.Cid != 3 || v.Vsock.Socket != "/tmp/ch.vsock" {
		t.Errorf("vm from the command line: %+v", v)
	}
}

func TestParseArgsRefuses(t *testing.T) {
	for _, c := range []struct {
		args  []string
		usage bool // a clap usage error (exit 2), else a config error (exit 1)
		msg   string
	}{
		{[]string{"--foo"}, true, "unexpected argument '--foo' found"},
		{[]string{"api.sock"}, true, "unexpected argument 'api.sock' found"},
		// not in the default build (dbus_api feature)
		{[]string{"--dbus-service-name", "org.x"}, true, "unexpected argument '--dbus-service-name' found"},
		// real options the reference docs do not define
		{[]string{"--initramfs", "/i"}, true, "unexpected argument '--initramfs' found"},
		{[]string{"--serial", "tty"}, true, "unexpected argument '--serial' found"},
		{[]string{"--net", "fd=3"}, true, "unexpected argument '--net' found"},
		{[]string{"--api-socket"}, true, "a value is required for '--api-socket <api-socket>'"},
		{[]string{"--cpus", "boot=1", "--cpus", "boot=2"}, true, "cannot be used multiple times"},
		{[]string{"--help=yes"}, true, "unexpected value"},
		{[]string{"--cpus", "max=2"}, false, "Error parsing --cpus: unknown option: max"},
		{[]string{"--memory", "size=1G,hugepages=on"}, false, "Error parsing --memory: unknown option: hugepages"},
		{[]string{"--memory", "size=lots"}, false, "invalid size"},
		{[]string{"--fs", "tag=a"}, false, "tag and socket are required"},
		{[]string{"--api-socket", "path=/a,fd=3"}, false, "mutually exclusive"},
		{[]string{"--disk", "path=/img"}, false, "--disk: not emulated by the Cloud Hypervisor stand-in"},
		{[]string{"--restore", "source_url=file:///s"}, false, "--restore: not emulated"},
	} {
		_, err := parseArgs(c.args)
		var ue *usageError
		var ce *configError
		switch {
		case err == nil:
			t.Errorf("%q accepted", c.args)
		case c.usage && !errors.As(err, &ue), !c.usage && !errors.As(err, &ce):
			t.Errorf("%q: %T %v", c.args, err, err)
		case !strings.Contains(err.Error(), c.msg):
			t.Errorf("%q: %q, want %q", c.args, err, c.msg)
		}
	}
	if cliFail(&usageError{"x"}) != 2 || cliFail(&configError{"x"}) != 1 {
		t.Error("exit statuses: clap's usage errors exit 2, configuration errors 1")
	}
}
