package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/magnetar-runtime/magnetar/hack/standins/stratovirt/guidebook"
	"github.com/magnetar-runtime/magnetar/hack/vm/guestvm"
)

// daemonEnv marks the stand-in's daemon: the process -daemonize forks
// (here: the stand-in run again with the same command line and
// descriptors, in a session of its own).
const daemonEnv = "MAGNETAR_STRATOVIRT_STANDIN_DAEMON"

func main() {
	// QEMU's parent-death signal fires when the thread that started it
	// exits: it is started from this one, which lives as long as the
	// process
	runtime.LockOSThread()
	os.Exit(run(os.Args[1:], os.Getenv(daemonEnv) == "1"))
}

// logger writes StratoVirt's log lines: to -D's file, else stderr.
type logger struct{ w io.Writer }

// errorLine logs msg at ERROR in StratoVirt's layout.
func (l logger) errorLine(msg string) {
	now := time.Now().UTC()
	fmt.Fprintf(l.w, "%s: [%d][%d][standin:0]:ERROR: %s\n", now.Format("2006-01-02T15:04:05.000000000"), os.Getpid(), unix.Gettid(), msg)
}

// openLog is StratoVirt's logger, set up before anything else: -D with a
// file appends to it, otherwise stderr.
func openLog(argv []string) (logger, *os.File) {
	for i, a := range argv {
		if a == "-D" && i+1 < len(argv) && len(argv[i+1]) > 0 && argv[i+1][0] != '-' {
			f, err := os.OpenFile(argv[i+1], os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
			if err == nil {
				return logger{f}, f
			}
		}
	}
	return logger{os.Stderr}, nil
}

// run is StratoVirt's main: the command line, then daemonizing (the first
// process forks the daemon and exits 0), then the machine (the daemon, or
// the only process without -daemonize). It returns the exit code.
func run(argv []string, daemon bool) int {
	g := guidebook.Parse()
	lg, logFile := openLog(argv)
	if logFile != nil {
		defer logFile.Close()
	}
	fail := func(err error) int {
		// StratoVirt's main prints the error chain ({:?}) and \r\n
		fmt.Fprintf(os.Stderr, "%s\r\n", err)
		return 1
	}
	args, err := parseArgs(g, argv)
	if err != nil {
		return fail(err)
	}
	cfg, err := createVMConfig(g, args)
	if err != nil {
		lg.errorLine(fmt.Sprintf("Failed to create vmconfig %s", err))
		return fail(err)
	}
	// real_main: its errors are logged, not printed
	switch {
	case !cfg.daemon && cfg.pidfile != "":
		lg.errorLine("-pidfile must be used with -daemonize together.\r\n")
		return 1
	case cfg.daemon && !daemon:
		if _, err := os.Stat(cfg.pidfile); cfg.pidfile != "" && err == nil {
			lg.errorLine("Daemonize start failed: Pidfile path is existed yet.\r\n")
			return 1
		}
		if err := forkDaemon(argv); err != nil {
			lg.errorLine(fmt.Sprintf("Daemonize start failed: %v\r\n", err))
			return 1
		}
		return 0
	case daemon && cfg.pidfile != "":
		if err := os.WriteFile(cfg.pidfile, []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
			lg.errorLine(fmt.Sprintf("Daemonize start failed: %v\r\n", err))
			return 1
		}
		defer os.Remove(cfg.pidfile)
	}
	return runVM(g, cfg, lg)
}

// forkDaemon starts the daemon: this program again with the same command
// line, in a session of its own, stdio on /dev/null, inheriting every
// descriptor the first process inherited (StratoVirt forks: a tap's fd=3
// is fd 3 in the daemon too).
func forkDaemon(argv []string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer null.Close()
	cmd := exec.Command(self, argv...)
	cmd.Env = append(os.Environ(), daemonEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = null, null, null
	cmd.ExtraFiles = inherited()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	return cmd.Process.Release()
}

// inherited are the descriptors from 3 up this process got from its
// parent (those without close-on-exec: Go opens its own with it), as
// ExtraFiles at their numbers (nil: not inherited).
func inherited() []*os.File {
	ents, _ := os.ReadDir("/proc/self/fd")
	var files []*os.File
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd < 3 {
			continue
		}
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC != 0 {
			continue
		}
		for len(files) < fd-2 {
			files = append(files, nil)
		}
		files[fd-3] = os.NewFile(uintptr(fd), "inherited-"+e.Name())
	}
	return files
}

// fileAt are fds as ExtraFiles at their numbers.
func fileAt(fds []int) []*os.File {
	var files []*os.File
	for _, fd := range fds {
		for len(files) < fd-2 {
			files = append(files, nil)
		}
		files[fd-3] = os.NewFile(uintptr(fd), "fd-"+strconv.Itoa(fd))
	}
	return files
}

// machine is the running VM: QEMU under the stand-in.
type machine struct {
	qemu *exec.Cmd
	done chan struct{}
}

func (m *machine) signal(sig syscall.Signal) error {
	select {
	case <-m.done:
		return errors.New("the VM has ended")
	default:
	}
	return m.qemu.Process.Signal(sig)
}

func (m *machine) pause() error  { return m.signal(syscall.SIGSTOP) }
func (m *machine) resume() error { return m.signal(syscall.SIGCONT) }

// waitMonitor waits for the greeting of QEMU's monitor on the abstract
// socket name, or QEMU's exit.
func waitMonitor(name string, exited <-chan error) error {
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("qemu exited while the machine was built: %v", err)
		default:
		}
		c, err := net.Dial("unix", "@"+name)
		if err == nil {
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			line, rerr := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if rerr == nil && strings.Contains(line, `"QMP"`) {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// quit ends QEMU (as StratoVirt's own end ends the guest), killing it if
// it has not gone in 5 s.
func (m *machine) quit() {
	_ = m.signal(syscall.SIGCONT)
	_ = m.signal(syscall.SIGTERM)
	go func() {
		select {
		case <-m.done:
		case <-time.After(5 * time.Second):
			_ = m.signal(syscall.SIGKILL)
		}
	}()
}

// runVM builds the machine (realize: StratoVirt's device checks), opens
// the QMP socket, boots the guest with QEMU and serves QMP until QEMU
// exits, which ends the stand-in. StratoVirt removes its QMP socket (and
// pid file) when it exits.
func runVM(g *guidebook.Grammar, cfg *vmConfig, lg logger) int {
	p, err := realize(g, cfg)
	if err != nil {
		lg.errorLine(err.Error() + "\r\n")
		return 1
	}
	tsc, err := guestvm.TSCkHz()
	if err != nil {
		tsc = 0
	}
	args, fds := qemuArgs(p, tsc)
	// QEMU's own monitor, on an abstract socket (nothing left on disk):
	// its greeting says the machine is built, devices connected
	mon := fmt.Sprintf("magnetar-stratovirt-standin-%d", os.Getpid())
	args = append(args, "-chardev", "socket,id=sv-mon,path="+mon+",abstract=on,server=on,wait=off", "-mon", "chardev=sv-mon,mode=control")
	cmd := exec.Command(qemuBinary(), args...)
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = lg.w, lg.w
	cmd.ExtraFiles = fileAt(fds)
	cmd.Dir = "/"
	// the VM dies with its VMM, as StratoVirt's guest does
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lg.errorLine(withContext("Failed to start VM.", err).Error() + "\r\n")
		return 1
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// StratoVirt serves QMP from its main loop, once the machine is built
	// (its devices connected to their backends, virtiofsd included): so
	// does the stand-in, once QEMU's monitor greets
	if err := waitMonitor(mon, exited); err != nil {
		lg.errorLine(withContext("Failed to realize micro VM.", err).Error() + "\r\n")
		_ = cmd.Process.Kill()
		return 1
	}
	var l net.Listener
	if p.qmpPath != "" {
		if fi, err := os.Lstat(p.qmpPath); err == nil && fi.Mode().Type() == fs.ModeSocket {
			_ = os.Remove(p.qmpPath)
		}
		if l, err = net.Listen("unix", p.qmpPath); err != nil {
			lg.errorLine(withContext(fmt.Sprintf("Failed to bind socket for path: %q", p.qmpPath), err).Error() + "\r\n")
			_ = cmd.Process.Kill()
			return 1
		}
		defer l.Close()
		_ = os.Chmod(p.qmpPath, 0o600)
	}
	m := &machine{qemu: cmd, done: make(chan struct{})}
	var qs *qmpServer
	if l != nil {
		qs = newQMPServer(l, m)
		go qs.serve()
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	go func() {
		for s := range sigs {
			n := int(s.(syscall.Signal))
			fmt.Fprintf(os.Stderr, "Received kill signal, signal number: %d \r\n", n)
			if qs != nil {
				qs.emit("SHUTDOWN", map[string]any{"guest": false, "reason": "Guest shutdown by signal " + strconv.Itoa(n)})
			}
			m.quit()
		}
	}()
	werr := <-exited
	close(m.done)
	if p.qmpPath != "" {
		_ = os.Remove(p.qmpPath)
	}
	if werr != nil {
		lg.errorLine(fmt.Sprintf("stratovirt stand-in: qemu ended: %v\r\n", werr))
		return 1
	}
	return 0
}
