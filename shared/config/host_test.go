package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte("#!/bin/sh\nexit 0\n"), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

func TestExecutableSearchesPath(t *testing.T) {
	empty, noexec, good := t.TempDir(), t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(noexec, "tool"), 0o644)
	writeFile(t, filepath.Join(good, "tool"), 0o755)

	t.Setenv("PATH", strings.Join([]string{empty, "", ".", noexec, good}, string(filepath.ListSeparator)))
	got, err := Executable("runc.binary", "tool")
	if err != nil || got != filepath.Join(good, "tool") {
		t.Errorf("Executable = %q, %v, want %s", got, err, filepath.Join(good, "tool"))
	}

	t.Setenv("PATH", strings.Join([]string{empty, noexec}, string(filepath.ListSeparator)))
	_, err = Executable("runc.binary", "tool")
	for _, want := range []string{`runc.binary = "tool"`, "PATH", empty, noexec, filepath.Join(noexec, "tool") + " is not executable"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("not in PATH: %v, want it to contain %q", err, want)
		}
	}

	t.Setenv("PATH", "")
	if _, err = Executable("runc.binary", "tool"); err == nil || !strings.Contains(err.Error(), "runc.binary") || !strings.Contains(err.Error(), "PATH") {
		t.Errorf("empty PATH: %v", err)
	}
}

func TestExecutablePath(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "good"), 0o755)
	writeFile(t, filepath.Join(dir, "noexec"), 0o600)
	if err := os.Symlink(filepath.Join(dir, "gone"), filepath.Join(dir, "dangling")); err != nil {
		t.Fatal(err)
	}
	if got, err := Executable("runc.binary", filepath.Join(dir, "good")); err != nil || got != filepath.Join(dir, "good") {
		t.Errorf("good: %q, %v", got, err)
	}
	for _, tc := range []struct{ value, want string }{
		{filepath.Join(dir, "missing"), "does not exist"},
		{filepath.Join(dir, "dangling"), "does not exist"},
		{dir, "not a regular file"},
		{filepath.Join(dir, "noexec"), "not executable"},
		{"bin/runc", "absolute"},
		{"", "empty"},
	} {
		_, err := Executable("runc.binary", tc.value)
		if err == nil || !strings.Contains(err.Error(), "runc.binary") || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.value) {
			t.Errorf("Executable(%q) = %v, want it to name runc.binary, the path and %q", tc.value, err, tc.want)
		}
	}
}

func TestExistingFile(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "kernel"), 0o600)
	if err := ExistingFile("vm.kernel", filepath.Join(dir, "kernel")); err != nil {
		t.Error(err)
	}
	for _, tc := range []struct{ value, want string }{
		{filepath.Join(dir, "missing"), "does not exist"},
		{dir, "not a regular file"},
		{"kernel", "absolute"},
	} {
		err := ExistingFile("vm.kernel", tc.value)
		if err == nil || !strings.Contains(err.Error(), "vm.kernel") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ExistingFile(%q) = %v, want it to name vm.kernel and %q", tc.value, err, tc.want)
		}
	}
}
