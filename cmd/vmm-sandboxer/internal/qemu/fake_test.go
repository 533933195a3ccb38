package qemu

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm/qmp/qmptest"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm/vmtest"
)

// fakeQEMUEnv makes the test binary act as QEMU (TestMain): its value is
// the behaviour, one of the fakeMode* constants.
const fakeQEMUEnv = "MAGNETAR_TEST_FAKE_QEMU"

const (
	// fakeModeServe serves QMP on the -qmp socket and exits on quit.
	fakeModeServe = "serve"
	// fakeModeIgnoreQuit answers quit but keeps running (and ignores SIGTERM).
	fakeModeIgnoreQuit = "ignore-quit"
	// fakeModeDie prints an error and exits 1 at once, as QEMU does with
	// a kernel it cannot load.
	fakeModeDie = "die"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeQEMUEnv); mode != "" {
		os.Exit(fakeQEMU(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// fakeQEMU stands in for qemu-system-x86_64 (started by the driver with
// QEMU's argv): it writes the console and pid files, listens on the -qmp
// socket and on the agent chardev socket, and serves QMP.
func fakeQEMU(mode string, args []string) int {
	var qmpPath, agentPath, console, pidfile string
	for i := 0; i+1 < len(args); i++ {
		v := args[i+1]
		switch {
		case args[i] == "-qmp":
			qmpPath = strings.TrimPrefix(strings.SplitN(v, ",", 2)[0], "unix:")
		case args[i] == "-chardev" && strings.HasPrefix(v, "socket,id=agent,path="):
			agentPath = strings.SplitN(strings.TrimPrefix(v, "socket,id=agent,path="), ",", 2)[0]
		case args[i] == "-chardev" && strings.HasPrefix(v, "file,id=console,path="):
			console = strings.TrimPrefix(v, "file,id=console,path=")
		case args[i] == "-pidfile":
			pidfile = v
		}
	}
	if mode == fakeModeDie {
		fmt.Fprintln(os.Stderr, "qemu-system-x86_64: fake: could not load kernel")
		return 1
	}
	if mode == fakeModeIgnoreQuit {
		signal.Ignore(syscall.SIGTERM, syscall.SIGINT)
	}
	_ = os.WriteFile(console, []byte(vmtest.FakeConsole+"\n"), 0o644)
	_ = os.WriteFile(pidfile, []byte(fmt.Sprintln(os.Getpid())), 0o644)
	if agentPath != "" {
		if l, err := net.Listen("unix", agentPath); err == nil {
			defer l.Close()
		}
	}
	l, err := net.Listen("unix", qmpPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake qemu:", err)
		return 1
	}
	for {
		c, err := l.Accept()
		if err != nil {
			return 1
		}
		if qmptest.Serve(c, qmptest.QEMU) && mode == fakeModeServe {
			return 0
		}
	}
}
