package podfiles

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/magnetar-runtime/magnetar/shared/store"
)

// Names of the files Write makes, as containers mount them under /etc.
var Names = []string{"hostname", "hosts", "resolv.conf"}

// ValidateHostname checks a pod's hostname (options.hostname).
func ValidateHostname(h string) error {
	if len(h) > 64 {
		return fmt.Errorf("options.hostname %q: longer than 64 characters: %w", h, errdefs.ErrInvalidArgument)
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return fmt.Errorf("options.hostname %q: character %q is not allowed: %w", h, r, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// ValidateSysctls refuses what cannot go into the pod's own namespaces
// (options.linux.sysctls) before anything is created.
func ValidateSysctls(sys map[string]string, hostNet, hostIPC bool) error {
	for k := range sys {
		key := strings.ReplaceAll(k, "/", ".")
		switch {
		case strings.HasPrefix(key, "net.") && hostNet:
			return fmt.Errorf("options.linux.sysctls[%s]: a host-network pod cannot set network sysctls: %w", k, errdefs.ErrInvalidArgument)
		case (strings.HasPrefix(key, "kernel.shm") || strings.HasPrefix(key, "kernel.msg") || key == "kernel.sem" || strings.HasPrefix(key, "fs.mqueue.")) && hostIPC:
			return fmt.Errorf("options.linux.sysctls[%s]: a host-IPC pod cannot set IPC sysctls: %w", k, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// ResolvConf is the resolv.conf of a pod's DNS config, "" when it sets
// nothing (the host's is used then).
func ResolvConf(dns *runtime.DNSConfig) (string, error) {
	if dns == nil || len(dns.GetServers())+len(dns.GetSearches())+len(dns.GetOptions()) == 0 {
		return "", nil
	}
	var b strings.Builder
	for _, s := range dns.GetServers() {
		if !resolvWord(s) {
			return "", fmt.Errorf("options.dns_config.servers %q: invalid: %w", s, errdefs.ErrInvalidArgument)
		}
		b.WriteString("nameserver " + s + "\n")
	}
	for _, l := range [][]string{dns.GetSearches(), dns.GetOptions()} {
		for _, w := range l {
			if !resolvWord(w) {
				return "", fmt.Errorf("options.dns_config %q: invalid: %w", w, errdefs.ErrInvalidArgument)
			}
		}
	}
	if len(dns.GetSearches()) > 0 {
		b.WriteString("search " + strings.Join(dns.GetSearches(), " ") + "\n")
	}
	if len(dns.GetOptions()) > 0 {
		b.WriteString("options " + strings.Join(dns.GetOptions(), " ") + "\n")
	}
	return b.String(), nil
}

// resolvWord reports whether w is one word of resolv.conf: not empty, no
// space or control character (the C library splits a line at \v, \f and
// \r as at a space, and a NUL ends it).
func resolvWord(w string) bool {
	return w != "" && !strings.ContainsFunc(w, func(r rune) bool { return r <= ' ' || r == 0x7f })
}

// Write writes the pod's hostname, hosts and resolv.conf into dir. A
// host-network pod gets the host's hostname and /etc/hosts.
func Write(dir, hostname string, hostNetwork bool, dns *runtime.DNSConfig) error {
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
	if hostNetwork {
		if b, err := os.ReadFile("/etc/hosts"); err == nil {
			hosts = string(b)
		}
		if h, err := os.Hostname(); err == nil {
			hostname = h
		}
	} else {
		hosts += "127.0.1.1\t" + hostname + "\n"
	}
	resolv, err := ResolvConf(dns)
	if err != nil {
		return err
	}
	if resolv == "" {
		if b, err := os.ReadFile("/etc/resolv.conf"); err == nil {
			resolv = string(b)
		}
	}
	for name, content := range map[string]string{"hostname": hostname + "\n", "hosts": hosts, "resolv.conf": resolv} {
		if err := store.WriteFileAtomic(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("pod file %s: %w", name, err)
		}
	}
	return nil
}
