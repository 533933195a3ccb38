package main

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/magnetar-runtime/magnetar/hack/standins/stratovirt/guidebook"
)

// argNames are the names StratoVirt's argument parser gives options in
// its messages, where they differ from the option
// (machine_manager/src/cmdline.rs).
var argNames = map[string]string{"-m": "memory", "-append": "kernel-cmdline", "-initrd": "initrd-file", "-D": "display log"}

func argName(opt string) string {
	if n, ok := argNames[opt]; ok {
		return n
	}
	return strings.TrimPrefix(opt, "-")
}

// repeatable are the options StratoVirt takes more than once.
var repeatable = []string{"-append", "-chardev", "-device", "-drive", "-global", "-netdev", "-numa", "-object", "-smbios"}

// emulated are the options the stand-in runs; the guidebook's others are
// refused as not emulated.
var emulated = []string{"-machine", "-smp", "-m", "-kernel", "-initrd", "-append", "-qmp", "-serial", "-chardev",
	"-netdev", "-device", "-D", "-daemonize", "-pidfile", "-disable-seccomp"}

// arg is one option of the command line.
type arg struct {
	opt, value string
	hasValue   bool
}

// parseArgs is StratoVirt's argument parser over the guidebook's options:
// an option it does not define is unexpected, a valued option needs its
// value (-D may go without), and only the repeatable options may repeat.
func parseArgs(g *guidebook.Grammar, argv []string) ([]arg, error) {
	var out []arg
	seen := map[string]bool{}
	for i := 0; i < len(argv); i++ {
		a := argv[i]
		o := g.Options[a]
		if o == nil {
			return nil, errUnexpected(a)
		}
		if seen[a] && !slices.Contains(repeatable, a) {
			return nil, errDuplicate(argName(a))
		}
		seen[a] = true
		next := i+1 < len(argv) && !strings.HasPrefix(argv[i+1], "-")
		switch {
		case o.Valued && next:
			out = append(out, arg{opt: a, value: argv[i+1], hasValue: true})
			i++
		case o.Bare:
			out = append(out, arg{opt: a})
		default:
			return nil, errMissingValue(argName(a))
		}
	}
	return out, nil
}

// vmConfig is the command line as StratoVirt's create_vmconfig reads it.
type vmConfig struct {
	machine  string
	memShare bool
	memBytes uint64
	cpus     int
	kernel   string
	initrd   string
	append   []string
	qmp      string
	serial   *chardev
	log      string // -D's file; "" is stderr
	daemon   bool
	pidfile  string
	chardevs map[string]*chardev
	netdevs  map[string]*netdev
	devices  []device
}

// chardev is a -chardev (or -serial's own).
type chardev struct {
	id, backend, path string
	server, nowait    bool
}

// netdev is a -netdev.
type netdev struct {
	id, typ string
	fds     []int
	used    bool
}

// device is a -device, parsed when the machine is built (after
// daemonizing, as StratoVirt does).
type device struct {
	driver string
	raw    string
}

const (
	defaultMemBytes = 256 << 20
	minMemBytes     = 128 << 20
	maxMemBytes     = 512 << 30
	maxCPUs         = 254
)

// createVMConfig reads the options as StratoVirt does before it
// daemonizes: the machine, memory, CPUs, boot source, chardevs, netdevs
// and the device drivers, then its precheck. What the guidebook defines
// but the stand-in does not run is refused as not emulated.
func createVMConfig(g *guidebook.Grammar, args []arg) (*vmConfig, error) {
	c := &vmConfig{machine: "microvm", memBytes: defaultMemBytes, cpus: 1, chardevs: map[string]*chardev{}, netdevs: map[string]*netdev{}}
	addErr := func(a arg, err error) error { return withContext(fmt.Sprintf("Add args %q error.", a.value), err) }
	for _, a := range args {
		if !slices.Contains(emulated, a.opt) {
			return nil, errNotEmulated("option " + a.opt)
		}
		o := g.Options[a.opt]
		if o.List && a.hasValue {
			if err := checkList(o, a.value); err != nil {
				return nil, addErr(a, err)
			}
		}
		var err error
		switch a.opt {
		case "-machine":
			err = c.addMachine(a.value)
		case "-m":
			err = c.addMemory(a.value)
		case "-smp":
			err = c.addCPUs(a.value)
		case "-kernel":
			c.kernel = a.value
		case "-initrd":
			c.initrd = a.value
		case "-append":
			c.append = append(c.append, a.value)
		case "-qmp":
			c.qmp = a.value
		case "-serial":
			err = c.addSerial(a.value)
		case "-chardev":
			var cd *chardev
			if cd, err = parseChardev(a.value); err == nil {
				if _, dup := c.chardevs[cd.id]; dup {
					err = errorf("Chardev %q has been added", cd.id)
				} else {
					c.chardevs[cd.id] = cd
				}
			}
		case "-netdev":
			err = c.addNetdev(a.value)
		case "-device":
			d, _, _ := strings.Cut(a.value, ",")
			if strings.Contains(d, "=") || d == "" {
				err = withContext("Missing driver field.", errorf("Cannot find classtype's value from string %s", a.value))
			} else {
				c.devices = append(c.devices, device{driver: d, raw: a.value})
			}
		case "-D":
			c.log = a.value
		case "-daemonize":
			c.daemon = true
		case "-pidfile":
			c.pidfile = a.value
		}
		if err != nil {
			return nil, addErr(a, err)
		}
	}
	if err := c.check(); err != nil {
		return nil, withContext("Precheck failed, VmConfig is unhealthy, stop running", err)
	}
	return c, nil
}

