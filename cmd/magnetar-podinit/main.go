// Command magnetar-podinit is PID 1 of a pod's shared PID namespace (see
// shared/podinit). The runc sandboxer starts it as
// `magnetar-podinit __magnetar_pod_init <sandbox id>` in a new PID namespace.
package main

import (
	"fmt"
	"os"

	"github.com/magnetar-runtime/magnetar/shared/podinit"
)

func main() {
	if len(os.Args) < 2 || len(os.Args) > 3 || os.Args[1] != podinit.Arg {
		fmt.Fprintf(os.Stderr, "usage: %s %s [SANDBOX_ID] (started by a sandboxer as a pod's PID 1)\n", podinit.Binary, podinit.Arg)
		os.Exit(2)
	}
	if err := podinit.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", podinit.Binary, err)
		os.Exit(1)
	}
}
