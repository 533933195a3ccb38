package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"

	"github.com/magnetar-runtime/magnetar/hack/standins/stratovirt/guidebook"
)

// devProps are the properties the stand-in runs, per device it emulates:
// the fields of StratoVirt's parser for that device that the guidebook
// documents (a documented property StratoVirt's parser does not take,
// such as the bullets' informal guest_cid, is refused the way StratoVirt
// refuses it; a documented one the stand-in does not run is "not
// emulated").
var devProps = map[string][]string{
	"virtio-serial-device": {"id", "max_ports"},
	"virtconsole":          {"id", "chardev", "nr"},
	"virtserialport":       {"id", "chardev", "nr"},
	"vhost-user-fs-device": {"id", "chardev", "tag"},
	"vhost-vsock-device":   {"id", "guest-cid", "vhostfd"},
	"virtio-net-device":    {"id", "netdev", "mac"},
}

// informal are the guidebook's bullet names that StratoVirt's parser does
// not take (its fields are named otherwise).
var informal = []string{"guest_cid", "vsock_id", "chardevid", "device_id", "mount_tag"}

// maxDevices is a microvm's user creatable devices on x86_64 (§2).
const maxDevices = 11

// plan is the machine the stand-in boots: StratoVirt's devices, checked
// as StratoVirt checks them while it builds the machine.
type plan struct {
	cfg     *vmConfig
	qmpPath string
	// vser is the virtio-serial-device's id ("" without one)
	vser  string
	ports []port
	fs    []fsDev
	vsock *vsockDev
	nics  []nic
}

type port struct {
	id      string
	chardev *chardev
	console bool
	nr      int
}

type fsDev struct {
	id, tag string
	chardev *chardev
}

type vsockDev struct {
	id      string
	cid     uint64
	vhostfd int // -1: none (QEMU opens /dev/vhost-vsock)
}

type nic struct {
	id, mac string
	netdev  *netdev
}

// realize builds the plan as StratoVirt builds its microvm: the QMP
// channel, the serial port, each device in command line order, then the
// boot source. Its errors are StratoVirt's, under "Failed to realize micro
// VM." for the machine's.
func realize(g *guidebook.Grammar, c *vmConfig) (*plan, error) {
	p := &plan{cfg: c}
	var err error
	if p.qmpPath, err = c.qmpPath(); err != nil {
		return nil, err
	}
	machineErr := func(err error) error { return withContext("Failed to realize micro VM.", err) }
	devices := 0
	for _, d := range c.devices {
		if err := p.addDevice(g, d, &devices); err != nil {
			return nil, machineErr(err)
		}
	}
	if err := checkBootSource(c); err != nil {
		return nil, machineErr(err)
	}
	return p, nil
}

// props are a device's properties after its driver.
type props map[string]string

func (p *plan) addDevice(g *guidebook.Grammar, d device, devices *int) error {
	items := guidebook.SplitList(d.raw)
	pr := props{}
	id, haveID := "", false
	for _, it := range items[1:] {
		if it.Key == "id" && it.HasValue {
			id, haveID = it.Value, true
		}
	}
	if !haveID || id == "" {
		return errorf("Cannot find id's value from string %s", d.raw)
	}
	o := g.Options["-device"]
	allowed, emulatedDev := devProps[d.driver]
	switch {
	case !o.Has(d.driver):
		return errorf("Unsupported device: %q", d.driver)
	case !emulatedDev:
		return errNotEmulated("device " + d.driver)
	}
	add := func(err error) error { return withContext("add "+d.driver+" fail.", err) }
	for _, it := range items[1:] {
		switch {
		case !o.Property(d.driver, it.Key), slices.Contains(informal, it.Key):
			return add(errClap(it.Key))
		case !slices.Contains(allowed, it.Key):
			return add(errNotEmulated("property " + it.Key + " of " + d.driver))
		}
		pr[it.Key] = it.Value
	}
	if d.driver != "virtconsole" && d.driver != "virtserialport" {
		*devices++
		if *devices > maxDevices {
			return add(errorf("Maximum number of user creatable devices is %d on x86_64", maxDevices))
		}
	}
	var err error
	switch d.driver {
	case "virtio-serial-device":
		err = p.addSerialDevice(id)
	case "virtconsole", "virtserialport":
		err = p.addPort(d.driver, id, pr)
	case "vhost-user-fs-device":
		err = p.addFs(id, pr)
	case "vhost-vsock-device":
		err = p.addVsock(id, pr)
	case "virtio-net-device":
		err = p.addNIC(id, pr)
	}
	if err != nil {
		return add(err)
	}
	return nil
}

func (p *plan) addSerialDevice(id string) error {
	if p.vser != "" {
		return errorf("Only one virtio serial device is supported")
	}
	p.vser = id
	return nil
}

// takeChardev removes a chardev for a device (StratoVirt's "in use").
func (p *plan) takeChardev(id string) (*chardev, error) {
	cd, ok := p.cfg.chardevs[id]
	if !ok {
		return nil, errorf("Chardev %q not found or is in use", id)
	}
	delete(p.cfg.chardevs, id)
	return cd, nil
}

