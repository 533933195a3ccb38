package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/magnetar-runtime/magnetar/hack/vm/guestvm"
	"github.com/magnetar-runtime/magnetar/shared/agentapi"
	"github.com/magnetar-runtime/magnetar/shared/clhapi"
)

// qemuEnv names the QEMU binary the stand-in runs (default: PATH's
// qemu-system-x86_64).
const qemuEnv = "MAGNETAR_STANDIN_QEMU"

// agentPortID is the id of the virtio-serial port the guest agent is moved
// to; QMP's VSERPORT_CHANGE events name it.
const agentPortID = "agentport"

// netDev is a NIC to boot with: its configuration and its tap (a received
// descriptor, or nil for a tap opened by name).
type netDev struct {
	cfg clhapi.NetConfig
	tap *os.File
}

// paths are the stand-in's own files beside the API socket.
type paths struct {
	qmp, agent string
}

// privatePaths are the stand-in's files in dir (the API socket's
// directory): short names, since a VM's run directory leaves 13 bytes.
func privatePaths(dir string) paths {
	return paths{qmp: filepath.Join(dir, ".si-qmp.sock"), agent: filepath.Join(dir, ".si-agt.sock")}
}

// emulated are the properties of vm.create and vm.add-net bodies the
// stand-in turns into QEMU devices (JSON paths, arrays as []). Any other
// property set to something but its documented default is refused
// (server.notEmulated).
var emulated = map[string]bool{
	"cpus.boot_vcpus": true, "cpus.max_vcpus": true,
	"memory.size": true, "memory.shared": true,
	"payload.kernel": true, "payload.initramfs": true, "payload.cmdline": true,
	"fs[].tag": true, "fs[].socket": true, "fs[].num_queues": true, "fs[].queue_size": true, "fs[].id": true,
	"net[].id": true, "net[].mac": true, "net[].mtu": true, "net[].num_queues": true, "net[].tap": true,
	"id": true, "mac": true, "mtu": true, "num_queues": true, "tap": true, // vm.add-net's NetConfig
	"rng.src": true, "rng.id": true,
	"serial.mode": true, "serial.file": true,
	"console.mode": true, "console.file": true, "console.id": true,
	"vsock.cid": true, "vsock.socket": true, "vsock.id": true,
}

