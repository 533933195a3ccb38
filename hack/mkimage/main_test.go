package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// members reads a tarball into name -> header and name -> data.
func members(t *testing.T, b []byte) ([]*tar.Header, map[string][]byte) {
	t.Helper()
	var hs []*tar.Header
	data := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return hs, data
		}
		if err != nil {
			t.Fatal(err)
		}
		d, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
		data[h.Name] = d
	}
}

func testOptions(t *testing.T) Options {
	dir := t.TempDir()
	bin := filepath.Join(dir, "tool")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return Options{
		Tags:      []string{"docker.io/library/busybox:latest", "registry.k8s.io/e2e-test-images/busybox:1.29-2"},
		Files:     []string{bin + ":/bin/busybox", bin + ":/etc/motd:0600"},
		HardLinks: []string{"/bin/[:/bin/busybox", "/usr/sbin/httpd:/bin/busybox"},
		SymLinks:  []string{"/bin/sh2:busybox"},
		Dirs:      []string{"/tmp:1777", "/proc"},
		Env:       []string{"PATH=/bin"},
		Cmd:       []string{"sh"},
	}
}

func TestBuildDeterministicLayout(t *testing.T) {
	o := testOptions(t)
	a, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("two builds of the same inputs differ")
	}
	_, files := members(t, a)
	if string(files["oci-layout"]) != `{"imageLayoutVersion":"1.0.0"}` {
		t.Fatalf("oci-layout = %q", files["oci-layout"])
	}
	var idx index
	if err := json.Unmarshal(files["index.json"], &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 2 || idx.Manifests[0].Annotations[annotationCtrName] != o.Tags[0] ||
		idx.Manifests[1].Annotations[annotationRefName] != "1.29-2" {
		t.Fatalf("index = %+v", idx)
	}
	var m manifest
	if err := json.Unmarshal(files["blobs/sha256/"+strings.TrimPrefix(idx.Manifests[0].Digest, "sha256:")], &m); err != nil {
		t.Fatal(err)
	}
	lay := files["blobs/sha256/"+strings.TrimPrefix(m.Layers[0].Digest, "sha256:")]
	if digest(lay) != m.Layers[0].Digest || int64(len(lay)) != m.Layers[0].Size {
		t.Fatal("layer digest or size mismatch")
	}
	var cfg image
	if err := json.Unmarshal(files["blobs/sha256/"+strings.TrimPrefix(m.Config.Digest, "sha256:")], &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.RootFS.DiffIDs[0] != m.Layers[0].Digest || cfg.OS != "linux" || cfg.Config.Cmd[0] != "sh" {
		t.Fatalf("config = %+v", cfg)
	}

	hs, _ := members(t, lay)
	seen := map[string]*tar.Header{}
	for _, h := range hs {
		if h.Typeflag == tar.TypeLink && seen[h.Linkname] == nil {
			t.Fatalf("hard link %s precedes its target %s", h.Name, h.Linkname)
		}
		if d := filepath.Dir(strings.TrimSuffix(h.Name, "/")); d != "." && seen[d+"/"] == nil {
			t.Fatalf("%s precedes its parent directory", h.Name)
		}
		if h.Uid != 0 || h.Gid != 0 || h.ModTime.Unix() != 0 {
			t.Fatalf("%s: uid %d gid %d mtime %v", h.Name, h.Uid, h.Gid, h.ModTime)
		}
		seen[h.Name] = h
	}
	if seen["tmp/"].Mode != 0o1777 || seen["etc/motd"].Mode != 0o600 || seen["bin/busybox"].Mode != 0o755 {
		t.Fatal("modes not kept")
	}
	if seen["bin/sh2"].Typeflag != tar.TypeSymlink || seen["usr/sbin/httpd"].Linkname != "bin/busybox" {
		t.Fatal("links not kept")
	}
}

func TestBuildRejectsBadInput(t *testing.T) {
	for name, mut := range map[string]func(*Options){
		"no tag":           func(o *Options) { o.Tags = nil },
		"tag without tag":  func(o *Options) { o.Tags = []string{"docker.io/library/busybox"} },
		"digest reference": func(o *Options) { o.Tags = []string{"busybox@sha256:00"} },
		"dangling link":    func(o *Options) { o.HardLinks = []string{"/bin/x:/bin/nope"} },
		"duplicate path":   func(o *Options) { o.SymLinks = []string{"/bin/busybox:x"} },
		"bad mode":         func(o *Options) { o.Dirs = []string{"/tmp:99"} },
		"missing file":     func(o *Options) { o.Files = []string{"/nonexistent/x:/x"} },
	} {
		o := testOptions(t)
		mut(&o)
		if _, err := Build(o); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
