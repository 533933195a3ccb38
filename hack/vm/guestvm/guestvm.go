package guestvm

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
)

// Defaults of the binaries, overridable with MAGNETAR_QEMU and MAGNETAR_VIRTIOFSD.
const (
	DefaultQEMU      = "qemu-system-x86_64"
	DefaultVirtiofsd = "/usr/lib/qemu/virtiofsd"
)

// Config is one VM.
type Config struct {
	Kernel string // bzImage
	Initrd string // initramfs (newc cpio)
	// Cmdline is appended to "console=ttyS0 quiet panic=-1 reboot=t tsc_early_khz=…".
	Cmdline   []string
	MemoryMiB int // default 512
	CPUs      int // default 1
	// SerialPort names the virtio-serial port (a chardev socket the host
	// dials: AgentSocket). Empty: no virtio-serial device.
	SerialPort string
	// Share is a host directory exported with virtiofsd under ShareTag.
	// Empty: no virtio-fs device.
	Share    string
	ShareTag string
	// Console, when set, gets a copy of every console line (e.g. a log file).
	Console io.Writer
	// QEMU, Virtiofsd, Accel: empty means the environment or the defaults.
	QEMU, Virtiofsd, Accel string
}

// Line is one console line and when the host read it.
type Line struct {
	At   time.Time
	Text string
}

// VM is a running (or exited) QEMU with its virtiofsd.
type VM struct {
	cfg     Config
	dir     string
	accel   string
	cmd     *exec.Cmd
	fsd     *exec.Cmd
	fsdDone chan struct{}
	stderr  bytes.Buffer // QEMU's own messages (guarded by mu)
	// Started is when QEMU was started.
	Started time.Time

	done    chan struct{} // closed when QEMU has been reaped
	waitErr error         // QEMU's exit status, valid after done

	mu      sync.Mutex
	lines   []Line
	notify  chan struct{} // closed and replaced on each new line
	conDone chan struct{} // console reader finished
}

// Dir is the VM's run directory (sockets, logs); Close removes it.
func (v *VM) Dir() string { return v.dir }

// Accel is the accelerator QEMU runs with.
func (v *VM) Accel() string { return v.accel }

// AgentSocket is the unix socket of the virtio-serial port.
func (v *VM) AgentSocket() string { return filepath.Join(v.dir, "agent.sock") }

// QMPSocket is the unix socket of QEMU's monitor (QMP).
func (v *VM) QMPSocket() string { return filepath.Join(v.dir, "qmp.sock") }

// Pids are QEMU's and virtiofsd's process ids (0 when not started).
func (v *VM) Pids() []int {
	var p []int
	if v.cmd != nil && v.cmd.Process != nil {
		p = append(p, v.cmd.Process.Pid)
	}
	if v.fsd != nil && v.fsd.Process != nil {
		p = append(p, v.fsd.Process.Pid)
	}
	return p
}

// Start launches virtiofsd (when Share is set) and QEMU. The VM runs until it
// powers off, Kill, or Close; Close must be called in every case.
func Start(ctx context.Context, cfg Config) (*VM, error) {
	if cfg.Kernel == "" || cfg.Initrd == "" {
		return nil, fmt.Errorf("guestvm: kernel and initrd are required: %w", errdefs.ErrInvalidArgument)
	}
	if cfg.MemoryMiB == 0 {
		cfg.MemoryMiB = 512
	}
	if cfg.CPUs == 0 {
		cfg.CPUs = 1
	}
	if cfg.Share != "" && cfg.ShareTag == "" {
		return nil, fmt.Errorf("guestvm: a share needs a tag: %w", errdefs.ErrInvalidArgument)
	}
	cfg.QEMU = firstNonEmpty(cfg.QEMU, os.Getenv("MAGNETAR_QEMU"), DefaultQEMU)
	cfg.Virtiofsd = firstNonEmpty(cfg.Virtiofsd, os.Getenv("MAGNETAR_VIRTIOFSD"), DefaultVirtiofsd)
	accel, err := ChooseAccel(firstNonEmpty(cfg.Accel, os.Getenv("MAGNETAR_VM_ACCEL"), "auto"))
	if err != nil {
		return nil, err
	}
	// unix socket paths are limited to 107 bytes: a short directory in /tmp
	dir, err := os.MkdirTemp("", "mgvm-")
	if err != nil {
		return nil, err
	}
	v := &VM{cfg: cfg, dir: dir, accel: accel, done: make(chan struct{}), notify: make(chan struct{}),
		conDone: make(chan struct{}), fsdDone: make(chan struct{})}
	if err := v.start(ctx); err != nil {
		v.Close()
		return nil, err
	}
	return v, nil
}

