package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReproducibleAndReadable(t *testing.T) {
	dir := t.TempDir()
	initBin := filepath.Join(dir, "init")
	mod := filepath.Join(dir, "a.ko")
	if err := os.WriteFile(initBin, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mod, []byte("odd-sized module"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"/modules/a.ko=" + mod, "/init=" + initBin, "/bin/x=" + mod + ":0700"}
	out1, out2 := filepath.Join(dir, "1.cpio"), filepath.Join(dir, "2.cpio")
	if err := run(out1, filepath.Join(dir, "m.json"), []string{"k=v"}, []string{"mod=" + mod}, args); err != nil {
		t.Fatal(err)
	}
	// a later mtime on the inputs must not change the output
	if err := os.Chtimes(mod, time0(), time0()); err != nil {
		t.Fatal(err)
	}
	if err := run(out2, "", nil, nil, args); err != nil {
		t.Fatal(err)
	}
	b1, _ := os.ReadFile(out1)
	b2, _ := os.ReadFile(out2)
	if !bytes.Equal(b1, b2) {
		t.Fatal("two builds differ")
	}
	if len(b1)%4 != 0 {
		t.Fatalf("archive length %d not 4-aligned", len(b1))
	}
	m, _ := os.ReadFile(filepath.Join(dir, "m.json"))
	for _, want := range []string{`"k": "v"`, `"/modules/a.ko"`, `"mode": "0700"`, `"mod": "`} {
		if !strings.Contains(string(m), want) {
			t.Errorf("manifest lacks %s:\n%s", want, m)
		}
	}
	cpio, err := exec.LookPath("cpio")
	if err != nil {
		t.Skip("no cpio to cross-check the archive")
	}
	cmd := exec.Command(cpio, "-t", "-v", "--quiet")
	cmd.Stdin = bytes.NewReader(b1)
	lst, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -t: %v\n%s", err, lst)
	}
	for _, want := range []string{"crw-------", "dev/console", "drwxrwxrwt", "tmp", "-rwxr-xr-x", "init", "-rwx------", "bin/x", "modules/a.ko"} {
		if !strings.Contains(string(lst), want) {
			t.Errorf("cpio listing lacks %q:\n%s", want, lst)
		}
	}
}

func TestBadArguments(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	os.WriteFile(f, nil, 0o644)
	for _, args := range [][]string{
		{"relative=" + f},
		{"/=" + f},
		{"/a=" + f, "/a=" + f},
		{"/a=" + f, "/a/b=" + f},
		{"/a=" + dir},
		{"/a=" + f + ":99"},
	} {
		if err := run(filepath.Join(dir, "o"), "", nil, nil, args); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

func time0() (t time.Time) { return time.Unix(1234567, 0) }
