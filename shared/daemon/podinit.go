package daemon

import "github.com/magnetar-runtime/magnetar/shared/podinit"

// PodInitArg makes the binary run as the init of a pod's PID namespace (the
// fallback when the magnetar-podinit binary is not installed).
const PodInitArg = podinit.Arg

// RunPodInit is the body of the pod init (exported for test binaries that
// re-execute themselves as it).
func RunPodInit() error { return podinit.Run() }