func (v *VM) start(ctx context.Context) error {
	if v.cfg.Share != "" {
		if err := v.startVirtiofsd(ctx); err != nil {
			return err
		}
	} else {
		close(v.fsdDone)
	}
	tsc, err := TSCkHz()
	if err != nil {
		return err
	}
	args := QEMUArgs(v.cfg, v.accel, v.dir, tsc)
	v.cmd = exec.Command(v.cfg.QEMU, args...)
	v.cmd.Stdin = nil
	v.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := v.cmd.StdoutPipe()
	if err != nil {
		return err
	}
	v.cmd.Stderr = &lockedWriter{mu: &v.mu, w: &v.stderr}
	v.Started = time.Now()
	if err := v.cmd.Start(); err != nil {
		close(v.done)
		close(v.conDone)
		return fmt.Errorf("start %s: %w", v.cfg.QEMU, err)
	}
	go v.readConsole(out)
	go func() {
		<-v.conDone // Wait closes the pipe: read it to the end first
		v.waitErr = v.cmd.Wait()
		close(v.done)
	}()
	return nil
}

func (v *VM) startVirtiofsd(ctx context.Context) error {
	sock := filepath.Join(v.dir, "virtiofs.sock")
	logf, err := os.Create(filepath.Join(v.dir, "virtiofsd.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	v.fsd = exec.Command(v.cfg.Virtiofsd, "--socket-path="+sock, "-o", "source="+v.cfg.Share, "-o", "cache=none")
	v.fsd.Stdout, v.fsd.Stderr = logf, logf
	v.fsd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := v.fsd.Start(); err != nil {
		close(v.fsdDone)
		return fmt.Errorf("start %s: %w", v.cfg.Virtiofsd, err)
	}
	var fsdErr error
	go func() { fsdErr = v.fsd.Wait(); close(v.fsdDone) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			return nil
		}
		select {
		case <-v.fsdDone:
			b, _ := os.ReadFile(filepath.Join(v.dir, "virtiofsd.log"))
			return fmt.Errorf("virtiofsd exited before listening (%v): %s", fsdErr, bytes.TrimSpace(b))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("virtiofsd: no socket %s after 10 s: %w", sock, context.DeadlineExceeded)
		}
	}
}

// QEMUArgs is the QEMU command line (without the binary) for cfg, with
// sockets in dir. tscKHz goes to tsc_early_khz (0: left out).
func QEMUArgs(cfg Config, accel, dir string, tscKHz int) []string {
	mem := strconv.Itoa(cfg.MemoryMiB)
	cpu := "max"
	if accel == "kvm" {
		cpu = "host"
	}
	a := []string{
		"-machine", "microvm,memory-backend=mem", "-accel", accel, "-cpu", cpu,
		"-object", "memory-backend-memfd,id=mem,size=" + mem + "M,share=on", "-m", mem,
		"-smp", strconv.Itoa(cfg.CPUs),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-serial", "stdio",
		"-qmp", "unix:" + filepath.Join(dir, "qmp.sock") + ",server=on,wait=off",
		"-global", "virtio-mmio.force-legacy=false",
	}
	if cfg.SerialPort != "" {
		a = append(a, "-device", "virtio-serial-device,id=vser0",
			"-chardev", "socket,id=agent,path="+filepath.Join(dir, "agent.sock")+",server=on,wait=off",
			"-device", "virtserialport,bus=vser0.0,chardev=agent,name="+cfg.SerialPort)
	}
	if cfg.Share != "" {
		a = append(a, "-chardev", "socket,id=vfs,path="+filepath.Join(dir, "virtiofs.sock"),
			"-device", "vhost-user-fs-device,chardev=vfs,tag="+cfg.ShareTag)
	}
	cmdline := []string{"console=ttyS0", "quiet", "panic=-1", "reboot=t"}
	if tscKHz > 0 {
		cmdline = append(cmdline, "tsc_early_khz="+strconv.Itoa(tscKHz))
	}
	cmdline = append(cmdline, cfg.Cmdline...)
	return append(a, "-kernel", cfg.Kernel, "-initrd", cfg.Initrd, "-append", strings.Join(cmdline, " "))
}

// TSCkHz is the host's TSC frequency in kHz (what TCG's rdtsc counts at):
// /sys/devices/system/cpu/cpu0/tsc_freq_khz when the kernel exports it, else
// the first "cpu MHz" of /proc/cpuinfo.
func TSCkHz() (int, error) {
	if b, err := os.ReadFile("/sys/devices/system/cpu/cpu0/tsc_freq_khz"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n > 0 {
			return n, nil
		}
	}
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, val, ok := strings.Cut(l, ":")
		if ok && strings.TrimSpace(k) == "cpu MHz" {
			mhz, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
			if err != nil || mhz <= 0 {
				return 0, fmt.Errorf("/proc/cpuinfo: cpu MHz %q: %w", val, errdefs.ErrUnknown)
			}
			return int(mhz * 1000), nil
		}
	}
	return 0, fmt.Errorf("no TSC frequency in /sys or /proc/cpuinfo: %w", errdefs.ErrNotFound)
}

