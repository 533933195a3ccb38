package stratovirt

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm/qmp/qmptest"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm/vmtest"
)

// fakeEnv makes the test binary act as StratoVirt (TestMain): its value is
// the behaviour, one of the fakeMode* constants; fakeDaemonEnv marks the
// daemon it forks.
const (
	fakeEnv       = "MAGNETAR_TEST_FAKE_STRATOVIRT"
	fakeDaemonEnv = "MAGNETAR_TEST_FAKE_STRATOVIRT_DAEMON"
)

const (
	// fakeModeServe daemonizes, serves QMP (qmp.md's) and exits on quit.
	fakeModeServe = "serve"
	// fakeModeIgnoreQuit answers quit but keeps running (and ignores SIGTERM).
	fakeModeIgnoreQuit = "ignore-quit"
	// fakeModeRefuse refuses its command line before daemonizing, as
	// StratoVirt does with an option it does not know.
	fakeModeRefuse = "refuse"
	// fakeModeDie daemonizes, then dies before serving QMP with its
	// reason in the -D log, as StratoVirt does with a kernel it cannot
	// load.
	fakeModeDie = "die"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeEnv); mode != "" {
		os.Exit(fakeStratoVirt(mode, os.Args[1:]))
	}
	code := m.Run()
	vmtest.RemoveStandins()
	os.Exit(code)
}

// fakeArgs are the parts of StratoVirt's command line the fake uses.
type fakeArgs struct {
	qmp, pidfile, log, console, agent string
	daemonize                         bool
}

func parseFake(args []string) fakeArgs {
	var f fakeArgs
	for i := 0; i < len(args); i++ {
		v := ""
		if i+1 < len(args) {
			v = args[i+1]
		}
		switch args[i] {
		case "-qmp":
			f.qmp = strings.TrimPrefix(strings.SplitN(v, ",", 2)[0], "unix:")
		case "-pidfile":
			f.pidfile = v
		case "-D":
			f.log = v
		case "-serial":
			f.console = strings.TrimPrefix(v, "file,path=")
		case "-chardev":
			if strings.HasPrefix(v, "socket,id=agent,path=") {
				f.agent = strings.SplitN(strings.TrimPrefix(v, "socket,id=agent,path="), ",", 2)[0]
			}
		case "-daemonize":
			f.daemonize = true
		}
	}
	return f
}

// fakeStratoVirt stands in for stratovirt (started by the driver with
// StratoVirt's argv): it daemonizes as StratoVirt does (the first process
// exits 0 once the daemon is forked; the daemon writes the pid file),
// writes the console, listens on the agent chardev socket, and serves
// qmp.md's QMP; it removes its pid file and QMP socket when it exits.
func fakeStratoVirt(mode string, args []string) int {
	f := parseFake(args)
	if os.Getenv(fakeDaemonEnv) == "" {
		if mode == fakeModeRefuse {
			fmt.Fprint(os.Stderr, "Found argument '-fake' which wasn't expected, or isn't valid in the context. Use '-h' or '-help' to get usage.\r\n")
			return 1
		}
		if !f.daemonize {
			fmt.Fprint(os.Stderr, "fake stratovirt: the driver must daemonize\r\n")
			return 1
		}
		if _, err := os.Stat(f.pidfile); err == nil {
			fmt.Fprint(os.Stderr, "Daemonize start failed: Pidfile path is existed yet.\r\n")
			return 1
		}
		self, _ := os.Executable()
		cmd := exec.Command(self, args...)
		cmd.Env = append(os.Environ(), fakeDaemonEnv+"=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	}
	// the daemon
	_ = os.WriteFile(f.pidfile, []byte(fmt.Sprint(os.Getpid())), 0o600)
	defer os.Remove(f.pidfile)
	logf, _ := os.OpenFile(f.log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if mode == fakeModeDie {
		fmt.Fprint(logf, "2026-01-01T00:00:00.000000000: [1][1][machine/src/lib.rs:1]:ERROR: Failed to realize micro VM.\r\n\r\nCaused by:\r\n    ELF-format kernel is not supported\r\n")
		return 1
	}
	if mode == fakeModeIgnoreQuit {
		signal.Ignore(syscall.SIGTERM, syscall.SIGINT)
	}
	_ = os.WriteFile(f.console, []byte(vmtest.FakeConsole+"\n"), 0o644)
	if f.agent != "" {
		if l, err := net.Listen("unix", f.agent); err == nil {
			defer l.Close()
		}
	}
	l, err := net.Listen("unix", f.qmp)
	if err != nil {
		fmt.Fprintln(logf, "fake stratovirt:", err)
		return 1
	}
	defer l.Close()
	for {
		c, err := l.Accept()
		if err != nil {
			return 1
		}
		if qmptest.Serve(c, qmptest.StratoVirt) && mode == fakeModeServe {
			return 0
		}
	}
}