// qemuArgs is QEMU's command line for cfg: a microvm under TCG with
// cfg's vCPUs and memory (a shared memfd when memory.shared), the serial
// and console as asked, virtio-fs devices on the virtiofsd sockets, the
// NICs on their taps (tap i is descriptor 3+i), a virtio-rng device, and,
// when cfg has a vsock device and its kernel command line points the agent
// at vsock port N, a virtio-serial port instead, whose port name the
// command line is rewritten to (agentPort returns N). The machine starts
// stopped (-S): the stand-in sets up its monitor first.
func qemuArgs(cfg *clhapi.VmConfig, nets []netDev, p paths, tscKHz int) (args []string, agentPort uint32, err error) {
	if cfg.Payload.Kernel == nil || *cfg.Payload.Kernel == "" {
		return nil, 0, errors.New("payload.kernel: the stand-in boots a kernel (no firmware)")
	}
	vcpus, mem := 1, int64(512<<20)
	if cfg.Cpus != nil {
		vcpus = cfg.Cpus.BootVcpus
		if cfg.Cpus.MaxVcpus < vcpus {
			return nil, 0, fmt.Errorf("cpus: max_vcpus %d below boot_vcpus %d", cfg.Cpus.MaxVcpus, vcpus)
		}
	}
	shared := false
	if cfg.Memory != nil {
		mem = cfg.Memory.Size
		shared = cfg.Memory.Shared != nil && *cfg.Memory.Shared
	}
	if mem <= 0 || mem%(1<<20) != 0 {
		return nil, 0, fmt.Errorf("memory.size %d: the stand-in takes whole MiB", mem)
	}
	if cfg.Fs != nil && len(*cfg.Fs) > 0 && !shared {
		return nil, 0, errors.New("ValidationError: using fs requires shared memory (memory.shared)")
	}
	share := "off"
	if shared {
		share = "on"
	}
	m := strconv.FormatInt(mem>>20, 10)
	a := []string{
		// TCG's translated-code buffer bounded as magnetar-vmm bounds it
		// (vm.tcg_buffer_mib): QEMU's 1 GiB default would be this
		// stand-in's memory, not Cloud Hypervisor's, in the pod's cgroup
		"-machine", "microvm,memory-backend=mem", "-accel", "tcg,thread=single,tb-size=64", "-cpu", "max",
		"-object", "memory-backend-memfd,id=mem,size=" + m + "M,share=" + share, "-m", m,
		"-smp", strconv.Itoa(vcpus),
		"-nodefaults", "-no-user-config", "-display", "none",
		"-global", "virtio-mmio.force-legacy=false",
		"-qmp", "unix:" + esc(p.qmp) + ",server=on,wait=off",
		"-S",
	}
	serial, console := clhapi.ConsoleModeNull, clhapi.ConsoleModeTty // Cloud Hypervisor's defaults
	var serialFile, consoleFile string
	if cfg.Serial != nil {
		serial, serialFile = cfg.Serial.Mode, deref(cfg.Serial.File)
	}
	if cfg.Console != nil {
		console, consoleFile = cfg.Console.Mode, deref(cfg.Console.File)
	}
	if serial == clhapi.ConsoleModeTty && console == clhapi.ConsoleModeTty {
		return nil, 0, errors.New("serial and console both on the terminal: not emulated by the stand-in")
	}
	switch serial {
	case clhapi.ConsoleModeOff:
	case clhapi.ConsoleModeNull:
		a = append(a, "-serial", "null")
	case clhapi.ConsoleModeFile:
		if serialFile == "" {
			return nil, 0, errors.New("serial: mode File without a file")
		}
		a = append(a, "-chardev", "file,id=serial0,path="+esc(serialFile), "-serial", "chardev:serial0")
	case clhapi.ConsoleModeTty:
		a = append(a, "-chardev", "stdio,id=serial0,signal=off", "-serial", "chardev:serial0")
	default:
		return nil, 0, fmt.Errorf("serial: mode %s not emulated by the stand-in", serial)
	}
	switch console {
	case clhapi.ConsoleModeOff:
	case clhapi.ConsoleModeNull, clhapi.ConsoleModeFile, clhapi.ConsoleModeTty:
		dev := "null,id=console0"
		switch console {
		case clhapi.ConsoleModeFile:
			if consoleFile == "" {
				return nil, 0, errors.New("console: mode File without a file")
			}
			dev = "file,id=console0,path=" + esc(consoleFile)
		case clhapi.ConsoleModeTty:
			dev = "stdio,id=console0,signal=off"
		}
		a = append(a, "-device", "virtio-serial-device,id=vcon", "-chardev", dev, "-device", "virtconsole,bus=vcon.0,chardev=console0")
	default:
		return nil, 0, fmt.Errorf("console: mode %s not emulated by the stand-in", console)
	}
	cmdline := deref(cfg.Payload.Cmdline)
	if cfg.Vsock != nil {
		cmdline, agentPort = rewriteTransport(cmdline)
		if agentPort != 0 {
			a = append(a, "-device", "virtio-serial-device,id=vser0",
				"-chardev", "socket,id=agent,path="+esc(p.agent)+",server=on,wait=off",
				"-device", "virtserialport,bus=vser0.0,chardev=agent,id="+agentPortID+",name="+agentapi.DefaultSerialPort)
		}
	}
	if cfg.Fs != nil {
		for i, f := range *cfg.Fs {
			id := "fs" + strconv.Itoa(i)
			a = append(a, "-chardev", "socket,id="+id+",path="+esc(f.Socket),
				"-device", fmt.Sprintf("vhost-user-fs-device,chardev=%s,tag=%s,num-request-queues=%d,queue-size=%d", id, esc(f.Tag), f.NumQueues, f.QueueSize))
		}
	}
	fd := 3
	for i, n := range nets {
		id := "net" + strconv.Itoa(i)
		if q := n.cfg.NumQueues; q != nil && *q != 2 {
			return nil, 0, fmt.Errorf("net %s: num_queues %d: the stand-in emulates one queue pair", deref(n.cfg.Id), *q)
		}
		switch {
		case n.tap != nil:
			a = append(a, "-netdev", "tap,id="+id+",fd="+strconv.Itoa(fd))
			fd++
		case n.cfg.Tap != nil && *n.cfg.Tap != "":
			a = append(a, "-netdev", "tap,id="+id+",ifname="+esc(*n.cfg.Tap)+",script=no,downscript=no")
		default:
			return nil, 0, fmt.Errorf("net %s: neither a tap name nor a descriptor: Cloud Hypervisor would create a tap, the stand-in does not", deref(n.cfg.Id))
		}
		dev := "virtio-net-device,netdev=" + id
		if n.cfg.Mac != nil {
			dev += ",mac=" + *n.cfg.Mac
		}
		if n.cfg.Mtu != nil {
			dev += ",host_mtu=" + strconv.Itoa(*n.cfg.Mtu)
		}
		a = append(a, "-device", dev)
	}
	src := "/dev/urandom" // Cloud Hypervisor's default rng
	if cfg.Rng != nil {
		src = cfg.Rng.Src
	}
	a = append(a, "-object", "rng-random,id=rng0,filename="+esc(src), "-device", "virtio-rng-device,rng=rng0")
	if tscKHz > 0 && !strings.Contains(cmdline, "tsc_early_khz=") {
		// microvm has neither HPET nor PM timer: under TCG the guest's TSC
		// calibration fails now and then and hangs the boot
		cmdline = strings.TrimSpace(cmdline + " tsc_early_khz=" + strconv.Itoa(tscKHz))
	}
	a = append(a, "-kernel", *cfg.Payload.Kernel)
	if k := deref(cfg.Payload.Initramfs); k != "" {
		a = append(a, "-initrd", k)
	}
	return append(a, "-append", cmdline), agentPort, nil
}

