package gvisorsb

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/magnetar-runtime/magnetar/cmd/gvisor-sandboxer/internal/runsc"
	"github.com/magnetar-runtime/magnetar/shared/bundle"
	"github.com/magnetar-runtime/magnetar/shared/daemon"
	"github.com/magnetar-runtime/magnetar/shared/mount"
	"github.com/magnetar-runtime/magnetar/shared/podinit"
	"github.com/magnetar-runtime/magnetar/shared/sandbox"
	"github.com/magnetar-runtime/magnetar/shared/task"
)

// Directories below the daemon's state directory.
const (
	containersDir = "containers" // one per application container: runsc's bundle, logs
	pauseDir      = "pause"      // the root containers' rootfs: the pause binary alone
)

// Sandboxer describes the gVisor sandboxer to the daemon.
func Sandboxer() daemon.Sandboxer {
	return daemon.Sandboxer{
		Name:       Name,
		NewConfig:  func() daemon.Config { return DefaultConfig() },
		Build:      build,
		ShimDelete: shimDelete,
	}
}

func build(env *daemon.Env, c daemon.Config) (sandbox.Driver, task.Backend, error) {
	cfg := c.(*Config)
	be := &backend{cfg: cfg, life: env.Life, dir: filepath.Join(env.Dir, containersDir), gofers: newGofers()}
	if err := os.MkdirAll(be.dir, 0o700); err != nil {
		return nil, nil, err
	}
	pause, err := pauseRootfs(env.Dir, cfg.Pod.PauseBinary)
	if err != nil {
		return nil, nil, fmt.Errorf("pause rootfs: %w", err)
	}
	go sweepOrphans(env.Life)
	return &driver{env: env, cfg: cfg, pause: pause, gofers: be.gofers}, be, nil
}

// pauseRootfs makes the root containers' rootfs below dir: a directory
// holding the pause binary alone (bin; "" is magnetar-podinit beside this
// binary, else this binary, which runs as a pod init with podinit.Arg). It
// is (re)written at every start, atomically: a running pod's pause keeps
// the file it runs.
func pauseRootfs(dir, bin string) (string, error) {
	if bin == "" {
		self, err := os.Executable()
		if err != nil {
			return "", err
		}
		bin = self
		small := filepath.Join(filepath.Dir(self), podinit.Binary)
		if fi, err := os.Stat(small); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			bin = small
		}
	}
	root := filepath.Join(dir, pauseDir)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", err
	}
	// the pause runs as an unprivileged user inside the sandbox
	if err := os.Chmod(root, 0o755); err != nil {
		return "", err
	}
	src, err := os.Open(bin)
	if err != nil {
		return "", err
	}
	defer src.Close()
	tmp, err := os.CreateTemp(root, ".pause-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, src); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(root, strings.TrimPrefix(pauseBinary, "/"))); err != nil {
		return "", err
	}
	return root, nil
}

// shimDelete cleans up after containerd lost a task connection: the
// container is deleted from runsc (its sandbox goes on: it is the pod's),
// its rootfs unmounted, our directory removed.
func shimDelete(ctx context.Context, id, bundleDir string) (*daemon.ShimExit, error) {
	exit := &daemon.ShimExit{Status: 128 + uint32(syscall.SIGKILL), At: time.Now()}
	var note struct {
		Runsc string `json:"runsc"`
		Root  string `json:"root"`
		Flags string `json:"flags"`
		Dir   string `json:"dir"`
	}
	if ok, err := bundle.ReadNote(bundleDir, bundleNote, &note); !ok {
		return exit, err
	}
	if note.Runsc != "" && filepath.IsAbs(note.Root) {
		cli := &runsc.CLI{Binary: note.Runsc, Root: note.Root}
		if note.Flags != "" {
			cli.Flags = strings.Split(note.Flags, "\n")
		}
		log := os.DevNull
		if note.Dir != "" && filepath.Base(note.Dir) == id {
			log = filepath.Join(note.Dir, runscLog)
		}
		if st, err := cli.State(ctx, log, id); err == nil && st.Pid > 0 {
			exit.Pid = uint32(st.Pid)
		}
		_ = cli.DeleteForce(ctx, log, id)
	}
	_ = mount.UnmountAll(filepath.Join(bundleDir, "rootfs"))
	if note.Dir != "" && filepath.Base(note.Dir) == id {
		_ = os.RemoveAll(note.Dir)
	}
	bundle.RemoveNotes(bundleDir, bundleNote)
	return exit, nil
}
