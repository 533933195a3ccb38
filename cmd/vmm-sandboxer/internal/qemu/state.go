package qemu

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
// sandbox, virtiofsd, the agent's address, the share), QEMU's process with
// its start time, its QMP socket and the accelerator.
type State struct {
	vmhost.State
	// Accel is the accelerator QEMU runs with.
	Accel string `json:"accel"`
	// QEMU identifies QEMU's process.
	QEMU hostproc.ID `json:"qemu"`
	// QMPSocket is QEMU's monitor in Dir.
	QMPSocket string `json:"qmp_socket"`
}

// Recover finds a VM again from its State: QEMU and virtiofsd are watched
// again if they still run (same pid and start time, see package hostproc).
// A VM whose QEMU is gone comes back already Done; a virtiofsd that
// outlived its QEMU is killed. A State that does not decode or is not
// QEMU's fails with errdefs.ErrInvalidArgument.
func (h *Hypervisor) Recover(ctx context.Context, state json.RawMessage) (vm.VM, error) {
	var st State
	if err := vmhost.Decode(Name, state, &st); err != nil {
		return nil, err
	}
	if err := st.Validate(Name, st.QEMU.Pid, vm.ChannelSerial, vm.ChannelVsock); err != nil {
		return nil, err
	}
	if st.QMPSocket == "" {
		return nil, fmt.Errorf("qemu vm state (id %q): no QMP socket: %w", st.ID, errdefs.ErrInvalidArgument)
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("sandbox_id", st.ID))
	v := newVM(h, st)
	if err := v.Recover(ctx, st.QEMU, st.Virtiofsd, VirtiofsdLog); err != nil {
		return nil, err
	}
	return v, nil
}