// rewriteTransport replaces the agent's vsock transport on a kernel command
// line with the virtio-serial port the stand-in bridges it to, returning
// the vsock port (0 when the line names none).
func rewriteTransport(cmdline string) (string, uint32) {
	f := strings.Fields(cmdline)
	var port uint32
	for i, t := range f {
		v, ok := strings.CutPrefix(t, agentapi.CmdlineTransport+"=vsock:")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 {
			continue
		}
		port = uint32(n)
		f[i] = agentapi.CmdlineTransport + "=serial:" + agentapi.DefaultSerialPort
	}
	return strings.Join(f, " "), port
}

func deref[T any](p *T) T {
	var z T
	if p == nil {
		return z
	}
	return *p
}

// esc doubles commas (QEMU's option lists).
func esc(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// spawnReqs go to the spawner: the parent-death signal is sent when the
// THREAD that forked the child ends, and the Go runtime may end a thread
// (one a goroutine left locked); the spawner's thread is locked to a
// goroutine that never returns, so it lives as long as the process.
var (
	spawnOnce sync.Once
	spawnReqs = make(chan spawnReq)
)

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

// startOnSpawner starts cmd from the spawner's thread.
func startOnSpawner(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		go func() {
			runtime.LockOSThread()
			for r := range spawnReqs {
				r.done <- r.cmd.Start()
			}
		}()
	})
	r := spawnReq{cmd: cmd, done: make(chan error, 1)}
	spawnReqs <- r
	return <-r.done
}

