package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	sandboxapi "github.com/containerd/containerd/api/services/sandbox/v1"
	"github.com/containerd/ttrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// handler is one sandboxer daemon under test.
type handler struct {
	// name is the short name ("runc", "clh").
	name string
	// daemon is the short name of the daemon serving it when that is
	// another's ("vmm" for "clh"): bin/DAEMON-sandboxer, DAEMON.sock;
	// empty: name.
	daemon string
	// sandboxer is the proxy plugin name requests carry.
	sandboxer string
	// config is the daemon's TOML configuration in the root d.root, or
	// why the handler cannot run here.
	config func(d *daemon) (string, error)
	// pods tells that a valid host-network pod can be created and started
	// without containerd (with -pods).
	pods bool
}

// daemonName is the short name of the daemon serving the handler.
func (h *handler) daemonName() string {
	if h.daemon != "" {
		return h.daemon
	}
	return h.name
}

var handlers = []*handler{
	{name: "runc", sandboxer: "magnetar-runc", pods: true, config: func(d *daemon) (string, error) {
		runc, err := tool(*runcBin, "runc")
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("[runc]\nbinary = %q\nroot = %q\n", runc, filepath.Join(d.root, "run", "runc-root")), nil
	}},
	{name: "wasm", sandboxer: "magnetar-wasm", pods: true, config: func(d *daemon) (string, error) {
		return "[engines]\nmagnetar-wasm = \"wasmtime\"\nmagnetar-wasm-wazero = \"wazero\"\n", nil
	}},
	// no VM boots: every hypervisor binary is absent, so that a Create is
	// refused (FailedPrecondition) before a VM would start; the kernel and
	// initramfs are empty files (checked for existence at start only)
	{name: "vmm", sandboxer: "magnetar-vmm", config: vmmConfig},
	// the same daemon's other hypervisors: the requests name their proxy
	// plugin, so that each driver's own checks run
	{name: "clh", daemon: "vmm", sandboxer: "magnetar-clh", config: vmmConfig},
	{name: "stratovirt", daemon: "vmm", sandboxer: "magnetar-stratovirt", config: vmmConfig},
	{name: "gvisor", sandboxer: "magnetar-gvisor", pods: true, config: func(d *daemon) (string, error) {
		runsc, err := tool(*runscBin, "runsc")
		if err != nil {
			return "", err
		}
		podinit, err := tool(filepath.Join(*binDir, "magnetar-podinit"), "")
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("[runsc]\nbinary = %q\n[pod]\ncgroup_parent = %q\npause_binary = %q\n", runsc, d.cgroupParent, podinit), nil
	}},
	{name: "quark", sandboxer: "magnetar-quark", config: func(d *daemon) (string, error) {
		quark, err := tool(*quarkBin, "")
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("run_dir = %q\n[quark]\nbinary = %q\nconfig_file = \"\"\n", filepath.Join(d.root, "run", "quark"), quark), nil
	}},
}

func vmmConfig(d *daemon) (string, error) {
	fake := filepath.Join(d.root, "guest")
	if err := os.MkdirAll(fake, 0o700); err != nil {
		return "", err
	}
	for _, f := range []string{"vmlinuz", "initramfs.cpio"} {
		if err := os.WriteFile(filepath.Join(fake, f), nil, 0o600); err != nil {
			return "", err
		}
	}
	absent := filepath.Join(d.root, "absent")
	var b strings.Builder
	fmt.Fprintf(&b, "run_dir = %q\n[vm]\nkernel = %q\ninitrd = %q\n", filepath.Join(d.root, "run", "vmm"),
		filepath.Join(fake, "vmlinuz"), filepath.Join(fake, "initramfs.cpio"))
	for _, s := range []string{"qemu", "cloud_hypervisor", "stratovirt"} {
		fmt.Fprintf(&b, "[%s]\nbinary = %q\nvirtiofsd = %q\n", s, filepath.Join(absent, s), filepath.Join(absent, "virtiofsd"))
	}
	return b.String(), nil
}

// tool resolves a helper binary: path when it is executable, else name in
// PATH (name "": none).
func tool(path, name string) (string, error) {
	if st, err := os.Stat(path); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
		return filepath.Abs(path)
	}
	if name != "" {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found (make tools / make quark-standin)", path)
}

// daemon is one running sandboxer in its own root:
//
//	ROOT/lib      --dir (the state dir)
//	ROOT/run      --listen NAME.sock, the task socket, keeper files, run dirs
//	ROOT/outside  where hostile requests point; must stay as it is
//	ROOT/fuzz     bundles and rootfs the cases make
type daemon struct {
	h                 *handler
	root, state, run  string
	outside, fuzz     string
	listen, taskSock  string
	cgroupParent, tag string
	nbundle           int
	cmd               *exec.Cmd
	exited            chan struct{}
	exitErr           error
	gconn             *grpc.ClientConn
	ctrl              sandboxapi.ControllerClient
	tconn             net.Conn
	tclient           *ttrpc.Client
	task              taskapi.TTRPCTaskService
	keeperPid         int
}

