package qemu

import (
	"errors"
	"testing"

	"github.com/containerd/errdefs"
)

// cpuinfo of this project's machine kind (a PVM guest: "hypervisor", no
// vmx/svm), shortened.
const pvmCPUInfo = `processor	: 0
vendor_id	: GenuineIntel
model name	: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
cpu MHz		: 2699.998
flags		: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ss ht syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology nonstop_tsc cpuid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm abm 3dnowprefetch
bogomips	: 5399.99

processor	: 1
flags		: fpu vmx
`

const intelCPUInfo = "processor\t: 0\ncpu MHz\t\t: 3000.000\nflags\t\t: fpu vme de pse tsc msr vmx smx est\n"
const amdCPUInfo = "processor\t: 0\nflags\t\t: fpu vme svm extapic\n"

func TestProbe(t *testing.T) {
	kvmOK := func() error { return nil }
	noKVM := func() error { return errors.New("open /dev/kvm: no such file") }
	info := func(s string) func() (string, error) { return func() (string, error) { return s, nil } }
	for _, c := range []struct {
		name, want, got string
		kvm             func() error
		cpuinfo         func() (string, error)
	}{
		{"pvm host: /dev/kvm opens, no vmx/svm", AccelAuto, AccelTCG, kvmOK, info(pvmCPUInfo)},
		{"empty is auto", "", AccelTCG, kvmOK, info(pvmCPUInfo)},
		{"intel with kvm", AccelAuto, AccelKVM, kvmOK, info(intelCPUInfo)},
		{"amd with kvm", AccelAuto, AccelKVM, kvmOK, info(amdCPUInfo)},
		{"vmx but no usable /dev/kvm", AccelAuto, AccelTCG, noKVM, info(intelCPUInfo)},
		{"cpuinfo unreadable", AccelAuto, AccelTCG, kvmOK, func() (string, error) { return "", errors.New("no proc") }},
		{"forced kvm", AccelKVM, AccelKVM, noKVM, info(pvmCPUInfo)},
		{"forced tcg", AccelTCG, AccelTCG, kvmOK, info(intelCPUInfo)},
	} {
		got, err := probe(c.want, c.kvm, c.cpuinfo)
		if err != nil || got != c.got {
			t.Errorf("%s: got %q, %v; want %q", c.name, got, err, c.got)
		}
	}
	if _, err := probe("xen", kvmOK, info(intelCPUInfo)); !errdefs.IsInvalidArgument(err) {
		t.Errorf("xen: %v", err)
	}
}

// TestProbeHost runs the real probe: on a host without vmx/svm it must say tcg.
func TestProbeHost(t *testing.T) {
	got, err := Probe(AccelAuto)
	if err != nil {
		t.Fatal(err)
	}
	text, _ := readCPUInfo()
	if !hasVirtFlag(text) && got != AccelTCG {
		t.Errorf("no vmx/svm on this host, yet auto chose %s", got)
	}
	t.Logf("auto: %s (vmx/svm: %v, /dev/kvm usable: %v)", got, hasVirtFlag(text), openKVM())
}

func TestTSC(t *testing.T) {
	if k, err := tscFromCPUInfo(pvmCPUInfo); err != nil || k != 2699998 {
		t.Errorf("tsc %d %v", k, err)
	}
	if _, err := tscFromCPUInfo(amdCPUInfo); !errdefs.IsNotFound(err) {
		t.Errorf("no cpu MHz: %v", err)
	}
	if _, err := tscFromCPUInfo("cpu MHz : fast\n"); err == nil {
		t.Error("bad cpu MHz accepted")
	}
	k, err := TSCkHz()
	if err != nil {
		t.Skip(err)
	}
	if k < 100000 || k > 10000000 {
		t.Errorf("host TSC %d kHz is implausible", k)
	}
}
