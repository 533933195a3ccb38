// Command mkimage builds a single-layer linux/amd64 container image from host
// files, without a registry or a container engine, and writes it as an OCI
// image-layout tarball (an "OCI archive") that `ctr images import` accepts.
//
// The output is deterministic: the same inputs give byte-identical tarballs
// (fixed timestamps, root ownership, sorted entries, uncompressed layer).
//
// Usage:
//
//	mkimage -o out.tar -t docker.io/library/busybox:latest [-t other:tag] \
//	  -f /host/file:/image/path[:octal-mode] ...   regular file copied from the host
//	  -H /image/link:/image/existing ...           hard link to a file added with -f
//	  -l /image/link:target ...                    symbolic link
//	  -d /image/dir[:octal-mode] ...               directory (parents are implied)
//	  -entrypoint '["/pause"]' -cmd '["sh"]' -env KEY=VALUE -user 0:0 -workdir /
//
// Each -t becomes one index.json entry carrying the annotation
// io.containerd.image.name (the full reference, which containerd's importer
// uses as the image name) and org.opencontainers.image.ref.name (the tag).
//
// Only the standard library is used; the few image-spec types needed are
// declared below.
package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Media types and annotations (OCI image-spec v1.1, containerd).
const (
	mediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	mediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	mediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar"
	annotationRefName = "org.opencontainers.image.ref.name"
	annotationCtrName = "io.containerd.image.name"
)

// epoch is the timestamp of every tar entry (and of the archive itself).
var epoch = time.Unix(0, 0).UTC()

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *platform         `json:"platform,omitempty"`
}

type imageConfig struct {
	User       string   `json:"User,omitempty"`
	Env        []string `json:"Env,omitempty"`
	Entrypoint []string `json:"Entrypoint,omitempty"`
	Cmd        []string `json:"Cmd,omitempty"`
	WorkingDir string   `json:"WorkingDir,omitempty"`
}

type image struct {
	Created      string      `json:"created"`
	Architecture string      `json:"architecture"`
	OS           string      `json:"os"`
	Config       imageConfig `json:"config"`
	RootFS       struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

type manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

type index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []descriptor `json:"manifests"`
}

// list is a repeatable string flag.
type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(s string) error { *l = append(*l, s); return nil }

// Options is everything one image is made of.
type Options struct {
	Tags       []string
	Files      []string // host:image[:mode]
	HardLinks  []string // image:existing-image-path
	SymLinks   []string // image:target
	Dirs       []string // image[:mode]
	Env        []string
	Entrypoint []string
	Cmd        []string
	User       string
	WorkingDir string
}

func main() {
	var o Options
	var tags, files, hard, sym, dirs, env list
	out := flag.String("o", "", "output tarball (OCI image layout)")
	ep := flag.String("entrypoint", "", "Entrypoint as a JSON array")
	cmd := flag.String("cmd", "", "Cmd as a JSON array")
	flag.StringVar(&o.User, "user", "", "config User")
	flag.StringVar(&o.WorkingDir, "workdir", "/", "config WorkingDir")
	flag.Var(&tags, "t", "full image reference, e.g. docker.io/library/busybox:latest (repeatable)")
	flag.Var(&files, "f", "HOST:IMAGE[:MODE] regular file (repeatable)")
	flag.Var(&hard, "H", "IMAGE:EXISTING hard link to a file added with -f (repeatable)")
	flag.Var(&sym, "l", "IMAGE:TARGET symbolic link (repeatable)")
	flag.Var(&dirs, "d", "IMAGE[:MODE] directory (repeatable)")
	flag.Var(&env, "env", "KEY=VALUE (repeatable)")
	flag.Parse()
	if *out == "" || len(tags) == 0 || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: mkimage -o OUT.tar -t REF [-t REF] [-f HOST:IMAGE[:MODE]] [-H IMAGE:EXISTING] [-l IMAGE:TARGET] [-d DIR[:MODE]] [-entrypoint JSON] [-cmd JSON] [-env K=V] [-user U] [-workdir D]")
		os.Exit(2)
	}
	o.Tags, o.Files, o.HardLinks, o.SymLinks, o.Dirs, o.Env = tags, files, hard, sym, dirs, env
	for _, a := range []struct {
		s   string
		dst *[]string
	}{{*ep, &o.Entrypoint}, {*cmd, &o.Cmd}} {
		if a.s == "" {
			continue
		}
		if err := json.Unmarshal([]byte(a.s), a.dst); err != nil {
			fatal(fmt.Errorf("bad JSON array %q: %w", a.s, err))
		}
	}
	data, err := Build(o)
	if err != nil {
		fatal(err)
	}
	tmp := *out + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		fatal(err)
	}
	if err := os.Rename(tmp, *out); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "mkimage:", err)
	os.Exit(1)
}