func newDaemon(h *handler, tag string) (*daemon, error) {
	// short: the run dirs' sockets must fit in sun_path
	root, err := os.MkdirTemp(*workDir, "rf-"+h.name+"-")
	if err != nil {
		return nil, err
	}
	d := &daemon{h: h, root: root, state: filepath.Join(root, "lib"), run: filepath.Join(root, "run"),
		outside: filepath.Join(root, "outside"), fuzz: filepath.Join(root, "fuzz"),
		cgroupParent: "/rpcfuzz-" + tag, tag: "rpcfuzz-" + tag}
	d.listen = filepath.Join(d.run, h.daemonName()+".sock")
	d.taskSock = filepath.Join(d.run, h.daemonName()+"-task.sock")
	// outside/target: where the bundles' symlinks point; outside/ns-link:
	// a network namespace by a symlink
	for _, p := range []string{d.run, filepath.Join(d.outside, "target"), d.fuzz} {
		if err := os.MkdirAll(p, 0o700); err != nil {
			return nil, err
		}
	}
	if err := os.Symlink("/proc/1/ns/net", filepath.Join(d.outside, "ns-link")); err != nil {
		return nil, err
	}
	// outside/victim: a file symlinks in bundles point to; must keep its content
	if err := os.WriteFile(filepath.Join(d.outside, "victim"), []byte(victimContent), 0o600); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *daemon) start() error {
	cfg, err := d.h.config(d)
	if err != nil {
		return errSkip{err}
	}
	cfgPath := filepath.Join(d.root, d.h.daemonName()+".toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return err
	}
	bin, err := tool(filepath.Join(*binDir, d.h.daemonName()+"-sandboxer"), "")
	if err != nil {
		return errSkip{err}
	}
	logf, err := os.OpenFile(filepath.Join(d.root, "daemon.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	// no containerd: events go to a socket nobody serves (the daemon's
	// queue drops them)
	d.cmd = exec.Command(bin, "--listen", d.listen, "--dir", d.state, "--config", cfgPath,
		"--containerd-address", filepath.Join(d.run, "containerd.sock.ttrpc"), "--log-level", *logLevel)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := d.cmd.Start(); err != nil {
		return err
	}
	d.exited = make(chan struct{})
	go func() { d.exitErr = d.cmd.Wait(); close(d.exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if !d.alive() {
			return fmt.Errorf("the daemon exited at start (%v): %s", d.exitErr, tail(filepath.Join(d.root, "daemon.log")))
		}
		if _, err := os.Stat(d.listen); err == nil {
			if _, err := d.keeper(); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the daemon did not listen on %s within 30 s: %s", d.listen, tail(filepath.Join(d.root, "daemon.log")))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d.gconn, err = grpc.NewClient("unix://"+d.listen, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		return err
	}
	d.ctrl = sandboxapi.NewControllerClient(d.gconn)
	// the keeper accepts before the daemon serves behind it
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := d.ctrl.Platform(ctx, &sandboxapi.ControllerPlatformRequest{SandboxID: "rpcfuzz-probe"})
		cancel()
		if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded {
			break
		}
		if time.Now().After(deadline) || !d.alive() {
			return fmt.Errorf("the daemon does not answer: %v: %s", err, tail(filepath.Join(d.root, "daemon.log")))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := d.redialTask(); err != nil {
		return err
	}
	d.keeperPid, _ = d.keeper()
	return nil
}

// redialTask (re)connects the Task API client: a request the server
// cannot read may end the connection.
func (d *daemon) redialTask() error {
	if d.tclient != nil {
		d.tclient.Close()
	}
	c, err := net.DialTimeout("unix", d.taskSock, 5*time.Second)
	if err != nil {
		return fmt.Errorf("task socket: %w", err)
	}
	d.tconn = c
	d.tclient = ttrpc.NewClient(c)
	d.task = taskapi.NewTTRPCTaskClient(d.tclient)
	return nil
}

func (d *daemon) alive() bool {
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

// keeper reads the pid of the daemon's task keeper.
func (d *daemon) keeper() (int, error) {
	b, err := os.ReadFile(filepath.Join(d.run, d.h.daemonName()+"-keeper.pid"))
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("keeper pid file: %q", b)
	}
	return pid, nil
}

// stop ends the daemon (SIGTERM, then SIGKILL after 10 s) and its keeper.
func (d *daemon) stop() {
	if d.tclient != nil {
		d.tclient.Close()
	}
	if d.gconn != nil {
		d.gconn.Close()
	}
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
	}
	if pid, err := d.keeper(); err == nil {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		for i := 0; i < 100 && syscall.Kill(pid, 0) == nil; i++ {
			time.Sleep(20 * time.Millisecond)
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

const victimContent = "rpcfuzz victim: must not change\n"

// errSkip is a handler that cannot run on this machine (a binary missing).
type errSkip struct{ error }

func isSkip(err error) bool {
	var s errSkip
	return errors.As(err, &s)
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 8 {
		lines = lines[len(lines)-8:]
	}
	return strings.Join(lines, "\n")
}
