package vmhost

import "testing"

func TestPanicMessage(t *testing.T) {
	console := "[    0.9] Run /init as init process\n[    2.1] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000200\n[    2.1] CPU: 0 PID: 1\n"
	if got := PanicMessage(console); got != "Attempted to kill init! exitcode=0x00000200" {
		t.Errorf("panic message %q", got)
	}
	if got := PanicMessage("all fine\n"); got != "" {
		t.Errorf("no panic: %q", got)
	}
}