// machine is the QEMU underneath one boot of the VM.
type machine struct {
	cmd  *exec.Cmd
	mon  *monitor
	mux  *muxer
	done chan struct{}

	mu       sync.Mutex
	waitErr  error
	guestOff bool // the guest powered off (QMP SHUTDOWN, guest: true)
	stopping bool // the stand-in ended it
}

// boot starts QEMU for cfg, connects its monitor, serves the hybrid vsock
// socket and lets the guest run. On error nothing is left running.
func boot(cfg *clhapi.VmConfig, nets []netDev, p paths) (*machine, error) {
	// 0 when unknown: the guest calibrates (and may hang now and then)
	khz, _ := guestvm.TSCkHz()
	args, agentPort, err := qemuArgs(cfg, nets, p, khz)
	if err != nil {
		return nil, err
	}
	bin := os.Getenv(qemuEnv)
	if bin == "" {
		bin = "qemu-system-x86_64"
	}
	for _, f := range []string{p.qmp, p.agent} {
		os.Remove(f)
	}
	m := &machine{done: make(chan struct{})}
	if cfg.Vsock != nil {
		// Cloud Hypervisor binds the vsock socket with the device, at boot
		if m.mux, err = listenMuxer(cfg.Vsock.Socket, agentPort, p.agent); err != nil {
			return nil, err
		}
	}
	m.cmd = exec.Command(bin, args...)
	m.cmd.Stdout, m.cmd.Stderr = os.Stderr, os.Stderr
	for _, n := range nets {
		if n.tap != nil {
			m.cmd.ExtraFiles = append(m.cmd.ExtraFiles, n.tap)
		}
	}
	// QEMU dies with the stand-in, as the guest dies with Cloud Hypervisor
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	logf("booting: %s %s", bin, strings.Join(args, " "))
	if err := startOnSpawner(m.cmd); err != nil {
		m.closeMux()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		err := m.cmd.Wait()
		m.mu.Lock()
		m.waitErr = err
		m.mu.Unlock()
		m.closeMux()
		close(m.done)
	}()
	m.mon, err = dialMonitor(p.qmp, time.Now().Add(15*time.Second), m.event)
	if err == nil {
		err = m.mon.execute("cont", nil)
	}
	if err != nil {
		m.kill()
		return nil, fmt.Errorf("qemu did not start: %w", err)
	}
	return m, nil
}

// event handles QMP events: the agent port's state, resets and guest
// power-offs.
func (m *machine) event(name string, data json.RawMessage) {
	switch name {
	case "VSERPORT_CHANGE":
		var d struct {
			ID   string `json:"id"`
			Open bool   `json:"open"`
		}
		if json.Unmarshal(data, &d) == nil && d.ID == agentPortID && d.Open && m.mux != nil {
			m.mux.guestListening()
		}
	case "RESET":
		// Cloud Hypervisor resets its devices with the guest: the vsock
		// connections end
		if m.mux != nil {
			m.mux.reset()
		}
	case "SHUTDOWN":
		var d struct {
			Guest bool `json:"guest"`
		}
		if json.Unmarshal(data, &d) == nil && d.Guest {
			m.mu.Lock()
			m.guestOff = true
			m.mu.Unlock()
		}
	}
}

func (m *machine) closeMux() {
	if m.mux != nil {
		m.mux.close()
	}
}

// execute runs a QMP command on the running machine.
func (m *machine) execute(cmd string) error { return m.mon.execute(cmd, nil) }

// kill ends QEMU and waits for it.
func (m *machine) kill() {
	m.mu.Lock()
	m.stopping = true
	m.mu.Unlock()
	if m.cmd.Process != nil {
		m.cmd.Process.Kill()
	}
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
		logf("qemu (pid %d) still there 10 s after SIGKILL", m.cmd.Process.Pid)
	}
	if m.mon != nil {
		m.mon.close()
	}
}

// exit says how QEMU ended: whether the stand-in ended it, whether the
// guest powered off, and QEMU's wait status.
func (m *machine) exit() (stopping, guestOff bool, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stopping, m.guestOff, m.waitErr
}
