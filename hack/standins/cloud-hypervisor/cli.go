package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/magnetar-runtime/magnetar/shared/clhapi"
)

// usageError is a command-line error the way clap reports it: printed
// after "error: ", exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// configError is an error in an option's value, the way Cloud Hypervisor
// reports it (exit status 1).
type configError struct{ msg string }

func (e *configError) Error() string { return e.msg }

// cli is what the command line asked for.
type cli struct {
	// apiPath or apiFD is the API socket (--api-socket).
	apiPath string
	apiFD   int
	// vm is the VM the command line defines (nil: none, the API will).
	vm *clhapi.VmConfig
	// help and version print and exit.
	help, version bool
}

// option is one documented option: whether it takes a value and whether
// several values may follow it.
type option struct {
	name     string
	value    bool
	multiple bool
	help     string
}

// options are the options Cloud Hypervisor's docs define (api.md, fs.md,
// vsock.md, snapshot_restore.md, at commit ae44c2971c83). The D-Bus ones
// (api.md) exist only in a build with the dbus_api feature, which is not
// the default: like the default build, the stand-in does not know them.
var options = []option{
	{"--api-socket", true, false, "HTTP API socket: path=</path/to/a/file>|fd=<fd> (or a bare path)"},
	{"--cpus", true, false, "boot=<boot_vcpus>"},
	{"--memory", true, false, "size=<guest_memory_size>,shared=on|off"},
	{"--kernel", true, false, "Path to kernel or firmware that supports a PVH entry point or architecture equivalent"},
	{"--cmdline", true, false, "Kernel command line"},
	{"--firmware", true, false, "Path to firmware that is loaded in an architectural specific way"},
	{"--disk", true, true, "path=<disk_image_path>"},
	{"--fs", true, true, "tag=<tag_name>,socket=<socket_path>,num_queues=<number_of_queues>,queue_size=<size_of_each_queue>"},
	{"--vsock", true, false, "cid=<context_id>,socket=<socket_path>"},
	{"--restore", true, false, "source_url=<source_url>,resume=on|off,memory_restore_mode=copy|ondemand"},
	{"--help", false, false, "Print help"},
	{"--version", false, false, "Print version"},
}

func findOption(name string) (option, bool) {
	switch name {
	case "-h":
		name = "--help"
	case "-V":
		name = "--version"
	}
	for _, o := range options {
		if o.name == name {
			return o, true
		}
	}
	return option{}, false
}

// parseArgs parses Cloud Hypervisor's command line (without argv[0]).
func parseArgs(args []string) (*cli, error) {
	vals := map[string][]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, inline, hasInline := strings.Cut(a, "=")
		if !strings.HasPrefix(a, "-") || !strings.HasPrefix(name, "--") && name != "-h" && name != "-V" {
			return nil, &usageError{fmt.Sprintf("unexpected argument '%s' found", a)}
		}
		o, ok := findOption(name)
		if !ok {
			return nil, &usageError{fmt.Sprintf("unexpected argument '%s' found", name)}
		}
		if _, dup := vals[o.name]; dup && !o.multiple {
			return nil, &usageError{fmt.Sprintf("the argument '%s' cannot be used multiple times", o.name)}
		}
		if !o.value {
			if hasInline {
				return nil, &usageError{fmt.Sprintf("unexpected value '%s' for '%s' found; no more were expected", inline, o.name)}
			}
			vals[o.name] = nil
			continue
		}
		var got []string
		if hasInline {
			got = append(got, inline)
		}
		for !hasInline && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			i++
			got = append(got, args[i])
			if !o.multiple {
				break
			}
		}
		if len(got) == 0 {
			return nil, &usageError{fmt.Sprintf("a value is required for '%s <%s>' but none was supplied", o.name, strings.TrimPrefix(o.name, "--"))}
		}
		vals[o.name] = append(vals[o.name], got...)
	}
	c := &cli{apiFD: -1}
	if _, ok := vals["--help"]; ok {
		c.help = true
		return c, nil
	}
	if _, ok := vals["--version"]; ok {
		c.version = true
		return c, nil
	}
	if v, ok := vals["--api-socket"]; ok {
		if err := c.parseAPISocket(v[0]); err != nil {
			return nil, err
		}
	}
	for _, o := range []string{"--firmware", "--disk", "--restore"} {
		if _, ok := vals[o]; ok {
			return nil, &configError{fmt.Sprintf("%s: not emulated by the Cloud Hypervisor stand-in (it boots a kernel and an initramfs only)", o)}
		}
	}
	if !anyOf(vals, "--cpus", "--memory", "--kernel", "--cmdline", "--fs", "--vsock") {
		return c, nil
	}
	vmc, err := vmFromArgs(vals)
	if err != nil {
		return nil, err
	}
	c.vm = vmc
	return c, nil
}

func anyOf(vals map[string][]string, names ...string) bool {
	for _, n := range names {
		if _, ok := vals[n]; ok {
			return true
		}
	}
	return false
}

func (c *cli) parseAPISocket(v string) error {
	if !strings.Contains(v, "=") {
		c.apiPath = v
		return nil
	}
	kv, err := parseOptions("--api-socket", v, "path", "fd")
	if err != nil {
		return err
	}
	switch {
	case kv["path"] != "" && kv["fd"] != "":
		return &configError{"Error parsing --api-socket: path and fd are mutually exclusive"}
	case kv["path"] != "":
		c.apiPath = kv["path"]
	case kv["fd"] != "":
		fd, err := strconv.Atoi(kv["fd"])
		if err != nil || fd < 0 {
			return &configError{fmt.Sprintf("Error parsing --api-socket: invalid fd %q", kv["fd"])}
		}
		c.apiFD = fd
	default:
		return &configError{"Error parsing --api-socket: path or fd required"}
	}
	return nil
}

