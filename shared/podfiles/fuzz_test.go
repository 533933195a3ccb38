package podfiles

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// cWords splits a line as the C library's resolv.conf parser does (isspace
// in the C locale).
func cWords(line string) []string {
	return strings.FieldsFunc(line, func(r rune) bool { return strings.ContainsRune(" \t\n\v\f\r", r) })
}

// FuzzResolvConf: the resolv.conf written for a pod's CRI DNS config reads
// back, as the C library parses it, as exactly the servers, search domains
// and options given (none split in two, none joined, no line added); a
// config it cannot write so is refused, naming the field.
func FuzzResolvConf(f *testing.F) {
	f.Add("10.0.0.10\n8.8.8.8", "svc.cluster.local\ncluster.local", "ndots:5")
	f.Add("10.0.0.10 options", "", "")
	f.Add("", "a\vb", "")
	f.Add("1.1.1.1\r", "x\x00y", "attempts:2\f")
	f.Add("", "", "")
	f.Fuzz(func(t *testing.T, servers, searches, options string) {
		split := func(s string) []string {
			if s == "" {
				return nil
			}
			return strings.Split(s, "\n")
		}
		dns := &runtime.DNSConfig{Servers: split(servers), Searches: split(searches), Options: split(options)}
		conf, err := ResolvConf(dns)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "options.dns_config") {
				t.Fatalf("ResolvConf(%+v) = %v: want an invalid-argument error naming options.dns_config", dns, err)
			}
			return
		}
		var gotServers, gotSearches, gotOptions []string
		for _, line := range strings.Split(strings.TrimSuffix(conf, "\n"), "\n") {
			w := cWords(line)
			if len(w) == 0 {
				continue
			}
			switch w[0] {
			case "nameserver":
				if len(w) != 2 {
					t.Fatalf("line %q of\n%s", line, conf)
				}
				gotServers = append(gotServers, w[1])
			case "search":
				gotSearches = append(gotSearches, w[1:]...)
			case "options":
				gotOptions = append(gotOptions, w[1:]...)
			default:
				t.Fatalf("ResolvConf(%+v) wrote line %q", dns, line)
			}
		}
		if !slices.Equal(gotServers, dns.Servers) || !slices.Equal(gotSearches, dns.Searches) || !slices.Equal(gotOptions, dns.Options) ||
			strings.IndexByte(conf, 0) >= 0 {
			t.Fatalf("ResolvConf(%+v) =\n%q\nreads back as %q %q %q", dns, conf, gotServers, gotSearches, gotOptions)
		}
	})
}

// FuzzValidateHostname: a hostname accepted is at most 64 bytes of
// letters, digits, '-' and '.', one word on one line of /etc/hostname and
// /etc/hosts.
func FuzzValidateHostname(f *testing.F) {
	for _, s := range []string{"", "pod-1", "a.b.c", "a b", "a\nb", strings.Repeat("h", 65), "ünï", "x\ty"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		if err := ValidateHostname(h); err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.HasPrefix(err.Error(), "options.hostname") {
				t.Fatalf("ValidateHostname(%q) = %v", h, err)
			}
			return
		}
		if len(h) > 64 || strings.ContainsFunc(h, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.')
		}) || len(cWords("127.0.1.1\t"+h)) > 2 {
			t.Fatalf("ValidateHostname accepted %q", h)
		}
	})
}
