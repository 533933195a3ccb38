package stratovirt

import (
	"strings"
	"testing"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm/vmtest"
)

// FuzzArgs: StratoVirt's command line for any VM config parses, option
// list by option list, to what Args means; StratoVirt splits at every
// comma and '=' with no escape (vmtest.ArgsFuzz).
func FuzzArgs(f *testing.F) {
	vmtest.ArgsFuzz{
		VMM:            Name,
		Args:           func(cfg *vm.Config) ([]string, error) { return Args(cfg, 3) },
		OptionLists:    map[string]bool{"-machine": true, "-chardev": true, "-device": true, "-netdev": true, "-qmp": true, "-serial": true},
		Split:          func(list string) []string { return strings.Split(list, ",") },
		SplitsAtEquals: true,
		Files:          []string{ConsoleLog, QMPSocket, AgentSocket, VirtiofsSocket},
	}.Fuzz(f)
}
