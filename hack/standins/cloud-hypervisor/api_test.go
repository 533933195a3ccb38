package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// apiServer serves the API in this process (no QEMU: boots fail) on a
// socket in a fresh directory.
func apiServer(t *testing.T) (*server, string) {
	t.Helper()
	dir := shortDir(t)
	sock := filepath.Join(dir, "api.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := newServer(privatePaths(dir))
	if err != nil {
		t.Fatal(err)
	}
	s.serve(l)
	t.Cleanup(func() {
		l.Close()
		s.mu.Lock()
		defer s.mu.Unlock()
		s.stopMachine()
		s.closeNets()
		for _, b := range s.bugs {
			t.Errorf("a response failed validation: %s", b)
		}
	})
	return s, sock
}

// call sends one raw HTTP/1.1 request on a new connection, with fds as
// SCM_RIGHTS, and returns the status and body.
func call(t *testing.T, sock, method, path, ctype, body string, fds ...int) (int, string) {
	t.Helper()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s /api/v1%s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n", method, path)
	if ctype != "" {
		fmt.Fprintf(&b, "Content-Type: %s\r\n", ctype)
	}
	if strings.HasPrefix(body, "chunked:") {
		body = strings.TrimPrefix(body, "chunked:")
		fmt.Fprintf(&b, "Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(body), body)
	} else {
		fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := c.WriteMsgUnix(b.Bytes(), oob, nil); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

const js = "application/json"

// newTap opens a (non-persistent) tap: it goes with its descriptor.
func newTap(t *testing.T, name string) *os.File {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a tap needs root")
	}
	f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no /dev/net/tun: %v", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		t.Fatal(err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(int(f.Fd()), unix.TUNSETIFF, ifr); err != nil {
		f.Close()
		t.Skipf("TUNSETIFF: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestAPIExchanges drives the API as a client would (every response is
// checked against the document by the server itself: apiServer fails the
// test on any it had to replace) through the VM's states, without a boot.
func TestAPIExchanges(t *testing.T) {
	s, sock := apiServer(t)
	t.Setenv(qemuEnv, "/bin/false")
	body := string(driverBody(t))
	for _, c := range []struct {
		name, method, path, ctype, body string
		status                          int
		want                            string // in the body, or in the error text when the document gives the status no body
	}{
		{"ping", "GET", "/vmm.ping", "", "", 200, `"version":"53.0.0"`},
		{"info before create", "GET", "/vm.info", "", "", 404, ""},
		{"boot before create", "PUT", "/vm.boot", "", "", 404, ""},
		{"shutdown before create", "PUT", "/vm.shutdown", "", "", 404, ""},
		{"add-net before create", "PUT", "/vm.add-net", js, `{"id":"net0"}`, 404, ""},
		{"unknown endpoint", "PUT", "/vm.explode", "", "", 404, "no such endpoint"},
		{"wrong method", "GET", "/vm.create", "", "", 405, "method not allowed"},
		{"no payload", "PUT", "/vm.create", js, `{"cpus":{"boot_vcpus":1,"max_vcpus":1}}`, 400, "payload"},
		{"unknown property", "PUT", "/vm.create", js, `{"payload":{"kernel":"/k","kernal":"/k"}}`, 400, "payload.kernal"},
		{"text body", "PUT", "/vm.create", "text/plain", `{"payload":{}}`, 400, ""},
		{"chunked", "PUT", "/vm.create", js, `chunked:{"payload":{}}`, 400, "chunked"},
		{"a disk", "PUT", "/vm.create", js, `{"payload":{"kernel":"/k"},"disks":[{"path":"/img"}]}`, 500, "not emulated by the Cloud Hypervisor stand-in: disks[].path"},
		{"fs without shared memory", "PUT", "/vm.create", js, `{"payload":{"kernel":"/k"},"fs":[{"tag":"t","socket":"/s","num_queues":1,"queue_size":1024}]}`, 500, "shared memory"},
		{"create", "PUT", "/vm.create", js, body, 204, ""},
		{"create again", "PUT", "/vm.create", js, body, 500, "VmAlreadyCreated"},
		{"info", "GET", "/vm.info", "", "", 200, `"state":"Created"`},
		{"boot with a body", "PUT", "/vm.boot", js, `{}`, 400, ""},
		{"shutdown before boot", "PUT", "/vm.shutdown", "", "", 405, ""},
		{"pause before boot", "PUT", "/vm.pause", "", "", 405, ""},
		{"add-net without a tap", "PUT", "/vm.add-net", js, `{"id":"net9","mac":"02:00:00:00:00:09"}`, 204, ""},
		{"add-net same id", "PUT", "/vm.add-net", js, `{"id":"net9"}`, 409, ""},
		{"add-net with an ip", "PUT", "/vm.add-net", js, `{"id":"net8","ip":"10.0.0.1"}`, 500, "not emulated by the Cloud Hypervisor stand-in: ip"},
		{"boot fails (QEMU /bin/false)", "PUT", "/vm.boot", "", "", 500, "VmBoot"},
		{"resize", "PUT", "/vm.resize", js, `{"desired_vcpus":2}`, 500, "not emulated"},
		{"delete", "PUT", "/vm.delete", "", "", 204, ""},
		{"info after delete", "GET", "/vm.info", "", "", 404, ""},
		{"vmm.shutdown", "PUT", "/vmm.shutdown", "", "", 204, ""},
	} {
		status, got := call(t, sock, c.method, c.path, c.ctype, c.body)
		if got == "" && status >= 300 {
			s.mu.Lock()
			got = s.last
			s.mu.Unlock()
		}
		if status != c.status || !strings.Contains(got, c.want) {
			t.Errorf("%s: %d %q, want %d with %q", c.name, status, got, c.status, c.want)
		}
	}
	select {
	case code := <-s.exit:
		if code != 0 {
			t.Errorf("exit %d after vmm.shutdown", code)
		}
	case <-time.After(5 * time.Second):
		t.Error("vmm.shutdown did not end the stand-in")
	}
}

// TestAPITapDescriptors: vm.add-net takes the tap that comes with it
// (SCM_RIGHTS) and refuses a descriptor that is no tap.
func TestAPITapDescriptors(t *testing.T) {
	s, sock := apiServer(t)
	tap := newTap(t, fmt.Sprintf("clhsi%d", os.Getpid()%100000))
	if st, b := call(t, sock, "PUT", "/vm.create", js, string(driverBody(t))); st != 204 {
		t.Fatalf("create: %d %s", st, b)
	}
	if st, _ := call(t, sock, "PUT", "/vm.add-net", js, `{"id":"net0","mac":"02:00:00:00:00:01","num_queues":2}`, int(os.Stdin.Fd())); st != 500 || !strings.Contains(s.last, "not a tap") {
		t.Errorf("a descriptor that is no tap: %d %q", st, s.last)
	}
	if st, b := call(t, sock, "PUT", "/vm.add-net", js, `{"id":"net0","mac":"02:00:00:00:00:01","num_queues":2}`, int(tap.Fd())); st != 204 {
		t.Fatalf("add-net with a tap: %d %q", st, b)
	}
	s.mu.Lock()
	n := len(s.nets)
	got := n == 1 && s.nets[0].tap != nil
	s.mu.Unlock()
	if !got {
		t.Errorf("nets after add-net: %d", n)
	}
	if st, b := call(t, sock, "GET", "/vm.info", "", ""); st != 200 || !strings.Contains(b, `"net":[{"id":"net0"`) {
		t.Errorf("info after a cold add-net: %d %s", st, b)
	}
}
