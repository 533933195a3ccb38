package nsutil

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
)

// sysctl is one validated key, ready to be written.
type sysctl struct {
	key   string // as given, for messages
	file  string // below /proc/sys
	value string
	kind  Kind

	f       *os.File // opened inside the namespace
	old     string   // value before writing, "" when unreadable
	written bool
}

// sysctlPath turns a key into its path below /proc/sys, following sysctl(8):
// with dots as separators ("net.ipv4.conf.eth0/100.forwarding") a slash
// stands for a dot in a name; with slashes as separators
// ("net/ipv4/conf/eth0.100/forwarding") dots are literal. The first
// separator decides.
func sysctlPath(key string) (string, error) {
	if key == "" {
		return "", errors.New("empty key")
	}
	for _, r := range key {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.' || r == '/') {
			return "", fmt.Errorf("character %q not allowed", r)
		}
	}
	p := key
	if i := strings.IndexAny(key, "./"); i >= 0 && key[i] == '.' {
		p = strings.Map(func(r rune) rune {
			switch r {
			case '.':
				return '/'
			case '/':
				return '.'
			}
			return r
		}, key)
	}
	parts := strings.Split(p, "/")
	if len(parts) < 2 {
		return "", errors.New("not a sysctl path")
	}
	for _, part := range parts {
		if part == "" || part == "." || part == ".." {
			return "", fmt.Errorf("bad component %q", part)
		}
	}
	return p, nil
}

// sysctlKind returns the namespace a sysctl path (below /proc/sys) lives in:
// net/* in the network namespace; kernel/shm*, kernel/msg*, kernel/sem and
// fs/mqueue/* in the IPC namespace. Anything else is host-wide.
func sysctlKind(p string) (Kind, bool) {
	switch {
	case strings.HasPrefix(p, "net/"):
		return KindNet, true
	case strings.HasPrefix(p, "kernel/shm"),
		strings.HasPrefix(p, "kernel/msg"),
		p == "kernel/sem",
		strings.HasPrefix(p, "fs/mqueue/"):
		return KindIPC, true
	}
	return "", false
}

// ApplySysctls writes pod sysctls into the namespaces they belong to:
// net.* into the network namespace at netnsPath; kernel.shm*, kernel.msg*,
// kernel.sem and fs.mqueue.* into the IPC namespace at ipcPath. Keys may use
// dots or slashes ("net.ipv4.ip_forward", "net/ipv4/ip_forward").
//
// Every key is checked before anything is written: a key that is malformed,
// not namespaced (vm.*, kernel.pid_max, ...), meant for a namespace whose
// path is empty, or unknown to the kernel is refused with
// errdefs.ErrInvalidArgument naming it, and nothing is written. Should the
// kernel then reject a value, the keys already written are restored.
func ApplySysctls(netnsPath, ipcPath string, sysctls map[string]string) error {
	if len(sysctls) == 0 {
		return nil
	}
	keys := make([]string, 0, len(sysctls))
	for k := range sysctls {
		keys = append(keys, k)
	}
	slices.Sort(keys)

	var (
		refused []string
		byKind  = map[Kind][]*sysctl{}
	)
	for _, k := range keys {
		v := sysctls[k]
		p, err := sysctlPath(k)
		if err != nil {
			refused = append(refused, fmt.Sprintf("%q (%v)", k, err))
			continue
		}
		kind, ok := sysctlKind(p)
		switch {
		case !ok:
			refused = append(refused, fmt.Sprintf("%q (not namespaced: it would change the host)", k))
			continue
		case kind == KindNet && netnsPath == "":
			refused = append(refused, fmt.Sprintf("%q (no network namespace given)", k))
			continue
		case kind == KindIPC && ipcPath == "":
			refused = append(refused, fmt.Sprintf("%q (no IPC namespace given)", k))
			continue
		case v == "" || strings.ContainsAny(v, "\n\x00"):
			refused = append(refused, fmt.Sprintf("%q (value must be one non-empty line)", k))
			continue
		}
		byKind[kind] = append(byKind[kind], &sysctl{key: k, file: filepath.Join("/proc/sys", p), value: v, kind: kind})
	}
	if len(refused) > 0 {
		return fmt.Errorf("sysctls refused: %s: %w", strings.Join(refused, ", "), errdefs.ErrInvalidArgument)
	}

	nsPath := map[Kind]string{KindNet: netnsPath, KindIPC: ipcPath}
	order := []Kind{KindIPC, KindNet}
	defer func() {
		for _, items := range byKind {
			for _, s := range items {
				if s.f != nil {
					s.f.Close()
				}
			}
		}
	}()

	// Phase 1: open every file from inside its namespace. An unknown key
	// fails here, before anything is written.
	for _, kind := range order {
		items := byKind[kind]
		if len(items) == 0 {
			continue
		}
		var missing []string
		err := Do(nsPath[kind], kind, func() error {
			for _, s := range items {
				f, err := os.OpenFile(s.file, os.O_WRONLY, 0)
				if errors.Is(err, fs.ErrNotExist) {
					missing = append(missing, s.key)
					continue
				}
				if err != nil {
					return fmt.Errorf("sysctl %q: %w", s.key, err)
				}
				s.f = f
				if b, err := os.ReadFile(s.file); err == nil {
					s.old = strings.TrimSpace(string(b))
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("sysctls in %s namespace %s: %w", kind, nsPath[kind], err)
		}
		if len(missing) > 0 {
			return fmt.Errorf("unknown sysctls %s: %w", strings.Join(missing, ", "), errdefs.ErrInvalidArgument)
		}
	}

	// Phase 2: write, still from inside each namespace (older kernels
	// resolve IPC sysctls against the writer's namespace).
	var werr error
	for _, kind := range order {
		items := byKind[kind]
		if len(items) == 0 {
			continue
		}
		err := Do(nsPath[kind], kind, func() error {
			for _, s := range items {
				if _, err := s.f.WriteString(s.value); err != nil {
					return fmt.Errorf("sysctl %q = %q: %w", s.key, s.value, err)
				}
				s.written = true
			}
			return nil
		})
		if err != nil {
			werr = err
			break
		}
	}
	if werr == nil {
		return nil
	}
	restoreSysctls(nsPath, byKind)
	return werr
}

// restoreSysctls writes back the previous value of every key written.
func restoreSysctls(nsPath map[Kind]string, byKind map[Kind][]*sysctl) {
	for kind, items := range byKind {
		_ = Do(nsPath[kind], kind, func() error {
			for _, s := range items {
				if !s.written || s.old == "" {
					continue
				}
				if err := os.WriteFile(s.file, []byte(s.old), 0); err != nil {
					log.L.WithError(err).Warnf("cannot restore sysctl %s", s.key)
				}
			}
			return nil
		})
	}
}