// ChooseAccel resolves "auto" (see the package doc); "tcg" and "kvm" are
// taken as they are.
func ChooseAccel(want string) (string, error) {
	switch want {
	case "tcg", "kvm":
		return want, nil
	case "auto", "":
	default:
		return "", fmt.Errorf("accelerator %q: want tcg, kvm or auto: %w", want, errdefs.ErrInvalidArgument)
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return "tcg", nil
	}
	f.Close()
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if k, val, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "flags" {
			for _, fl := range strings.Fields(val) {
				if fl == "vmx" || fl == "svm" {
					return "kvm", nil
				}
			}
			break
		}
	}
	return "tcg", nil
}

func (v *VM) readConsole(r io.Reader) {
	defer close(v.conDone)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		l := Line{At: time.Now(), Text: strings.TrimRight(sc.Text(), "\r")}
		if v.cfg.Console != nil {
			fmt.Fprintf(v.cfg.Console, "%8.3f %s\n", l.At.Sub(v.Started).Seconds(), l.Text)
		}
		v.mu.Lock()
		v.lines = append(v.lines, l)
		close(v.notify)
		v.notify = make(chan struct{})
		v.mu.Unlock()
	}
	io.Copy(io.Discard, r)
}

// Lines is a copy of the console so far.
func (v *VM) Lines() []Line {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]Line(nil), v.lines...)
}

// Console is the console so far as text (for error messages).
func (v *VM) Console() string {
	var b strings.Builder
	for _, l := range v.Lines() {
		b.WriteString(l.Text)
		b.WriteByte('\n')
	}
	return b.String()
}

// Tail is the last n console lines and QEMU's own messages.
func (v *VM) Tail(n int) string {
	ls := v.Lines()
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	var b strings.Builder
	for _, l := range ls {
		fmt.Fprintf(&b, "  console %6.3f %s\n", l.At.Sub(v.Started).Seconds(), l.Text)
	}
	v.mu.Lock()
	if s := strings.TrimSpace(v.stderr.String()); s != "" {
		fmt.Fprintf(&b, "  qemu: %s\n", s)
	}
	v.mu.Unlock()
	return b.String()
}

// WaitLine waits for the first console line (from the start) containing sub.
func (v *VM) WaitLine(ctx context.Context, sub string) (Line, error) {
	seen := 0
	for {
		v.mu.Lock()
		for ; seen < len(v.lines); seen++ {
			if strings.Contains(v.lines[seen].Text, sub) {
				l := v.lines[seen]
				v.mu.Unlock()
				return l, nil
			}
		}
		ch := v.notify
		v.mu.Unlock()
		select {
		case <-ch:
		case <-v.conDone:
			v.mu.Lock()
			more := seen < len(v.lines)
			v.mu.Unlock()
			if !more {
				return Line{}, fmt.Errorf("console line %q: %w", sub, v.exitError())
			}
		case <-ctx.Done():
			return Line{}, fmt.Errorf("console line %q: %w", sub, ctx.Err())
		}
	}
}

