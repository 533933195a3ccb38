package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
)

// version is what --version prints: the version whose interface the
// stand-in follows.
const version = "cloud-hypervisor v53.0-246-gae44c2971c83 (magnetar stand-in)"

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	c, err := parseArgs(args)
	if err != nil {
		return cliFail(err)
	}
	switch {
	case c.help:
		printUsage(os.Stdout)
		return 0
	case c.version:
		fmt.Println(version)
		return 0
	}
	// Cloud Hypervisor opens KVM before anything else (the stand-in runs
	// its guest under TCG, but refuses a host Cloud Hypervisor would)
	kvm, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		fmt.Fprintf(os.Stderr, "Error: Failed to create the hypervisor: %v\n", err)
		return 1
	}
	kvm.Close()
	if c.apiPath == "" && c.apiFD < 0 && c.vm == nil {
		fmt.Fprintln(os.Stderr, "Error: nothing to run: give --api-socket, a VM (--kernel ...), or both")
		return 1
	}
	var l *net.UnixListener
	dir, cleanupDir := "", func() {}
	switch {
	case c.apiPath != "":
		if _, err := os.Lstat(c.apiPath); err == nil {
			fmt.Fprintf(os.Stderr, "Error: Failed to start the HTTP API server: bind %s: address in use\n", c.apiPath)
			return 1
		}
		l, err = net.ListenUnix("unix", &net.UnixAddr{Name: c.apiPath, Net: "unix"})
		if err != nil {
			fmt.Fprintf(os.Stderr, "Error: Failed to start the HTTP API server: %v\n", err)
			return 1
		}
		// the socket stays after the VMM exits: its user removes it
		l.SetUnlinkOnClose(false)
		dir = filepath.Dir(c.apiPath)
	case c.apiFD >= 0:
		fl, err := net.FileListener(os.NewFile(uintptr(c.apiFD), "api-socket"))
		ul, ok := fl.(*net.UnixListener)
		if err != nil || !ok {
			fmt.Fprintf(os.Stderr, "Error: Failed to start the HTTP API server: fd %d is not a listening unix socket (%v)\n", c.apiFD, err)
			return 1
		}
		l = ul
	}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "clh-standin"); err != nil {
			fmt.Fprintf(os.Stderr, "Error: %v\n", err)
			return 1
		}
		d := dir
		cleanupDir = func() { os.RemoveAll(d) }
	}
	defer cleanupDir()
	priv := privatePaths(dir)
	defer func() {
		for _, f := range []string{priv.qmp, priv.agent} {
			if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
				logf("%v", err)
			}
		}
	}()
	s, err := newServer(priv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "Error: %v\n", err)
		return 1
	}
	if l != nil {
		s.serve(l)
		defer l.Close()
	}
	if c.vm != nil {
		body, _ := json.Marshal(c.vm)
		s.mu.Lock()
		a := s.create(body)
		if a.status == 204 {
			a = s.boot()
		}
		s.mu.Unlock()
		if a.status != 204 {
			fmt.Fprintf(os.Stderr, "Error: %s\n", a.text)
			s.shutdown(1)
			return 1
		}
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		n := <-sig
		logf("%s: exiting", n)
		s.shutdown(1)
	}()
	return <-s.exit
}