// checkList checks a property list against the guidebook: its kind and
// every property must be documented (what StratoVirt's clap parsers
// refuse: unexpected argument).
func checkList(o *guidebook.Option, v string) error {
	if err := o.CheckValue(v); err != nil {
		items := guidebook.SplitList(v)
		kind := o.KindOf(v)
		for i, it := range items {
			if i == 0 && (o.Positional != "" && !it.HasValue || o.Positional == "" && kind != "") {
				continue
			}
			if !o.Property(kind, it.Key) {
				return errClap(it.Key)
			}
		}
		return errorf("%v", err)
	}
	return nil
}

// onOff is StratoVirt's parse_bool.
func onOff(s string) (bool, error) {
	switch s {
	case "on", "true":
		return true, nil
	case "off", "false":
		return false, nil
	}
	return false, errorf("Unable to parse '%s' for 'bool'", s)
}

func (c *vmConfig) addMachine(v string) error {
	for i, it := range guidebook.SplitList(v) {
		switch {
		case i == 0 && !it.HasValue:
			c.machine = it.Key
		case it.Key == "type":
			c.machine = it.Value
		case it.Key == "mem-share":
			b, err := onOff(it.Value)
			if err != nil {
				return err
			}
			c.memShare = b
		case it.Key == "accel":
			if it.Value != "kvm" {
				return errorf("Invalid parameter '%s' for 'accel'", it.Value)
			}
		default:
			return errNotEmulated("-machine property " + it.Key)
		}
	}
	switch c.machine {
	case "microvm":
		return nil
	case "q35", "virt", "none":
		return errNotEmulated("machine type " + c.machine)
	}
	return errorf("Invalid machine type: %s", c.machine)
}

// parseSize is StratoVirt's memory size: megabytes by default, or with an
// m/M or g/G suffix.
func parseSize(s string) (uint64, error) {
	unit := uint64(1 << 20)
	num := s
	switch {
	case strings.HasSuffix(s, "g"), strings.HasSuffix(s, "G"):
		unit, num = 1<<30, s[:len(s)-1]
	case strings.HasSuffix(s, "m"), strings.HasSuffix(s, "M"):
		num = s[:len(s)-1]
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return 0, errorf("Unable to parse '%s' for 'memory size'", s)
	}
	return n * unit, nil
}

func (c *vmConfig) addMemory(v string) error {
	for i, it := range guidebook.SplitList(v) {
		switch {
		case i == 0 && !it.HasValue, it.Key == "size":
			val := it.Value
			if !it.HasValue {
				val = it.Key
			}
			n, err := parseSize(val)
			if err != nil {
				return err
			}
			c.memBytes = n
		default:
			return errNotEmulated("-m property " + it.Key)
		}
	}
	return nil
}

func (c *vmConfig) addCPUs(v string) error {
	for i, it := range guidebook.SplitList(v) {
		switch {
		case i == 0 && !it.HasValue, it.Key == "cpus":
			val := it.Value
			if !it.HasValue {
				val = it.Key
			}
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 || n > maxCPUs {
				return errorf("error: invalid value '%s' for '--cpus <CPUS>': %s is not in 1..=%d", val, val, maxCPUs)
			}
			c.cpus = n
		default:
			return errNotEmulated("-smp property " + it.Key)
		}
	}
	return nil
}

