package config

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestPodRunDir(t *testing.T) {
	long := strings.Repeat("x", 200)
	d := PodRunDir("/run/magnetar/x", long)
	if filepath.Dir(d) != "/run/magnetar/x" || len(filepath.Base(d)) != PodRunDirNameLen {
		t.Errorf("PodRunDir: %q", d)
	}
	if d == PodRunDir("/run/magnetar/x", long+"y") {
		t.Error("two ids, one directory")
	}
}

func TestCheckRunDir(t *testing.T) {
	if err := CheckRunDir("/run/magnetar/x", "task.sock", "the sockets"); err != nil {
		t.Error(err)
	}
	if err := CheckRunDir("run", "task.sock", "the sockets"); err == nil || !strings.Contains(err.Error(), "run_dir") {
		t.Errorf("relative: %v", err)
	}
	// 107 bytes fit, 108 do not
	fit := "/" + strings.Repeat("r", 107-1-1-PodRunDirNameLen-1-len("task.sock"))
	if err := CheckRunDir(fit, "task.sock", "the sockets"); err != nil {
		t.Error(err)
	}
	if err := CheckRunDir(fit+"r", "task.sock", "the sockets"); err == nil || !strings.Contains(err.Error(), "too long for the sockets") {
		t.Errorf("108 bytes: %v", err)
	}
}
