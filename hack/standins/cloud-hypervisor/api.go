package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/magnetar-runtime/magnetar/shared/clhapi"
	"github.com/magnetar-runtime/magnetar/shared/clhapi/clhvalidate"
	"github.com/magnetar-runtime/magnetar/shared/transport"
)

// undocumentedErrors are the statuses the stand-in answers where the
// document lists none for the operation: 400 for a body that does not
// validate (the document lists it on the add-* operations only) and 500 for
// an action that failed (listed on some operations only). Cloud
// Hypervisor's HTTP server answers both on every endpoint.
var undocumentedErrors = []int{http.StatusBadRequest, http.StatusInternalServerError}

// server is the REST API and the VM behind it.
type server struct {
	v    *clhvalidate.Validator
	priv paths
	// exit receives the stand-in's exit status (vmm.shutdown, the VM's
	// end).
	exit chan int

	// bugs are responses that failed validation (never sent); last is the
	// last error answer's text, also when the document gives the status
	// no body (tests)
	bugs []string
	last string

	mu    sync.Mutex
	cfg   *clhapi.VmConfig
	state clhapi.VmState // "" before vm.create
	nets  []netDev
	m     *machine
}

func newServer(priv paths) (*server, error) {
	v, err := clhvalidate.New()
	if err != nil {
		return nil, err
	}
	return &server{v: v, priv: priv, exit: make(chan int, 1)}, nil
}

type connKey struct{}

// serve serves the API on l (its connections keep SCM_RIGHTS descriptors).
func (s *server) serve(l *net.UnixListener) {
	srv := &http.Server{Handler: s, ConnContext: func(ctx context.Context, c net.Conn) context.Context {
		return context.WithValue(ctx, connKey{}, c)
	}}
	go srv.Serve(transport.FDListener(l))
}

