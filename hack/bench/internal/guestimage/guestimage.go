package guestimage

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// manifest is what Info reads of a manifest (hack/vm/mkinitramfs -manifest).
type manifest struct {
	Meta      map[string]string `json:"meta"`
	Initramfs struct {
		Size int64 `json:"size"`
	} `json:"initramfs"`
}

// Info is the guest image in dir as the reports name it:
//
//	kernel                  the kernel release
//	runc                    the guest's runc version
//	agent                   the agent (/init) version
//	initramfs_bytes         the agent initramfs's size
//	modules                 how many modules it loads
//	marker_initramfs_bytes  the marker initramfs's size
//
// A key is left out when its manifest cannot be read (none at all without
// manifest.json). With keys, only those are kept.
func Info(dir string, keys ...string) map[string]string {
	info := map[string]string{}
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return info
	}
	var m manifest
	if json.Unmarshal(b, &m) == nil {
		info["kernel"] = m.Meta["kernel_release"]
		info["runc"] = m.Meta["runc_version"]
		info["agent"] = m.Meta["init_version"]
		info["initramfs_bytes"] = strconv.FormatInt(m.Initramfs.Size, 10)
		info["modules"] = strconv.Itoa(len(strings.Fields(m.Meta["modules"])))
	}
	if b, err := os.ReadFile(filepath.Join(dir, "manifest-marker.json")); err == nil {
		var mm manifest
		if json.Unmarshal(b, &mm) == nil {
			info["marker_initramfs_bytes"] = strconv.FormatInt(mm.Initramfs.Size, 10)
		}
	}
	if len(keys) > 0 {
		picked := map[string]string{}
		for _, k := range keys {
			if v, ok := info[k]; ok {
				picked[k] = v
			}
		}
		info = picked
	}
	return info
}
