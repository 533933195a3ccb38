package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/magnetar-runtime/magnetar/shared/cgroups"
	"github.com/magnetar-runtime/magnetar/shared/rpcserver"
	"github.com/magnetar-runtime/magnetar/shared/task"
	"github.com/magnetar-runtime/magnetar/shared/taskv2"
	"github.com/magnetar-runtime/magnetar/shared/transport"
)

// stateDir is the stand-in's private state (runc's root, task records)
// inside the sandbox root: a tmpfs mounted in the sandbox's own mount
// namespace only, gone with it.
const stateDir = ".quark-standin"

// sandboxLeaf is the cgroup, below the sandbox's, that the sandbox process
// runs in on a cgroup v2 host, beside the containers' (each named by its
// id, which as a containerd identifier never starts with "_").
const sandboxLeaf = "_sandbox"

// boot is the sandbox process (`quark boot --pipefd 3`, started by launch
// in its namespaces): it sets itself up, tells launch it is ready (or why
// not) on fd 4, and serves the Task API v2 until it is killed or shut down.
func boot(c *cmdline) error {
	fd, err := strconv.Atoi(c.boot.pipefd)
	if err != nil || fd < 3 {
		return fmt.Errorf("--pipefd %q: not a descriptor", c.boot.pipefd)
	}
	pipe := os.NewFile(uintptr(fd), "pipefd")
	status := os.NewFile(uintptr(fd+1), "status")
	var cfg bootConfig
	err = json.NewDecoder(pipe).Decode(&cfg)
	pipe.Close()
	if err == nil {
		err = serveSandbox(&cfg, status)
	}
	if err != nil && status != nil {
		fmt.Fprintf(status, "%v\n", err)
	}
	return err
}

// serveSandbox sets up the sandbox process and serves.
func serveSandbox(cfg *bootConfig, ready *os.File) error {
	level := "info"
	if cfg.Verbose > 0 {
		level = "debug"
	}
	_ = log.SetLevel(level)
	life, stop := context.WithCancel(context.Background())
	defer stop()
	life = log.WithLogger(life, log.G(life).WithFields(log.Fields{"standin": "quark", "sandbox_id": cfg.ID, "host_pid": cfg.HostPid}))
	if os.Getpid() != 1 {
		return fmt.Errorf("not PID 1 of a PID namespace of its own (pid %d)", os.Getpid())
	}
	// the mount namespace: a slave of the host's (nothing mounted here goes
	// back), its own /proc (this PID namespace's), a private state tmpfs
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("make / a slave: %w", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	// the pod's sysctls: /proc/sys/net is this network namespace's, the
	// IPC keys this IPC namespace's (the sandboxer refused the rest)
	for k, v := range cfg.Sysctls {
		p := filepath.Join("/proc/sys", strings.ReplaceAll(k, ".", "/"))
		if err := os.WriteFile(p, []byte(v), 0); err != nil {
			return fmt.Errorf("sysctl %s: %w", k, err)
		}
	}
	state := filepath.Join(cfg.Root, stateDir)
	if err := os.MkdirAll(state, 0o700); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", state, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0700"); err != nil {
		return fmt.Errorf("state tmpfs: %w", err)
	}
	if cfg.NewUTS && cfg.Hostname != "" {
		if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
			return fmt.Errorf("hostname: %w", err)
		}
	}
	cgroup := ""
	if cfg.Cgroup != "" {
		// the containers' cgroups are below the sandbox's; cgroup v2 lets
		// no process live in a cgroup whose children have controllers, so
		// there the sandbox process takes a leaf of its own beside them
		self := cfg.Cgroup
		if unified, _ := cgroups.Mode(); unified {
			self = path.Join(cfg.Cgroup, sandboxLeaf)
		}
		cg, err := cgroups.New(self)
		if err == nil {
			err = cg.AddProc(os.Getpid())
		}
		if err != nil {
			return fmt.Errorf("sandbox cgroup %s: %w", self, err)
		}
		if cgroup, err = cgroups.ResolvePath(cfg.Cgroup); err != nil {
			return err
		}
	}
	runc := os.Getenv("QUARK_STANDIN_RUNC")
	if runc == "" {
		var err error
		if runc, err = exec.LookPath("runc"); err != nil {
			return fmt.Errorf("runc (the stand-in runs containers with it): %w", err)
		}
	}
	b, err := newBackend(cfg.Root, state, runc, cfg.HostPid, cgroup)
	if err != nil {
		return err
	}
	svc, err := task.New(life, filepath.Join(state, "tasks"), b, nowhere{})
	if err != nil {
		return err
	}
	l, err := transport.Listen(cfg.TaskSocket)
	if err != nil {
		return fmt.Errorf("--task-socket: %w", err)
	}
	srv, err := rpcserver.NewTTRPC()
	if err != nil {
		return err
	}
	taskv2.Register(srv, &sandboxService{Service: svc, root: cfg.Root, quit: stop})
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		select {
		case s := <-sigs:
			log.G(life).WithField("signal", s).Info("stopping")
		case <-life.Done():
		}
		stop()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = srv.Shutdown(sctx) // answers in flight (a Shutdown's) leave first
		cancel()
		_ = srv.Close()
	}()
	go reapOrphans(life)
	log.G(life).WithFields(log.Fields{"root": cfg.Root, "task_socket": cfg.TaskSocket, "runc": runc, "cgroup": cgroup}).Info("sandbox serving Task API v2")
	fmt.Fprintln(ready, "ok")
	ready.Close()
	err = srv.Serve(life, l)
	_ = os.Remove(cfg.TaskSocket)
	if life.Err() != nil {
		return nil
	}
	return err
}

// nowhere drops the task events: Quark's sandbox publishes none either
// (its task server logs them), so an exit is learnt from Task.Wait.
type nowhere struct{}

func (nowhere) Publish(context.Context, string, string, proto.Message) {}

// orphanGrace is how long a child of the sandbox process may stay a zombie
// before reapOrphans reaps it: a container's init or exec is reaped at once
// by the watch that learns its exit (shared/proc), so a zombie older than
// this is an orphan the sandbox inherited as PID 1 of its namespace.
const orphanGrace = 2 * time.Second

// reapOrphans reaps the zombies no watch reaps: orphans of the containers
// that share the sandbox's PID namespace (Quark's kernel reaps them too).
func reapOrphans(ctx context.Context) {
	seen := map[int]time.Time{}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		zombies := map[int]bool{}
		tasks, _ := os.ReadDir("/proc/1/task")
		for _, task := range tasks {
			b, _ := os.ReadFile("/proc/1/task/" + task.Name() + "/children")
			for _, f := range strings.Fields(string(b)) {
				pid, err := strconv.Atoi(f)
				if err != nil {
					continue
				}
				st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
				if i := strings.LastIndexByte(string(st), ')'); i > 0 && strings.HasPrefix(string(st[i+1:]), " Z") {
					zombies[pid] = true
				}
			}
		}
		for pid := range seen {
			if !zombies[pid] {
				delete(seen, pid)
			}
		}
		for pid := range zombies {
			first, ok := seen[pid]
			switch {
			case !ok:
				seen[pid] = now
			case now.Sub(first) >= orphanGrace:
				var ws unix.WaitStatus
				if got, _ := unix.Wait4(pid, &ws, unix.WNOHANG, nil); got == pid {
					log.G(ctx).WithField("pid", pid).Debug("reaped an orphan")
				}
				delete(seen, pid)
			}
		}
	}
}