// entry is one layer member.
type entry struct {
	hdr  tar.Header
	data []byte
}

// clean turns an image path into a tar member name ("/bin/sh" -> "bin/sh").
func clean(p string) (string, error) {
	c := strings.TrimPrefix(path.Clean("/"+p), "/")
	if c == "" || c == "." {
		return "", fmt.Errorf("bad image path %q", p)
	}
	return c, nil
}

func parseMode(s string, def int64) (int64, error) {
	if s == "" {
		return def, nil
	}
	m, err := strconv.ParseInt(s, 8, 32)
	if err != nil || m < 0 || m > 0o7777 {
		return 0, fmt.Errorf("bad mode %q", s)
	}
	return m, nil
}

// splitPair splits "a:b" or "a:b:mode" (for -f) at colons.
func splitPair(s string, max int) ([]string, error) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > max || parts[0] == "" || parts[1] == "" {
		return nil, fmt.Errorf("bad argument %q", s)
	}
	return parts, nil
}

// layer builds the uncompressed layer tarball.
func layer(o Options) ([]byte, error) {
	ents := map[string]*entry{}
	var links []*entry // hard links go last, after their targets
	addDir := func(name string, mode int64) {
		for d := name; d != "." && d != ""; d = path.Dir(d) {
			e, ok := ents[d+"/"]
			if !ok {
				e = &entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755}}
				ents[d+"/"] = e
			}
			if d == name && mode >= 0 {
				e.hdr.Mode = mode
			}
		}
	}
	taken := func(name string) error {
		if _, ok := ents[name]; ok {
			return fmt.Errorf("duplicate image path /%s", name)
		}
		for _, l := range links {
			if l.hdr.Name == name {
				return fmt.Errorf("duplicate image path /%s", name)
			}
		}
		return nil
	}
	for _, d := range o.Dirs {
		p, m, _ := strings.Cut(d, ":")
		name, err := clean(p)
		if err != nil {
			return nil, err
		}
		mode, err := parseMode(m, 0o755)
		if err != nil {
			return nil, err
		}
		addDir(name, mode)
	}
	for _, f := range o.Files {
		parts, err := splitPair(f, 3)
		if err != nil {
			return nil, err
		}
		name, err := clean(parts[1])
		if err != nil {
			return nil, err
		}
		data, err := os.ReadFile(parts[0])
		if err != nil {
			return nil, err
		}
		def := int64(0o644)
		if st, err := os.Stat(parts[0]); err == nil && st.Mode()&0o111 != 0 {
			def = 0o755
		}
		mode := def
		if len(parts) == 3 {
			if mode, err = parseMode(parts[2], def); err != nil {
				return nil, err
			}
		}
		if err := taken(name); err != nil {
			return nil, err
		}
		addDir(path.Dir(name), -1)
		ents[name] = &entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data))}, data: data}
	}
	for _, s := range o.SymLinks {
		parts, err := splitPair(s, 2)
		if err != nil {
			return nil, err
		}
		name, err := clean(parts[0])
		if err != nil {
			return nil, err
		}
		if err := taken(name); err != nil {
			return nil, err
		}
		addDir(path.Dir(name), -1)
		ents[name] = &entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: parts[1], Mode: 0o777}}
	}
	for _, h := range o.HardLinks {
		parts, err := splitPair(h, 2)
		if err != nil {
			return nil, err
		}
		name, err := clean(parts[0])
		if err != nil {
			return nil, err
		}
		target, err := clean(parts[1])
		if err != nil {
			return nil, err
		}
		t, ok := ents[target]
		if !ok || t.hdr.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("hard link /%s: target /%s is not a file added with -f", name, target)
		}
		if err := taken(name); err != nil {
			return nil, err
		}
		addDir(path.Dir(name), -1)
		links = append(links, &entry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: t.hdr.Mode}})
	}

	all := make([]*entry, 0, len(ents)+len(links))
	for _, e := range ents {
		all = append(all, e)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].hdr.Name < all[j].hdr.Name })
	sort.Slice(links, func(i, j int) bool { return links[i].hdr.Name < links[j].hdr.Name })
	all = append(all, links...)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range all {
		h := e.hdr
		h.ModTime = epoch
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			return nil, err
		}
		if len(e.data) > 0 {
			if _, err := tw.Write(e.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// refName returns the tag part of a reference ("…/busybox:latest" -> "latest").
func refName(ref string) (string, error) {
	if strings.Contains(ref, "@") {
		return "", fmt.Errorf("reference %q: digests are not supported, give a tag", ref)
	}
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i:], "/") || i == len(ref)-1 {
		return "", fmt.Errorf("reference %q: give a full reference with a tag (host/repo:tag)", ref)
	}
	return ref[i+1:], nil
}

