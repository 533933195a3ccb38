package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// self is a daemon whose process is this test's.
func self(t *testing.T) *daemon {
	root := t.TempDir()
	p, err := os.FindProcess(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{h: handlers[0], root: root, state: filepath.Join(root, "lib"), run: filepath.Join(root, "run"),
		outside: filepath.Join(root, "outside"), fuzz: filepath.Join(root, "fuzz"), tag: "rpcfuzz-test", cgroupParent: "/rpcfuzz-test",
		cmd: &exec.Cmd{Process: p}}
	for _, dir := range []string{d.run, d.outside, d.fuzz} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(d.outside, "victim"), []byte(victimContent), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"state", "sandboxes"} {
		if err := os.MkdirAll(filepath.Join(d.state, dir), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(d.state, 0o700); err != nil {
		t.Fatal(err)
	}
	return d
}

func hasLine(lines []string, sub string) bool {
	for _, l := range lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

// The group check sees a process, a file outside, a sandbox's state and a
// mount that were not there before.
func TestSnapshotDiff(t *testing.T) {
	d := self(t)
	before := d.snapshot()
	if leaks := before.diff(d.snapshot(), d); len(leaks) != 0 {
		t.Fatalf("nothing changed, but: %v", leaks)
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if err := os.WriteFile(filepath.Join(d.outside, "escaped"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.outside, "victim"), []byte("overwritten"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(d.state, "sandboxes", "left"), 0o700); err != nil {
		t.Fatal(err)
	}
	after := d.snapshot()
	after.mounts[filepath.Join(d.state, "sandboxes", "left", "shm")]++
	leaks := before.diff(after, d)
	for _, want := range []string{"process left: ", "file created outside the state dir: " + filepath.Join(d.outside, "escaped"),
		"state left after removal: " + filepath.Join(d.state, "sandboxes", "left"), "mount left below the state dir",
		"file outside written through a symlink"} {
		if !hasLine(leaks, want) {
			t.Errorf("no %q in %v", want, leaks)
		}
	}
	if !d.watched("/etc") || !d.watched(d.outside+"/x") || d.watched("/tmp/SomeOtherTest/x") {
		t.Error("watched mount points")
	}
}

// The item-4 checks flag a socket, a record and a state dir open to
// others.
func TestSecurity(t *testing.T) {
	d := self(t)
	if v := d.security(); os.Getuid() == 0 && len(v) != 0 {
		t.Fatalf("a clean root: %v", v)
	}
	sock := filepath.Join(d.run, "x.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := listeningSockets(os.Getpid()); !hasLine(got, sock) {
		t.Fatalf("listening sockets %v, want %s", got, sock)
	}
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.state, "state", "rec"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.state, "open"), nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(d.state, "open"), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d.state, 0o755); err != nil {
		t.Fatal(err)
	}
	v := d.security()
	for _, want := range []string{"socket " + sock + " is 0666", "record " + filepath.Join(d.state, "state", "rec") + " is 0644",
		filepath.Join(d.state, "open") + " is 0666", "state dir " + d.state + ": 0755"} {
		if !hasLine(v, want) {
			t.Errorf("no %q in %v", want, v)
		}
	}
}