// parseChardev is a -chardev value (or -serial's own chardev).
func parseChardev(v string) (*chardev, error) {
	items := guidebook.SplitList(v)
	cd := &chardev{backend: items[0].Key}
	for _, it := range items[1:] {
		switch it.Key {
		case "id":
			cd.id = it.Value
		case "path":
			cd.path = it.Value
		case "server":
			cd.server = true
		case "nowait":
			cd.nowait = true
		default:
			return nil, errNotEmulated("-chardev property " + it.Key)
		}
	}
	switch cd.backend {
	case "socket":
		if cd.path == "" {
			return nil, errNotEmulated("chardev socket without a unix path")
		}
		if len(cd.path) > 108 {
			return nil, errorf("Input socket path string's length must be no more than 108.")
		}
	case "file":
		if cd.path == "" {
			return nil, errClap("path")
		}
	case "stdio":
	default:
		return nil, errNotEmulated("chardev backend " + cd.backend)
	}
	if cd.id == "" {
		return nil, errorf("error: the following required arguments were not provided:\n  --id <ID>")
	}
	return cd, nil
}

func (c *vmConfig) addSerial(v string) error {
	if id, ok := strings.CutPrefix(v, "chardev:"); ok {
		cd, ok := c.chardevs[id]
		if !ok {
			return errorf("Chardev %q not found or is in use", id)
		}
		delete(c.chardevs, id)
		c.serial = cd
		return nil
	}
	cd, err := parseChardev(v + ",id=serial_chardev")
	if err != nil {
		return withContext("Failed to add chardev", err)
	}
	c.serial = cd
	return nil
}

func (c *vmConfig) addNetdev(v string) error {
	items := guidebook.SplitList(v)
	nd := &netdev{typ: items[0].Key}
	for _, it := range items[1:] {
		switch it.Key {
		case "id":
			nd.id = it.Value
		case "fd", "fds":
			for _, f := range strings.Split(it.Value, ":") {
				n, err := strconv.Atoi(f)
				if err != nil || n < 0 {
					return errorf("error: invalid value '%s' for '--tap-fds <TAP_FDS>'", it.Value)
				}
				nd.fds = append(nd.fds, n)
			}
		default:
			return errNotEmulated("-netdev property " + it.Key)
		}
	}
	if nd.typ != "tap" {
		return errNotEmulated("netdev " + nd.typ)
	}
	if len(nd.fds) == 0 {
		return errorf("Tap device is missing, use 'ifname' or 'fd' to configure a tap device")
	}
	if _, dup := c.netdevs[nd.id]; dup {
		return errorf("Netdev: %s has been added", nd.id)
	}
	c.netdevs[nd.id] = nd
	return nil
}

// check is StratoVirt's check_vmconfig.
func (c *vmConfig) check() error {
	if c.memBytes < minMemBytes || c.memBytes > maxMemBytes {
		return errorf("Memory size must >= %d and <= %d.", uint64(minMemBytes), uint64(maxMemBytes))
	}
	if c.kernel == "" && c.machine == "microvm" {
		return errorf("kernel file is required for microvm machine type, which is not provided")
	}
	if c.initrd == "" && len(c.chardevs) == 0 {
		return errorf("Before Vm start, set a initrd or drive_file or vhost-user blk as rootfs")
	}
	stdio := 0
	if c.serial != nil && c.serial.backend == "stdio" {
		stdio++
	}
	for _, cd := range c.chardevs {
		if cd.backend == "stdio" {
			stdio++
		}
	}
	if stdio > 0 && c.daemon {
		return errorf("Device redirected to stdio and daemonize can't be set together")
	}
	if stdio > 1 {
		return errorf("Can't set multiple devices redirected to stdio")
	}
	return nil
}

// qmpPath is the unix socket of -qmp (check_api_channel, after
// daemonizing): unix:<path> with server and nowait (both required).
func (c *vmConfig) qmpPath() (string, error) {
	if c.qmp == "" {
		return "", nil
	}
	items := guidebook.SplitList(c.qmp)
	uri := items[0].Key
	var server, nowait bool
	for _, it := range items[1:] {
		switch it.Key {
		case "server":
			server = true
		case "nowait":
			nowait = true
		default:
			return "", errClap(it.Key)
		}
	}
	if !server || !nowait {
		return "", errorf("error: the following required arguments were not provided:\n  --server\n  --nowait")
	}
	path, ok := strings.CutPrefix(uri, "unix:")
	if !ok {
		if strings.HasPrefix(uri, "tcp:") {
			return "", errNotEmulated("QMP on tcp")
		}
		return "", withContext("Failed to parse qmp socket path", errorf("invalid socket type: %s", uri))
	}
	return path, nil
}

// validMAC is StratoVirt's valid_mac.
func validMAC(s string) bool {
	hw, err := net.ParseMAC(s)
	return err == nil && len(hw) == 6 && strings.Count(s, ":") == 5
}