// Done is closed when QEMU has exited (and been reaped).
func (v *VM) Done() <-chan struct{} { return v.done }

// ExitErr is QEMU's exit status after Done (nil: exit code 0).
func (v *VM) ExitErr() error {
	select {
	case <-v.done:
		return v.waitErr
	default:
		return nil
	}
}

// exitError describes QEMU's exit for callers that needed it running.
func (v *VM) exitError() error {
	<-v.done
	return fmt.Errorf("%w (%s)", ErrVMMExited, v.ExitReason())
}

// ExitReason says how QEMU ended, once Done: its exit status, and the guest
// kernel's panic message when the console has one (a crashed PID 1 panics
// the kernel; panic=-1 and -no-reboot turn that into QEMU exiting 0).
// Empty while QEMU runs.
func (v *VM) ExitReason() string {
	select {
	case <-v.done:
	default:
		return ""
	}
	st := "exit status 0"
	if v.waitErr != nil {
		st = v.waitErr.Error()
	}
	for _, l := range v.Lines() {
		if _, msg, ok := strings.Cut(l.Text, "Kernel panic - not syncing: "); ok {
			return st + " after a guest kernel panic: " + strings.TrimSpace(msg)
		}
	}
	return st
}

// ErrVMMExited is wrapped by every error caused by QEMU having exited.
var ErrVMMExited = fmt.Errorf("vmm (qemu) exited: %w", errdefs.ErrUnavailable)

// Wait waits for QEMU to exit and returns its status (nil: exit code 0).
func (v *VM) Wait(ctx context.Context) error {
	select {
	case <-v.done:
		return v.waitErr
	case <-ctx.Done():
		return fmt.Errorf("wait for qemu: %w", ctx.Err())
	}
}

// DialAgent connects to the virtio-serial port's chardev socket. If QEMU has
// exited, or exits while the dial fails, the error wraps ErrVMMExited and
// says how it exited.
func (v *VM) DialAgent(ctx context.Context) (net.Conn, error) {
	select {
	case <-v.done:
		return nil, fmt.Errorf("dial agent: %w", v.exitError())
	default:
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", v.AgentSocket())
	if err == nil {
		return c, nil
	}
	select {
	case <-v.done:
		return nil, fmt.Errorf("dial agent: %w", v.exitError())
	case <-time.After(100 * time.Millisecond):
	}
	return nil, fmt.Errorf("dial agent %s: %w", v.AgentSocket(), err)
}

// Kill sends SIGKILL to QEMU (virtiofsd follows when its peer goes).
func (v *VM) Kill() error {
	if v.cmd == nil || v.cmd.Process == nil {
		return nil
	}
	select {
	case <-v.done:
		return nil
	default:
	}
	return v.cmd.Process.Kill()
}

// Close kills whatever still runs, reaps it and removes the run directory.
func (v *VM) Close() error {
	var errs []error
	if v.cmd != nil && v.cmd.Process != nil {
		select {
		case <-v.done:
		default:
			v.cmd.Process.Kill()
		}
		select {
		case <-v.done:
		case <-time.After(10 * time.Second):
			errs = append(errs, fmt.Errorf("qemu %d not reaped 10 s after SIGKILL", v.cmd.Process.Pid))
		}
	}
	if v.fsd != nil && v.fsd.Process != nil {
		select {
		case <-v.fsdDone:
		case <-time.After(2 * time.Second): // it normally exits with its peer
			v.fsd.Process.Kill()
		}
		select {
		case <-v.fsdDone:
		case <-time.After(10 * time.Second):
			errs = append(errs, fmt.Errorf("virtiofsd %d not reaped 10 s after SIGKILL", v.fsd.Process.Pid))
		}
	}
	if err := os.RemoveAll(v.dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// QMPReady dials the QMP socket until QEMU greets and returns when the
// greeting arrived (QEMU's main loop is running).
func (v *VM) QMPReady(ctx context.Context) (time.Time, error) {
	for {
		c, err := net.Dial("unix", v.QMPSocket())
		if err == nil {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			at := time.Now()
			c.Close()
			if err == nil && strings.Contains(line, `"QMP"`) {
				return at, nil
			}
		}
		select {
		case <-v.done:
			return time.Time{}, fmt.Errorf("qmp: %w", v.exitError())
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("qmp: %w", ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}
