package qemu

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// kvmGetAPIVersion is KVM_GET_API_VERSION (_IO(KVMIO, 0x00)); every KVM
// since Linux 2.6.22 answers kvmAPIVersion.
const (
	kvmGetAPIVersion = 0xAE00
	kvmAPIVersion    = 12
)

// Probe resolves the accelerator: "kvm" and "tcg" are taken as they are
// (forced by the configuration), "auto" (or empty) is decided by this
// rule:
//
//	kvm  when /dev/kvm opens read-write, answers KVM_GET_API_VERSION with
//	     12, AND the "flags" line of /proc/cpuinfo has vmx or svm;
//	tcg  otherwise.
//
// The CPU flags are what tells a host that can run an ordinary guest
// under KVM from one that cannot: a PVM host (this project's machine kind:
// cpuinfo shows "hypervisor" and neither vmx nor svm) opens /dev/kvm and
// creates VMs, but runs a non-PVM guest through KVM's instruction emulator,
// ~100 times slower than TCG and dying in early boot (notes/vm-host.md §3),
// so a trial that only runs a few instructions would pass and mislead. A
// nested guest with virtualization exposed shows vmx/svm and gets kvm.
func Probe(want string) (string, error) {
	return probe(want, openKVM, readCPUInfo)
}

// probe is Probe with the host access injected (tests).
func probe(want string, kvm func() error, cpuinfo func() (string, error)) (string, error) {
	switch want {
	case AccelKVM, AccelTCG:
		return want, nil
	case AccelAuto, "":
	default:
		return "", fmt.Errorf("accelerator %q: want %s, %s or %s: %w", want, AccelKVM, AccelTCG, AccelAuto, errdefs.ErrInvalidArgument)
	}
	if kvm() != nil {
		return AccelTCG, nil
	}
	text, err := cpuinfo()
	if err != nil || !hasVirtFlag(text) {
		return AccelTCG, nil
	}
	return AccelKVM, nil
}

// openKVM checks that /dev/kvm opens read-write and speaks API 12.
func openKVM() error {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	v, err := unix.IoctlRetInt(int(f.Fd()), kvmGetAPIVersion)
	if err != nil {
		return fmt.Errorf("KVM_GET_API_VERSION: %w", err)
	}
	if v != kvmAPIVersion {
		return fmt.Errorf("KVM API version %d, want %d: %w", v, kvmAPIVersion, errdefs.ErrNotImplemented)
	}
	return nil
}

func readCPUInfo() (string, error) {
	b, err := os.ReadFile("/proc/cpuinfo")
	return string(b), err
}

// hasVirtFlag reports whether the first "flags" line of a /proc/cpuinfo
// text has vmx (Intel VT-x) or svm (AMD-V).
func hasVirtFlag(cpuinfo string) bool {
	for _, l := range strings.Split(cpuinfo, "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok || strings.TrimSpace(k) != "flags" {
			continue
		}
		for _, f := range strings.Fields(v) {
			if f == "vmx" || f == "svm" {
				return true
			}
		}
		return false
	}
	return false
}

// TSCkHz is the host's TSC frequency in kHz, what TCG's rdtsc counts at
// and what tsc_early_khz tells a microvm guest:
// /sys/devices/system/cpu/cpu0/tsc_freq_khz when the kernel exports it,
// else the first "cpu MHz" of /proc/cpuinfo.
func TSCkHz() (int, error) {
	if b, err := os.ReadFile("/sys/devices/system/cpu/cpu0/tsc_freq_khz"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n > 0 {
			return n, nil
		}
	}
	text, err := readCPUInfo()
	if err != nil {
		return 0, err
	}
	return tscFromCPUInfo(text)
}

// tscFromCPUInfo reads the first "cpu MHz" of a /proc/cpuinfo text, in kHz.
func tscFromCPUInfo(cpuinfo string) (int, error) {
	for _, l := range strings.Split(cpuinfo, "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok || strings.TrimSpace(k) != "cpu MHz" {
			continue
		}
		mhz, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || mhz <= 0 {
			return 0, fmt.Errorf("/proc/cpuinfo: cpu MHz %q: %w", strings.TrimSpace(v), errdefs.ErrUnknown)
		}
		return int(mhz * 1000), nil
	}
	return 0, fmt.Errorf("no TSC frequency in /sys or /proc/cpuinfo: %w", errdefs.ErrNotFound)
}