// parseOptions splits "k=v,k=v" (Cloud Hypervisor's option syntax) and
// refuses keys outside known.
func parseOptions(opt, s string, known ...string) (map[string]string, error) {
	kv := map[string]string{}
	for _, part := range strings.Split(s, ",") {
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, &configError{fmt.Sprintf("Error parsing %s: option %q has no value", opt, k)}
		}
		found := false
		for _, n := range known {
			found = found || n == k
		}
		if !found {
			return nil, &configError{fmt.Sprintf("Error parsing %s: unknown option: %s", opt, k)}
		}
		kv[k] = v
	}
	return kv, nil
}

// vmFromArgs is the VmConfig of the VM options, with Cloud Hypervisor's
// defaults (1 vCPU, 512 MiB, serial off, console on the terminal).
func vmFromArgs(vals map[string][]string) (*clhapi.VmConfig, error) {
	c := &clhapi.VmConfig{Cpus: &clhapi.CpusConfig{BootVcpus: 1, MaxVcpus: 1}, Memory: &clhapi.MemoryConfig{Size: 512 << 20}}
	if v, ok := vals["--cpus"]; ok {
		kv, err := parseOptions("--cpus", v[0], "boot")
		if err != nil {
			return nil, err
		}
		if b, ok := kv["boot"]; ok {
			n, err := strconv.Atoi(b)
			if err != nil || n < 1 || n > 255 {
				return nil, &configError{fmt.Sprintf("Error parsing --cpus: invalid boot %q", b)}
			}
			c.Cpus.BootVcpus, c.Cpus.MaxVcpus = n, n
		}
	}
	if v, ok := vals["--memory"]; ok {
		kv, err := parseOptions("--memory", v[0], "size", "shared")
		if err != nil {
			return nil, err
		}
		if s, ok := kv["size"]; ok {
			n, err := parseSize(s)
			if err != nil {
				return nil, &configError{fmt.Sprintf("Error parsing --memory: invalid size %q", s)}
			}
			c.Memory.Size = n
		}
		if s, ok := kv["shared"]; ok {
			b, err := parseToggle(s)
			if err != nil {
				return nil, &configError{fmt.Sprintf("Error parsing --memory: invalid shared %q", s)}
			}
			c.Memory.Shared = &b
		}
	}
	if v, ok := vals["--kernel"]; ok {
		c.Payload.Kernel = &v[0]
	}
	if v, ok := vals["--cmdline"]; ok {
		c.Payload.Cmdline = &v[0]
	}
	if v, ok := vals["--fs"]; ok {
		var fs []clhapi.FsConfig
		for _, s := range v {
			kv, err := parseOptions("--fs", s, "tag", "socket", "num_queues", "queue_size")
			if err != nil {
				return nil, err
			}
			f := clhapi.FsConfig{Tag: kv["tag"], Socket: kv["socket"], NumQueues: 1, QueueSize: 1024}
			if f.Tag == "" || f.Socket == "" {
				return nil, &configError{"Error parsing --fs: tag and socket are required"}
			}
			for _, q := range []struct {
				k string
				p *int
			}{{"num_queues", &f.NumQueues}, {"queue_size", &f.QueueSize}} {
				if s, ok := kv[q.k]; ok {
					n, err := strconv.Atoi(s)
					if err != nil || n < 1 {
						return nil, &configError{fmt.Sprintf("Error parsing --fs: invalid %s %q", q.k, s)}
					}
					*q.p = n
				}
			}
			fs = append(fs, f)
		}
		c.Fs = &fs
	}
	if v, ok := vals["--vsock"]; ok {
		kv, err := parseOptions("--vsock", v[0], "cid", "socket")
		if err != nil {
			return nil, err
		}
		cid, err := strconv.ParseInt(kv["cid"], 10, 64)
		if err != nil || kv["socket"] == "" {
			return nil, &configError{"Error parsing --vsock: cid and socket are required"}
		}
		c.Vsock = &clhapi.VsockConfig{Cid: cid, Socket: kv["socket"]}
	}
	return c, nil
}

// parseSize reads a size with an optional K, M or G suffix.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, errors.New("bad size")
	}
	return n * mult, nil
}

func parseToggle(s string) (bool, error) {
	switch s {
	case "on", "true":
		return true, nil
	case "off", "false":
		return false, nil
	}
	return false, errors.New("bad toggle")
}

// printUsage prints the help of the documented options.
func printUsage(w io.Writer) {
	fmt.Fprintln(w, "Cloud Hypervisor stand-in (tests only): Cloud Hypervisor's documented command line and REST API, a QEMU TCG guest underneath")
	fmt.Fprintln(w, "\nUsage: cloud-hypervisor [OPTIONS]\n\nOptions:")
	for _, o := range options {
		fmt.Fprintf(w, "      %-14s %s\n", o.name, o.help)
	}
}

// cliFail reports a command-line error as Cloud Hypervisor does and returns
// the exit status.
func cliFail(err error) int {
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(os.Stderr, "error: %s\n\nUsage: cloud-hypervisor [OPTIONS]\n\nFor more information, try '--help'.\n", ue.msg)
		return 2
	}
	fmt.Fprintf(os.Stderr, "Error: %v\n", err)
	return 1
}