// addPort is add_virtio_serial_port on a microvm: the virtio-serial-device
// has one port (max_nr_ports 1), number 0 is reserved for a virtconsole.
func (p *plan) addPort(driver, id string, pr props) error {
	if p.vser == "" {
		return errorf("No virtio serial device specified")
	}
	const maxNrPorts = 1
	console := driver == "virtconsole"
	used := func(nr int) bool {
		for _, x := range p.ports {
			if x.nr == nr {
				return true
			}
		}
		return false
	}
	maxNr := -1
	for _, x := range p.ports {
		maxNr = max(maxNr, x.nr)
	}
	free := maxNr + 1
	if free == 0 {
		free = 1 // port 0 is the virtconsole's
	}
	nr := free
	if console && !used(0) {
		nr = 0
	}
	if v, ok := pr["nr"]; ok {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return errorf("error: invalid value '%s' for '--nr <NR>': invalid digit found in string", v)
		}
		nr = int(n)
	}
	if nr >= maxNrPorts {
		return errorf("virtio serial port nr %d should be less than virtio serial's max_nr_ports %d", nr, maxNrPorts)
	}
	if !console && nr == 0 {
		return errorf("Port number 0 on virtio-serial devices reserved for virtconsole device.")
	}
	if used(nr) {
		return errorf("Repetitive virtio serial port nr %d.", nr)
	}
	cd, err := p.takeChardev(pr["chardev"])
	if err != nil {
		return err
	}
	if cd.backend == "socket" && (!cd.server || !cd.nowait) {
		return errNotEmulated("a virtio serial port on a client socket")
	}
	p.ports = append(p.ports, port{id: id, chardev: cd, console: console, nr: nr})
	return nil
}

// addFs is add_virtio_fs: the chardev is a plain unix client socket, the
// memory must be shared, the tag shorter than 36 bytes.
func (p *plan) addFs(id string, pr props) error {
	cd, err := p.takeChardev(pr["chardev"])
	if err != nil {
		return withContext("Chardev "+strconv.Quote(pr["chardev"])+" not found or is in use", err)
	}
	if !p.cfg.memShare {
		return errorf("When configuring the vhost-user-fs-device or vhost-user-fs-pci device, the memory must be shared.")
	}
	if cd.backend != "socket" {
		return errorf("Chardev %q backend should be unix-socket type.", cd.id)
	}
	if cd.server || cd.nowait {
		return errorf("Argument 'server' or 'nowait' is not need for chardev '%s'", cd.path)
	}
	tag := pr["tag"]
	if len(tag) >= 36 {
		return errorf("Input fs device tag string's length must be no more than 35.")
	}
	p.fs = append(p.fs, fsDev{id: id, tag: tag, chardev: cd})
	return nil
}

// addVsock is add_virtio_vsock: guest-cid in [3, 4294967295).
func (p *plan) addVsock(id string, pr props) error {
	if p.vsock != nil {
		return errNotEmulated("a second vhost-vsock device")
	}
	v, ok := pr["guest-cid"]
	if !ok {
		return errorf("error: the following required arguments were not provided:\n  --guest-cid <GUEST_CID>")
	}
	cid, err := strconv.ParseUint(v, 10, 64)
	if err != nil || cid < 3 || cid >= 1<<32-1 {
		return errorf("error: invalid value '%s' for '--guest-cid <GUEST_CID>': %s is not in 3..=4294967294", v, v)
	}
	d := &vsockDev{id: id, cid: cid, vhostfd: -1}
	if f, ok := pr["vhostfd"]; ok {
		if d.vhostfd, err = strconv.Atoi(f); err != nil || d.vhostfd < 0 {
			return errorf("error: invalid value '%s' for '--vhost-fd <VHOST_FD>'", f)
		}
	}
	p.vsock = d
	return nil
}

func (p *plan) addNIC(id string, pr props) error {
	nd, ok := p.cfg.netdevs[pr["netdev"]]
	if !ok || nd.used {
		return errorf("Netdev %q not found or is in use", pr["netdev"])
	}
	nd.used = true
	if m, ok := pr["mac"]; ok && !validMAC(m) {
		return errorf("Mac address is illegal.")
	}
	if len(nd.fds) != 1 {
		return errNotEmulated("a multi-queue tap")
	}
	p.nics = append(p.nics, nic{id: id, mac: pr["mac"], netdev: nd})
	return nil
}

// checkBootSource loads the kernel's setup header and the initrd as
// StratoVirt's x86_64 boot loader does: anything but a bzImage (an ELF
// vmlinux included) fails, as does a boot protocol below 2.02.
func checkBootSource(c *vmConfig) error {
	f, err := os.Open(c.kernel)
	if err != nil {
		return withContext("Failed to open kernel image", err)
	}
	defer f.Close()
	hdr := make([]byte, 0x212)
	if _, err := io.ReadFull(f, hdr); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return withContext("Failed to open kernel image", err)
	}
	if !bytes.Equal(hdr[0x202:0x206], []byte("HdrS")) {
		return errorf("ELF-format kernel is not supported")
	}
	version := binary.LittleEndian.Uint16(hdr[0x206:0x208])
	loadflags := hdr[0x211]
	if version < 0x200 || loadflags&1 == 0 {
		return errorf("Invalid bzImage kernel file")
	}
	if version < 0x202 {
		return errorf("Kernel version is too old.")
	}
	if c.initrd != "" {
		if _, err := os.Stat(c.initrd); errors.Is(err, fs.ErrNotExist) {
			return withContext("Failed to open initrd image", err)
		}
	}
	return nil
}
