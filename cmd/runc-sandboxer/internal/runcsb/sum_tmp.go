package runcsb

import (
	"fmt"

	"github.com/magnetar-runtime/magnetar/shared/cgroups"
	"google.golang.org/protobuf/types/known/anypb"
)

// sumCgroups: TEMPORARY until shared/cgroups.Sum lands.
func sumCgroups(cgs []cgroups.Cgroup) (*anypb.Any, error) {
	if len(cgs) == 0 {
		return nil, fmt.Errorf("no containers")
	}
	return cgs[0].Metrics()
}
