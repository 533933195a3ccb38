package taskfwd

import (
	"fmt"
	"os"
	"path"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/magnetar-runtime/magnetar/shared/stdio"
)

// Stdio by path (Forwarding.StdioByPath): containerd's FIFO of each stream
// is bind-mounted onto a file in the container's directory in the share,
// which the guest opens by its own path for it.

// stdioFile is the name, in the container's directory, of stream of process
// execID ("" for the init): Kuasar's layout for Quark.
func stdioFile(execID, stream string) string {
	if execID == "" {
		return stream
	}
	return execID + "-" + stream
}

// hostStreams are the streams of cfg, with containerd's path of each (a
// terminal's single output is stdout).
func hostStreams(cfg stdio.Config) map[string]string {
	m := map[string]string{}
	for _, s := range []struct{ name, v string }{{streamStdin, cfg.Stdin}, {streamStdout, cfg.Stdout}, {streamStderr, cfg.Stderr}} {
		if s.v != "" && (s.name != streamStderr || !cfg.Terminal) {
			m[s.name] = s.v
		}
	}
	return m
}

// bindStdio bind-mounts containerd's FIFOs of the process into the
// container's directory. On error what it bound is left for unbindStdio.
func (p *process) bindStdio() error {
	if err := p.cfg.PathsOnly(); err != nil {
		return err
	}
	for stream, src := range hostStreams(p.cfg) {
		target := filepath.Join(p.c.st.Dir, stdioFile(p.execID, stream))
		if err := bindInto(src, target, bindMode{}); err != nil {
			return fmt.Errorf("%s: %w", stream, err)
		}
	}
	return nil
}

// unbindStdio unmounts and removes what bindStdio made. Idempotent.
func (p *process) unbindStdio() {
	if p.c.st.Dir == "" {
		return
	}
	for stream := range hostStreams(p.cfg) {
		target := filepath.Join(p.c.st.Dir, stdioFile(p.execID, stream))
		for unix.Unmount(target, unix.MNT_DETACH) == nil {
		}
		if err := os.Remove(target); err != nil && !os.IsNotExist(err) {
			p.logger().WithError(err).WithField("stream", stream).Warn("removing a stdio file of the share")
		}
	}
}

// pathStdio is the stdio of the process as the guest gets it: the paths of
// the files bindStdio made, as the guest sees them.
func (p *process) pathStdio() stdio.Config {
	gs := stdio.Config{Terminal: p.cfg.Terminal}
	for stream := range hostStreams(p.cfg) {
		v := path.Join(p.c.st.Bundle, stdioFile(p.execID, stream))
		switch stream {
		case streamStdin:
			gs.Stdin = v
		case streamStdout:
			gs.Stdout = v
		case streamStderr:
			gs.Stderr = v
		}
	}
	return gs
}