// Build returns the OCI image-layout tarball for o.
func Build(o Options) ([]byte, error) {
	if len(o.Tags) == 0 {
		return nil, errors.New("no tag")
	}
	lay, err := layer(o)
	if err != nil {
		return nil, err
	}
	var cfg image
	cfg.Created = epoch.Format(time.RFC3339)
	cfg.Architecture, cfg.OS = "amd64", "linux"
	cfg.Config = imageConfig{User: o.User, Env: o.Env, Entrypoint: o.Entrypoint, Cmd: o.Cmd, WorkingDir: o.WorkingDir}
	cfg.RootFS.Type = "layers"
	cfg.RootFS.DiffIDs = []string{digest(lay)}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	m := manifest{
		SchemaVersion: 2,
		MediaType:     mediaTypeManifest,
		Config:        descriptor{MediaType: mediaTypeConfig, Digest: digest(cfgJSON), Size: int64(len(cfgJSON))},
		Layers:        []descriptor{{MediaType: mediaTypeLayer, Digest: digest(lay), Size: int64(len(lay))}},
	}
	mJSON, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	idx := index{SchemaVersion: 2, MediaType: mediaTypeIndex}
	seen := map[string]bool{}
	for _, ref := range o.Tags {
		if seen[ref] {
			continue
		}
		seen[ref] = true
		tag, err := refName(ref)
		if err != nil {
			return nil, err
		}
		idx.Manifests = append(idx.Manifests, descriptor{
			MediaType:   mediaTypeManifest,
			Digest:      digest(mJSON),
			Size:        int64(len(mJSON)),
			Platform:    &platform{Architecture: "amd64", OS: "linux"},
			Annotations: map[string]string{annotationCtrName: ref, annotationRefName: tag},
		})
	}
	idxJSON, err := json.Marshal(idx)
	if err != nil {
		return nil, err
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, mode int64, data []byte) error {
		h := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: epoch, Format: tar.FormatPAX}
		if strings.HasSuffix(name, "/") {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	type member struct {
		name string
		data []byte
	}
	members := []member{{name: "blobs/"}, {name: "blobs/sha256/"}}
	for _, b := range [][]byte{lay, cfgJSON, mJSON} {
		members = append(members, member{"blobs/sha256/" + strings.TrimPrefix(digest(b), "sha256:"), b})
	}
	members = append(members, member{"index.json", idxJSON}, member{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)})
	for _, mb := range members {
		mode := int64(0o644)
		if strings.HasSuffix(mb.name, "/") {
			mode = 0o755
		}
		if err := add(mb.name, mode, mb.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