// answer is a handler's response: a status and a JSON body or an error
// text (only with an error status).
type answer struct {
	status int
	body   any
	text   string
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if p := recover(); p != nil {
			logf("panic serving %s %s: %v", r.Method, r.URL.Path, p)
			http.Error(w, "stand-in: internal error", http.StatusInternalServerError)
		}
	}()
	// the descriptors came with the request's first bytes, read with its
	// header; handle owns them
	var fds []*os.File
	if c, ok := r.Context().Value(connKey{}).(*transport.FDConn); ok {
		fds = c.TakeFDs()
	}
	refuse := func() {
		for _, f := range fds {
			f.Close()
		}
	}
	if len(r.TransferEncoding) > 0 {
		refuse()
		logf("refused %s %s: transfer encoding %v (the stand-in takes Content-Length bodies only)", r.Method, r.URL.Path, r.TransferEncoding)
		http.Error(w, "chunked transfer encoding is not supported", http.StatusBadRequest)
		return
	}
	ex, err := s.v.Request(r.Context(), r)
	if err != nil {
		refuse()
		logf("refused %s %s: %v", r.Method, r.URL.Path, err)
		switch {
		case errors.Is(err, clhvalidate.ErrMethodNotAllowed):
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		case errors.Is(err, clhvalidate.ErrUnknownOperation):
			http.Error(w, "no such endpoint", http.StatusNotFound)
		default:
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
		return
	}
	body, _ := io.ReadAll(r.Body)
	a := s.handle(ex, body, fds)
	if a.status >= 300 {
		logf("%s: %d %s", ex.Operation, a.status, a.text)
		s.mu.Lock()
		s.last = a.text
		s.mu.Unlock()
	}
	var out []byte
	h := w.Header()
	if a.body != nil {
		out, _ = json.Marshal(a.body)
		h.Set("Content-Type", "application/json")
	} else if a.text != "" && !ex.Documented(a.status) {
		out = []byte(a.text)
		h.Set("Content-Type", "text/plain")
	}
	if err := ex.Response(r.Context(), a.status, h, out, undocumentedErrors...); err != nil {
		// never send what the document does not allow
		logf("BUG: response failed validation: %v", err)
		s.mu.Lock()
		s.bugs = append(s.bugs, err.Error())
		s.mu.Unlock()
		h.Del("Content-Type")
		http.Error(w, "stand-in: its response failed validation: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(a.status)
	w.Write(out)
	if ex.Operation == "PUT /vmm.shutdown" && a.status == http.StatusNoContent {
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		s.shutdown(0)
	}
}

// handle runs one validated operation. fds are the descriptors received
// with it; handle owns them.
func (s *server) handle(ex *clhvalidate.Exchange, body []byte, fds []*os.File) answer {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, op, _ := strings.Cut(ex.Operation, " ")
	if op != "/vm.add-net" {
		for _, f := range fds {
			f.Close()
		}
	}
	switch ex.Operation {
	case "GET /vmm.ping":
		pid := int64(os.Getpid())
		return answer{status: 200, body: clhapi.VmmPingResponse{Version: "53.0.0", BuildVersion: ptr("v53.0-246-gae44c2971c83 (magnetar stand-in)"),
			Pid: &pid, Features: &[]string{"kvm"}}}
	case "PUT /vmm.shutdown":
		return answer{status: 204}
	case "PUT /vm.create":
		return s.create(body)
	case "PUT /vm.delete":
		s.stopMachine()
		s.cfg, s.state = nil, ""
		s.closeNets()
		return answer{status: 204}
	case "PUT /vm.boot":
		return s.boot()
	case "GET /vm.info":
		if s.cfg == nil {
			return answer{status: 404, text: "VM is not created"}
		}
		info := clhapi.VmInfo{Config: *s.cfg, State: s.state}
		if s.cfg.Memory != nil {
			info.MemoryActualSize = &s.cfg.Memory.Size
		}
		return answer{status: 200, body: info}
	case "PUT /vm.shutdown":
		if a, ok := s.needBooted(); !ok {
			return a
		}
		s.stopMachine()
		s.state = clhapi.Shutdown
		return answer{status: 204}
	case "PUT /vm.add-net":
		return s.addNet(ex, body, fds)
	case "PUT /vm.pause", "PUT /vm.resume", "PUT /vm.reboot", "PUT /vm.power-button", "PUT /vm.nmi":
		return s.action(op)
	case "GET /vm.counters":
		if a, ok := s.needBooted(); !ok {
			return a
		}
		return answer{status: 200, body: clhapi.VmCounters{}}
	}
	return answer{status: 500, text: ex.Operation + ": not emulated by the Cloud Hypervisor stand-in"}
}

// needBooted is the answer for an action on a VM that is not created
// (404) or not booted (405).
func (s *server) needBooted() (answer, bool) {
	switch {
	case s.cfg == nil:
		return answer{status: 404, text: "VM is not created"}, false
	case s.m == nil:
		return answer{status: 405, text: "VM is not booted"}, false
	}
	return answer{}, true
}

func (s *server) create(body []byte) answer {
	if s.cfg != nil {
		return answer{status: 500, text: "VmAlreadyCreated: the VM is already created"}
	}
	if bad, err := s.notEmulated("/vm.create", body); err != nil || len(bad) > 0 {
		return answer{status: 500, text: notEmulatedText(bad, err)}
	}
	var c clhapi.VmConfig
	if err := json.Unmarshal(body, &c); err != nil {
		return answer{status: 400, text: err.Error()}
	}
	// what Cloud Hypervisor's validation refuses at once
	if c.Fs != nil && len(*c.Fs) > 0 && (c.Memory == nil || c.Memory.Shared == nil || !*c.Memory.Shared) {
		return answer{status: 500, text: "ValidationError: using fs requires shared memory (memory.shared)"}
	}
	if c.Cpus != nil && c.Cpus.MaxVcpus < c.Cpus.BootVcpus {
		return answer{status: 500, text: "ValidationError: max_vcpus below boot_vcpus"}
	}
	if c.Net != nil {
		for _, n := range *c.Net {
			s.nets = append(s.nets, netDev{cfg: n})
		}
	}
	s.cfg, s.state = &c, clhapi.Created
	return answer{status: 204}
}

func notEmulatedText(bad []string, err error) string {
	if err != nil {
		return "stand-in: " + err.Error()
	}
	return "not emulated by the Cloud Hypervisor stand-in: " + strings.Join(bad, ", ")
}

// notEmulated lists what of a body the stand-in cannot honour.
func (s *server) notEmulated(path string, body []byte) ([]string, error) {
	set, err := s.v.Set("PUT", path, body)
	if err != nil {
		return nil, err
	}
	var bad []string
	for _, p := range set {
		if !emulated[p] {
			bad = append(bad, p)
		}
	}
	return bad, nil
}

func (s *server) addNet(ex *clhvalidate.Exchange, body []byte, fds []*os.File) answer {
	closeAll := func() {
		for _, f := range fds {
			f.Close()
		}
	}
	if s.cfg == nil {
		closeAll()
		return answer{status: 404, text: "VM is not created"}
	}
	if s.m != nil {
		closeAll()
		return answer{status: 500, text: "hot-plug is not emulated by the Cloud Hypervisor stand-in (its QEMU microvm has no hot-plug): add NICs before vm.boot"}
	}
	if bad, err := s.notEmulated("/vm.add-net", body); err != nil || len(bad) > 0 {
		closeAll()
		return answer{status: 500, text: notEmulatedText(bad, err)}
	}
	var n clhapi.NetConfig
	if err := json.Unmarshal(body, &n); err != nil {
		closeAll()
		return answer{status: 400, text: err.Error()}
	}
	for _, d := range s.nets {
		if n.Id != nil && d.cfg.Id != nil && *n.Id == *d.cfg.Id {
			closeAll()
			return answer{status: 409, text: "a device with id " + *n.Id + " exists"}
		}
	}
	switch {
	case len(fds) > 1:
		closeAll()
		return answer{status: 500, text: fmt.Sprintf("%d tap descriptors: the stand-in emulates one queue pair", len(fds))}
	case len(fds) == 1:
		if err := isTap(fds[0]); err != nil {
			closeAll()
			return answer{status: 500, text: "the descriptor sent is not a tap: " + err.Error()}
		}
		s.nets = append(s.nets, netDev{cfg: n, tap: fds[0]})
	default:
		s.nets = append(s.nets, netDev{cfg: n})
	}
	// a cold add: the configuration shows it (vm.info)
	nets := []clhapi.NetConfig{}
	if s.cfg.Net != nil {
		nets = *s.cfg.Net
	}
	nets = append(nets, n)
	s.cfg.Net = &nets
	return answer{status: 204}
}

// isTap checks that f is a tap device (TUNGETIFF answers IFF_TAP).
func isTap(f *os.File) error {
	sc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ifr *unix.Ifreq
	var ierr error
	err = sc.Control(func(fd uintptr) {
		ifr, ierr = unix.NewIfreq("")
		if ierr == nil {
			ierr = unix.IoctlIfreq(int(fd), unix.TUNGETIFF, ifr)
		}
	})
	if err == nil {
		err = ierr
	}
	if err != nil {
		return fmt.Errorf("TUNGETIFF: %w", err)
	}
	if ifr.Uint16()&unix.IFF_TAP == 0 {
		return fmt.Errorf("%s is a tun, not a tap", ifr.Name())
	}
	return nil
}

func (s *server) boot() answer {
	if s.cfg == nil {
		return answer{status: 404, text: "VM is not created"}
	}
	if s.m != nil {
		return answer{status: 500, text: "VmAlreadyBooted: the VM is already booted"}
	}
	m, err := boot(s.cfg, s.nets, s.priv)
	if err != nil {
		return answer{status: 500, text: "VmBoot: " + err.Error()}
	}
	s.m, s.state = m, clhapi.Running
	go s.watch(m)
	return answer{status: 204}
}

// watch ends the stand-in when its QEMU ends on its own: the guest powered
// off (Cloud Hypervisor exits) or QEMU died (so does the VMM, for the
// driver).
func (s *server) watch(m *machine) {
	<-m.done
	stopping, guestOff, err := m.exit()
	if stopping {
		return
	}
	if guestOff {
		logf("the guest powered off: exiting")
		s.shutdown(0)
		return
	}
	logf("qemu exited unexpectedly (%v): exiting", err)
	s.shutdown(1)
}

// action runs a VM action on QEMU's monitor.
func (s *server) action(op string) answer {
	if a, ok := s.needBooted(); !ok {
		return a
	}
	cmd := map[string]string{"/vm.pause": "stop", "/vm.resume": "cont", "/vm.reboot": "system_reset",
		"/vm.power-button": "system_powerdown", "/vm.nmi": "inject-nmi"}[op]
	switch {
	case op == "/vm.pause" && s.state != clhapi.Running:
		return answer{status: 405, text: "VM is not running"}
	case op == "/vm.resume" && s.state != clhapi.Paused:
		return answer{status: 405, text: "VM is not paused"}
	}
	if err := s.m.execute(cmd); err != nil {
		return answer{status: 500, text: err.Error()}
	}
	switch op {
	case "/vm.pause":
		s.state = clhapi.Paused
	case "/vm.resume":
		s.state = clhapi.Running
	}
	return answer{status: 204}
}

// stopMachine ends the running QEMU (vm.shutdown: the guest is not asked).
func (s *server) stopMachine() {
	if s.m != nil {
		s.m.kill()
		s.m = nil
	}
}

func (s *server) closeNets() {
	for _, n := range s.nets {
		if n.tap != nil {
			n.tap.Close()
		}
	}
	s.nets = nil
}

// shutdown ends the VM and makes the stand-in exit with code.
func (s *server) shutdown(code int) {
	s.mu.Lock()
	s.stopMachine()
	s.mu.Unlock()
	select {
	case s.exit <- code:
	default:
	}
}

func ptr[T any](v T) *T { return &v }
