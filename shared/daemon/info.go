package daemon

import (
	"io"

	apitypes "github.com/containerd/containerd/api/types"
	"google.golang.org/protobuf/proto"
)

// printInfo answers containerd's `<runtime binary> -info` with a
// RuntimeInfo protobuf on stdout, as a shim does.
func printInfo(sb Sandboxer, stdout io.Writer) error {
	data, err := proto.Marshal(&apitypes.RuntimeInfo{
		Name:    "io.containerd.magnetar-" + sb.Name + ".v1",
		Version: &apitypes.RuntimeVersion{Version: Version},
	})
	if err != nil {
		return err
	}
	_, err = stdout.Write(data)
	return err
}
