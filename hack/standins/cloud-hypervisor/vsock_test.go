package main

import (
	"bufio"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakePort is the agent's virtio-serial port as QEMU's chardev socket shows
// it: it accepts one connection at a time and echoes lines back.
func fakePort(t *testing.T, path string) chan net.Conn {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	conns := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns <- c
			io.Copy(c, c)
			c.Close()
		}
	}()
	return conns
}

func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "vs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// connect writes CONNECT port and returns the answer line ("" when the
// stand-in closed the connection).
func connect(t *testing.T, sock string, port string) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "CONNECT "+port+"\n"); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	line, _ := r.ReadString('\n')
	return c, r, line
}

func TestMuxer(t *testing.T) {
	dir := shortDir(t)
	conns := fakePort(t, filepath.Join(dir, "agent"))
	sock := filepath.Join(dir, "vsock.sock")
	m, err := listenMuxer(sock, 1024, filepath.Join(dir, "agent"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	// before the guest listens: closed without an answer, as Cloud
	// Hypervisor does when nothing listens on the port
	if c, _, line := connect(t, sock, "1024"); line != "" {
		t.Errorf("before the agent listens: %q", line)
	} else {
		c.Close()
	}
	m.guestListening()
	for _, bad := range []string{"1025", "x"} {
		if c, _, line := connect(t, sock, bad); line != "" {
			t.Errorf("CONNECT %s: %q, want the connection closed", bad, line)
		} else {
			c.Close()
		}
	}
	c1, r1, line := connect(t, sock, "1024")
	if line != "OK 1073741824\n" {
		t.Fatalf("CONNECT 1024: %q", line)
	}
	<-conns
	io.WriteString(c1, "ping\n")
	if got, _ := r1.ReadString('\n'); got != "ping\n" {
		t.Errorf("echo through the bridge: %q", got)
	}
	// a second connection waits for the port, then gets the next host port
	done := make(chan string, 1)
	go func() {
		c2, _, line := connect(t, sock, "1024")
		defer c2.Close()
		done <- line
	}()
	select {
	case l := <-done:
		t.Fatalf("a second connection was answered while the first holds the port: %q", l)
	case <-time.After(300 * time.Millisecond):
	}
	c1.Close()
	select {
	case l := <-done:
		if l != "OK 1073741825\n" {
			t.Errorf("second connection: %q", l)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the second connection was not answered after the first closed")
	}
	// a reset ends the bridged connection
	c3, r3, line := connect(t, sock, "1024")
	if !strings.HasPrefix(line, "OK ") {
		t.Fatalf("third: %q", line)
	}
	defer c3.Close()
	time.Sleep(50 * time.Millisecond)
	m.reset()
	if _, err := r3.ReadString('\n'); err == nil {
		t.Error("the connection survived a reset")
	}
	m.close()
	if _, err := os.Lstat(sock); err == nil {
		t.Error("the vsock socket outlived its device")
	}
}
