package clh

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/magnetar-runtime/magnetar/shared/clhapi"
	"github.com/magnetar-runtime/magnetar/shared/clhapi/clhvalidate"
	"github.com/magnetar-runtime/magnetar/shared/transport"
)

// fakeCLHEnv makes the test binary act as Cloud Hypervisor (TestMain): its
// value is the behaviour, one of the fakeMode* constants.
const fakeCLHEnv = "MAGNETAR_TEST_FAKE_CLH"

const (
	// fakeModeServe serves the API and exits on vmm.shutdown.
	fakeModeServe = "serve"
	// fakeModeRefuseBoot answers vm.boot with 500.
	fakeModeRefuseBoot = "refuse-boot"
	// fakeModeIgnoreShutdown answers vmm.shutdown but keeps running (and
	// ignores SIGTERM).
	fakeModeIgnoreShutdown = "ignore-shutdown"
	// fakeModeDie prints an error and exits 1 at once.
	fakeModeDie = "die"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeCLHEnv); mode != "" {
		os.Exit(fakeCLHMain(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// fakeCLHMain stands in for cloud-hypervisor as the driver starts it
// (--api-socket path=<p>) for the driver's unit tests; the real stand-in
// (hack/standins/cloud-hypervisor, booting a guest) is TestVMConformance's.
func fakeCLHMain(mode string, args []string) int {
	if len(args) != 2 || args[0] != "--api-socket" || !strings.HasPrefix(args[1], "path=") {
		fmt.Fprintf(os.Stderr, "fake cloud-hypervisor: unexpected arguments %q\n", args)
		return 2
	}
	if mode == fakeModeDie {
		fmt.Fprintln(os.Stderr, "fake cloud-hypervisor: Error creating hypervisor")
		return 1
	}
	if mode == fakeModeIgnoreShutdown {
		signal.Ignore(syscall.SIGTERM, syscall.SIGINT)
	}
	f, err := newFake(strings.TrimPrefix(args[1], "path="), mode)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return f.serve()
}

// fake is a Cloud Hypervisor API that checks every request and response
// against the document (package clhvalidate).
type fake struct {
	mode   string
	socket string
	l      net.Listener
	v      *clhvalidate.Validator
	exit   chan int

	mu     sync.Mutex
	config *clhapi.VmConfig
	state  clhapi.VmState
	// nets are the vm.add-net bodies, with the descriptors received
	nets  []clhapi.NetConfig
	netFD [][]*os.File
	// errs are the exchanges the document does not allow
	errs  []string
	vsock net.Listener
}

func newFake(socket, mode string) (*fake, error) {
	if _, err := os.Lstat(socket); err == nil {
		return nil, fmt.Errorf("fake cloud-hypervisor: %s: address in use", socket)
	}
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: socket, Net: "unix"})
	if err != nil {
		return nil, err
	}
	ul.SetUnlinkOnClose(false)
	v, err := clhvalidate.New()
	if err != nil {
		ul.Close()
		return nil, err
	}
	return &fake{mode: mode, socket: socket, l: transport.FDListener(ul), v: v, exit: make(chan int, 1)}, nil
}

// serve serves until vmm.shutdown; it returns the exit code.
func (f *fake) serve() int {
	srv := &http.Server{Handler: f, ConnContext: func(ctx context.Context, c net.Conn) context.Context {
		return context.WithValue(ctx, connKey{}, c)
	}}
	go srv.Serve(f.l)
	code := <-f.exit
	for {
		if f.mode != fakeModeIgnoreShutdown {
			break
		}
		select {} // until killed
	}
	f.close()
	return code
}

func (f *fake) close() {
	f.l.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.vsock != nil {
		f.vsock.Close()
	}
	for _, fds := range f.netFD {
		for _, fd := range fds {
			fd.Close()
		}
	}
}

type connKey struct{}

func (f *fake) bad(format string, a ...any) {
	f.mu.Lock()
	f.errs = append(f.errs, fmt.Sprintf(format, a...))
	f.mu.Unlock()
	fmt.Fprintf(os.Stderr, "fake cloud-hypervisor: "+format+"\n", a...)
}

func (f *fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if len(r.TransferEncoding) > 0 {
		f.bad("%s %s: transfer encoding %v", r.Method, r.URL.Path, r.TransferEncoding)
		http.Error(w, "chunked bodies are not taken", http.StatusBadRequest)
		return
	}
	ex, err := f.v.Request(r.Context(), r)
	if err != nil {
		f.bad("%v", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	body, _ := io.ReadAll(r.Body)
	var fds []*os.File
	if c, ok := r.Context().Value(connKey{}).(*transport.FDConn); ok {
		fds = c.TakeFDs()
	}
	status, out := f.handle(ex.Operation, body, fds)
	var b []byte
	if out != nil {
		b, _ = json.Marshal(out)
		w.Header().Set("Content-Type", "application/json")
	}
	if err := ex.Response(r.Context(), status, w.Header(), b, http.StatusInternalServerError); err != nil {
		f.bad("response: %v", err)
	}
	w.WriteHeader(status)
	w.Write(b)
	if ex.Operation == "PUT /vmm.shutdown" {
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
		f.exit <- 0
	}
}

func (f *fake) handle(op string, body []byte, fds []*os.File) (int, any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch op {
	case "GET /vmm.ping":
		return 200, clhapi.VmmPingResponse{Version: "fake", Pid: ptr(int64(os.Getpid()))}
	case "PUT /vmm.shutdown":
		return 204, nil
	case "PUT /vm.create":
		if f.config != nil {
			return 500, nil
		}
		var c clhapi.VmConfig
		if err := json.Unmarshal(body, &c); err != nil {
			return 500, nil
		}
		f.config, f.state = &c, clhapi.Created
		return 204, nil
	case "PUT /vm.add-net":
		if f.config == nil {
			return 404, nil
		}
		var n clhapi.NetConfig
		json.Unmarshal(body, &n)
		f.nets, f.netFD = append(f.nets, n), append(f.netFD, fds)
		var ids []string
		for _, fd := range fds {
			var st syscall.Stat_t
			syscall.Fstat(int(fd.Fd()), &st)
			ids = append(ids, devIno(st))
		}
		fmt.Fprintf(os.Stderr, "fake cloud-hypervisor: vm.add-net %s: %s\n", *n.Id, strings.Join(ids, " "))
		if f.state == clhapi.Running {
			return 200, clhapi.PciDeviceInfo{Id: *n.Id, Bdf: "0000:00:0" + strconv.Itoa(4+len(f.nets)) + ".0"}
		}
		return 204, nil
	case "PUT /vm.boot":
		if f.config == nil {
			return 404, nil
		}
		if f.mode == fakeModeRefuseBoot {
			return 500, nil
		}
		if c := f.config.Serial; c != nil && c.File != nil {
			os.WriteFile(*c.File, []byte("fake guest booting\n"), 0o600)
		}
		if v := f.config.Vsock; v != nil {
			l, err := net.Listen("unix", v.Socket)
			if err != nil {
				return 500, nil
			}
			l.(*net.UnixListener).SetUnlinkOnClose(false)
			f.vsock = l
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
		}
		f.state = clhapi.Running
		return 204, nil
	case "GET /vm.info":
		if f.config == nil {
			return 404, nil
		}
		return 200, clhapi.VmInfo{Config: *f.config, State: f.state}
	case "PUT /vm.shutdown":
		if f.config == nil {
			return 404, nil
		}
		if f.state != clhapi.Running {
			return 405, nil
		}
		f.state = clhapi.Shutdown
		return 204, nil
	}
	return 500, nil
}

// startFake serves a fake API in this process on a socket in a fresh
// directory.
func startFake(t *testing.T, mode string) *fake {
	t.Helper()
	dir, err := os.MkdirTemp("", "clh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f, err := newFake(filepath.Join(dir, APISocket), mode)
	if err != nil {
		t.Fatal(err)
	}
	go f.serve()
	t.Cleanup(func() {
		f.close()
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, e := range f.errs {
			t.Errorf("fake cloud-hypervisor saw: %s", e)
		}
	})
	return f
}

// sameFile reports whether a and b are the same open file.
func sameFile(a, b *os.File) bool {
	var x, y syscall.Stat_t
	if syscall.Fstat(int(a.Fd()), &x) != nil || syscall.Fstat(int(b.Fd()), &y) != nil {
		return false
	}
	return x.Dev == y.Dev && x.Ino == y.Ino
}

func devIno(st syscall.Stat_t) string { return fmt.Sprintf("%d:%d", st.Dev, st.Ino) }
