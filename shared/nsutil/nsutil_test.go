package nsutil

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestSysctlPath(t *testing.T) {
	good := map[string]string{
		"net.ipv4.ip_forward":               "net/ipv4/ip_forward",
		"net/ipv4/ip_forward":               "net/ipv4/ip_forward",
		"net.ipv4.conf.eth0/100.forwarding": "net/ipv4/conf/eth0.100/forwarding",
		"net/ipv4/conf/eth0.100/forwarding": "net/ipv4/conf/eth0.100/forwarding",
		"kernel.shm_rmid_forced":            "kernel/shm_rmid_forced",
		"fs.mqueue.msg_max":                 "fs/mqueue/msg_max",
		"net.ipv6.conf.all.disable_ipv6":    "net/ipv6/conf/all/disable_ipv6",
		"net.ipv4.conf.veth-a_1.rp_filter":  "net/ipv4/conf/veth-a_1/rp_filter",
	}
	for in, want := range good {
		if got, err := sysctlPath(in); err != nil || got != want {
			t.Errorf("sysctlPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{
		"", "net", "net..ipv4", "net.ipv4.", ".net.ipv4", "net/../kernel/x", "net.ipv4/../../x",
		"net/./ipv4", "Net.ipv4.ip_forward", "net.ipv4.ip forward", "net.ipv4.x\n", "net/ipv4//x", "net.ipv4.*",
	} {
		if got, err := sysctlPath(in); err == nil {
			t.Errorf("sysctlPath(%q) = %q, want an error", in, got)
		}
	}
}

func TestSysctlKind(t *testing.T) {
	for p, want := range map[string]Kind{
		"net/ipv4/ip_forward":        KindNet,
		"net/core/somaxconn":         KindNet,
		"kernel/shmmax":              KindIPC,
		"kernel/shm_rmid_forced":     KindIPC,
		"kernel/msgmnb":              KindIPC,
		"kernel/sem":                 KindIPC,
		"fs/mqueue/queues_max":       KindIPC,
		"vm/swappiness":              "",
		"kernel/pid_max":             "",
		"kernel/sem_extra":           "",
		"kernel/hostname":            "",
		"fs/file-max":                "",
		"netfilter/nf_conntrack_max": "",
	} {
		got, ok := sysctlKind(p)
		if got != want || ok != (want != "") {
			t.Errorf("sysctlKind(%q) = %q, %v; want %q", p, got, ok, want)
		}
	}
}

func TestApplySysctlsRefusals(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "absent")
	for _, tc := range []struct {
		sysctls map[string]string
		net     string
		ipc     string
		named   []string
	}{
		{map[string]string{"vm.swappiness": "1", "net.ipv4.ip_forward": "1"}, missing, missing, []string{"vm.swappiness"}},
		{map[string]string{"kernel.pid_max": "1"}, missing, missing, []string{"kernel.pid_max"}},
		{map[string]string{"net..x": "1", "net.ipv4/../../x": "1"}, missing, missing, []string{"net..x", "net.ipv4/../../x"}},
		{map[string]string{"net.ipv4.ip_forward": "1\n0"}, missing, missing, []string{"net.ipv4.ip_forward"}},
		{map[string]string{"net.ipv4.ip_forward": ""}, missing, missing, []string{"net.ipv4.ip_forward"}},
		{map[string]string{"net.core.somaxconn": "1"}, "", missing, []string{"net.core.somaxconn"}},
		{map[string]string{"kernel.shmmax": "1", "kernel.sem": "1 2 3 4"}, missing, "", []string{"kernel.shmmax", "kernel.sem"}},
	} {
		err := ApplySysctls(tc.net, tc.ipc, tc.sysctls)
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("ApplySysctls(%v) = %v, want InvalidArgument", tc.sysctls, err)
			continue
		}
		for _, k := range tc.named {
			if !strings.Contains(err.Error(), k) {
				t.Errorf("error %q does not name %q", err, k)
			}
		}
	}
	if err := ApplySysctls("", "", nil); err != nil {
		t.Errorf("no sysctls: %v", err)
	}
	// Valid keys reach the namespace step, which fails on the missing path.
	if err := ApplySysctls(missing, "", map[string]string{"net.ipv4.ip_forward": "1"}); !errdefs.IsNotFound(err) {
		t.Errorf("missing netns = %v, want NotFound", err)
	}
}

func TestCreateRefusals(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	dir := filepath.Join(base, "ns")
	for _, tc := range []struct {
		kinds    []Kind
		hostname string
	}{
		{[]Kind{KindPID}, ""},
		{[]Kind{KindIPC, KindPID}, ""},
		{[]Kind{KindMount}, ""},
		{[]Kind{"bogus"}, ""},
		{nil, ""},
		{[]Kind{KindIPC, KindIPC}, ""},
		{[]Kind{KindUTS}, strings.Repeat("h", 65)},
	} {
		if _, err := Create(ctx, dir, tc.kinds, tc.hostname); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Create(%v, %q) = %v, want InvalidArgument", tc.kinds, tc.hostname, err)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("refused Create left %s behind", dir)
		}
	}
	if _, err := Create(ctx, "", []Kind{KindIPC}, ""); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Create with no dir = %v", err)
	}
}

func TestDoRefusals(t *testing.T) {
	called := false
	fn := func() error { called = true; return nil }
	for _, k := range []Kind{KindMount, KindUser, "bogus"} {
		if err := Do("/proc/self/ns/"+string(k), k, fn); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Do(%s) = %v, want InvalidArgument", k, err)
		}
	}
	if err := Do(filepath.Join(t.TempDir(), "absent"), KindNet, fn); !errdefs.IsNotFound(err) {
		t.Errorf("Do(missing) = %v, want NotFound", err)
	}
	if called {
		t.Error("fn ran although Do was refused")
	}
}

func TestIsNSFile(t *testing.T) {
	ok, err := IsNSFile("/proc/self/ns/ipc", KindIPC)
	if err != nil || !ok {
		t.Errorf("IsNSFile(/proc/self/ns/ipc, ipc) = %v, %v", ok, err)
	}
	if ok, err := IsNSFile("/proc/self/ns/ipc", KindUTS); err != nil || ok {
		t.Errorf("IsNSFile(/proc/self/ns/ipc, uts) = %v, %v", ok, err)
	}
	if ok, err := IsNSFile("/proc/self/ns/net", KindNet); err != nil || !ok {
		t.Errorf("IsNSFile(/proc/self/ns/net, net) = %v, %v", ok, err)
	}
	regular := filepath.Join(t.TempDir(), "ipc")
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if ok, err := IsNSFile(regular, KindIPC); err != nil || ok {
		t.Errorf("IsNSFile(regular file) = %v, %v", ok, err)
	}
	if _, err := IsNSFile(regular+".absent", KindIPC); !errdefs.IsNotFound(err) {
		t.Errorf("IsNSFile(missing) = %v, want NotFound", err)
	}
	if _, err := IsNSFile("/proc/self/ns/ipc", "bogus"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("IsNSFile(bogus kind) = %v", err)
	}
}

func TestReleaseMissing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ns")
	if err := Release(dir); err != nil {
		t.Errorf("Release(missing) = %v", err)
	}
	// Foreign files are left alone, and so is their directory.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "keep"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Release(dir); err != nil {
		t.Errorf("Release = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "keep")); err != nil {
		t.Errorf("foreign file removed: %v", err)
	}
}
