package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/magnetar-runtime/magnetar/shared/nsutil"
)

// readyTimeout bounds how long the command waits for the sandbox process
// to be ready.
const readyTimeout = 30 * time.Second

// logName is the stand-in's log, beside the pid file.
const logName = "quark-standin.log"

// bootConfig is what the command sends the sandbox process on its pipe.
type bootConfig struct {
	ID         string `json:"id"`
	Root       string `json:"root"`
	TaskSocket string `json:"task_socket"`
	// HostPid is the sandbox process's pid on the host: the pid containerd
	// names the sandbox's namespaces by (/proc/<pid>/ns/...).
	HostPid  int    `json:"host_pid"`
	Hostname string `json:"hostname,omitempty"`
	NewUTS   bool   `json:"new_uts,omitempty"`
	Cgroup   string `json:"cgroup,omitempty"`
	// Sysctls are the pod's, written in the sandbox's namespaces.
	Sysctls map[string]string `json:"sysctls,omitempty"`
	Verbose int               `json:"verbose,omitempty"`
}

// launch is `quark -r DIR sandbox --id ID --task-socket SOCK --pid-file
// FILE`: it starts the sandbox process, waits until it is ready, writes its
// pid and returns.
func launch(c *cmdline) (retErr error) {
	a := c.sandbox
	abs := func(what, p string) (string, error) {
		if p == "" {
			return "", fmt.Errorf("%s: empty", what)
		}
		return filepath.Abs(p)
	}
	root, err := abs("-r", c.global.root)
	if err != nil {
		return err
	}
	sock, err := abs("--task-socket", a.taskSocket)
	if err != nil {
		return err
	}
	pidFile, err := abs("--pid-file", a.pidFile)
	if err != nil {
		return err
	}
	if a.id == "" {
		return errors.New("--id: empty")
	}
	sp, err := loadSandboxSpec(root)
	if err != nil {
		return err
	}
	cfg := bootConfig{ID: a.id, Root: root, TaskSocket: sock, Hostname: sp.Hostname, Verbose: c.global.verbose}
	if sp.Linux != nil {
		cfg.Cgroup, cfg.Sysctls = sp.Linux.CgroupsPath, sp.Linux.Sysctl
	}
	// the namespaces: as Quark's CollectNamespaces, one of each kind the
	// spec lists without a path is new, one with a path is joined (the
	// stand-in joins a network namespace only); PID and mount namespaces
	// are always new
	flags := uintptr(unix.CLONE_NEWNS | unix.CLONE_NEWPID)
	var netns string
	for _, ns := range specNamespaces(sp) {
		switch {
		case ns.Path == "":
			switch ns.Type {
			case specs.NetworkNamespace:
				flags |= unix.CLONE_NEWNET
			case specs.IPCNamespace:
				flags |= unix.CLONE_NEWIPC
			case specs.UTSNamespace:
				flags |= unix.CLONE_NEWUTS
				cfg.NewUTS = true
			case specs.PIDNamespace, specs.MountNamespace:
			default:
				return fmt.Errorf("%s/config.json: linux.namespaces: a new %s namespace is not supported by the stand-in", root, ns.Type)
			}
		case ns.Type == specs.NetworkNamespace:
			if ok, err := nsutil.IsNSFile(ns.Path, nsutil.KindNet); err != nil || !ok {
				return fmt.Errorf("%s/config.json: network namespace %q: not a network namespace (%v)", root, ns.Path, err)
			}
			netns = ns.Path
		default:
			return fmt.Errorf("%s/config.json: linux.namespaces: joining the %s namespace %q is not supported by the stand-in", root, ns.Type, ns.Path)
		}
	}
	if cfg.Hostname != "" && !cfg.NewUTS {
		return fmt.Errorf("%s/config.json: hostname %q without a UTS namespace of its own", root, cfg.Hostname)
	}

	// the sandbox's root becomes a shared mount on the host (Quark's
	// MakeSandboxRootDirectory): what the host mounts below it from now on
	// reaches the sandbox's own mount namespace, a slave of this one
	if err := unix.Mount(root, root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s on itself: %w", root, err)
	}
	defer func() {
		if retErr != nil {
			_ = unix.Unmount(root, unix.MNT_DETACH)
		}
	}()
	if err := unix.Mount("", root, "", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s shared: %w", root, err)
	}

	logf, err := os.OpenFile(filepath.Join(filepath.Dir(pidFile), logName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("log: %w", err)
	}
	defer logf.Close()
	// what it was run with, and from where, for the tests to check
	wd, _ := os.Getwd()
	fmt.Fprintf(logf, "time=%q level=info msg=\"quark command\" args=%q cwd=%q\n", time.Now().Format(time.RFC3339), strings.Join(os.Args[1:], " "), wd)
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer cfgW.Close()
	stR, stW, err := os.Pipe()
	if err != nil {
		cfgR.Close()
		return err
	}
	defer stR.Close()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "boot", "--pipefd", "3")
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{cfgR, stW} // fds 3 and 4
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Cloneflags: flags}
	start := cmd.Start
	if netns != "" {
		start = func() error { return nsutil.Do(netns, nsutil.KindNet, cmd.Start) }
	}
	err = start()
	cfgR.Close()
	stW.Close()
	if err != nil {
		return fmt.Errorf("starting the sandbox process: %w", err)
	}
	pid := cmd.Process.Pid
	defer func() {
		if retErr != nil {
			_ = cmd.Process.Kill()
			_, _ = cmd.Process.Wait()
		}
	}()
	cfg.HostPid = pid
	if err := json.NewEncoder(cfgW).Encode(&cfg); err != nil {
		return fmt.Errorf("configuring the sandbox process: %w", err)
	}
	cfgW.Close()
	if err := awaitReady(stR); err != nil {
		return err
	}
	// O_CREAT|O_WRONLY, as Quark writes it
	if err := os.WriteFile(pidFile, []byte(fmt.Sprint(pid)), 0o644); err != nil {
		return fmt.Errorf("--pid-file: %w", err)
	}
	_ = cmd.Process.Release() // daemonized: its parent is ours to be now
	return nil
}

