package qemu

import (
	"testing"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm/vmtest"
)

// FuzzArgs: QEMU's command line for any VM config parses, option list by
// option list, to what Args means (vmtest.ArgsFuzz).
func FuzzArgs(f *testing.F) {
	vmtest.ArgsFuzz{
		VMM:         Name,
		Args:        func(cfg *vm.Config) ([]string, error) { return Args(cfg, AccelTCG, 0, 3) },
		OptionLists: map[string]bool{"-name": true, "-machine": true, "-object": true, "-chardev": true, "-device": true, "-netdev": true, "-qmp": true},
		Split:       vmtest.SplitQemuOpts,
		Files:       []string{ConsoleLog, QMPSocket, AgentSocket, VirtiofsSocket},
	}.Fuzz(f)
}
