package stratovirt

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm/vmhost"
	"github.com/magnetar-runtime/magnetar/shared/hostproc"
)

// State is a VM as persisted (vm.VM.State) and recovered
// (Hypervisor.Recover): what every driver persists (vmhost.State: the
// sandbox, virtiofsd, the agent's address, the share), StratoVirt's daemon
// with its start time and its QMP socket.
type State struct {
	vmhost.State
	// VMM identifies StratoVirt's daemon (the process that wrote the pid
	// file, not the one the driver started).
	VMM hostproc.ID `json:"stratovirt"`
	// QMPSocket is StratoVirt's QMP socket in Dir.
	QMPSocket string `json:"qmp_socket"`
}

// Recover finds a VM again from its State: StratoVirt's daemon and
// virtiofsd are watched again if they still run (same pid and start time,
// see package hostproc). A VM whose StratoVirt is gone comes back already
// Done; a virtiofsd that outlived it is killed. A State that does not
// decode or is not StratoVirt's fails with errdefs.ErrInvalidArgument.
func (h *Hypervisor) Recover(ctx context.Context, state json.RawMessage) (vm.VM, error) {
	var st State
	if err := vmhost.Decode(Name, state, &st); err != nil {
		return nil, err
	}
	if err := st.Validate(Name, st.VMM.Pid, vm.ChannelSerial, vm.ChannelVsock); err != nil {
		return nil, err
	}
	if st.QMPSocket == "" {
		return nil, fmt.Errorf("stratovirt vm state (id %q): no QMP socket: %w", st.ID, errdefs.ErrInvalidArgument)
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("sandbox_id", st.ID))
	v := newVM(h, st)
	if err := v.Recover(ctx, st.VMM, st.Virtiofsd, VirtiofsdLog); err != nil {
		return nil, err
	}
	return v, nil
}