// awaitReady reads the sandbox process's status: "ok", or why it failed.
func awaitReady(r *os.File) error {
	_ = r.SetReadDeadline(time.Now().Add(readyTimeout))
	line, err := bufio.NewReader(r).ReadString('\n')
	switch {
	case strings.TrimSpace(line) == "ok":
		return nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("the sandbox process was not ready within %s", readyTimeout)
	case line != "":
		return fmt.Errorf("sandbox process: %s", strings.TrimSpace(line))
	case errors.Is(err, io.EOF):
		return errors.New("the sandbox process exited before it was ready (see " + logName + ")")
	}
	return fmt.Errorf("sandbox process: %v", err)
}

// loadSandboxSpec reads DIR/config.json, the pod's spec, as Quark's
// SandboxProcess::New does (a missing one makes Quark panic).
func loadSandboxSpec(root string) (*specs.Spec, error) {
	data, err := os.ReadFile(filepath.Join(root, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("the sandbox bundle (-r) has no config.json: %w", err)
	}
	var sp specs.Spec
	if err := json.Unmarshal(data, &sp); err != nil {
		return nil, fmt.Errorf("%s/config.json: %w", root, err)
	}
	if sp.Root == nil || sp.Root.Path == "" {
		return nil, fmt.Errorf("%s/config.json: no root.path", root)
	}
	rp := sp.Root.Path
	if !filepath.IsAbs(rp) {
		rp = filepath.Join(root, rp)
	}
	if fi, err := os.Stat(rp); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("%s/config.json: root.path %q: not a directory (%v)", root, sp.Root.Path, err)
	}
	return &sp, nil
}

func specNamespaces(sp *specs.Spec) []specs.LinuxNamespace {
	if sp.Linux == nil {
		return nil
	}
	return sp.Linux.Namespaces
}
