package vmhost

import (
	"reflect"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/magnetar-runtime/magnetar/cmd/vmm-sandboxer/internal/vm"
)

func TestBinary(t *testing.T) {
	if bin, err := Binary("x", &vm.Config{}, "sh"); err != nil || bin == "" || bin == "sh" {
		t.Errorf("default sh: %q, %v (want its path)", bin, err)
	}
	if bin, err := Binary("x", &vm.Config{Binary: "/bin/sh"}, "nonexistent-vmm"); err != nil || bin != "/bin/sh" {
		t.Errorf("configured /bin/sh: %q, %v", bin, err)
	}
	if _, err := Binary("x", &vm.Config{}, "nonexistent-vmm"); !errdefs.IsNotFound(err) {
		t.Errorf("missing binary: %v, want not found", err)
	}
}

func TestEncodeDecode(t *testing.T) {
	type driverState struct {
		State
		VMMSocket string `json:"vmm_socket"`
	}
	st := driverState{State: State{Hypervisor: "x", ID: "p", Dir: "/run/p", Agent: AgentState{Kind: vm.ChannelVsock, CID: 3, Port: 1024}}, VMMSocket: "/run/p/s"}
	b, err := Encode(st.ID, st)
	if err != nil {
		t.Fatal(err)
	}
	var got driverState
	if err := Decode("x", b, &got); err != nil || !reflect.DeepEqual(got, st) {
		t.Errorf("decoded %+v, %v; want %+v", got, err, st)
	}
	if err := Decode("x", []byte("{"), &got); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad state: %v, want invalid argument", err)
	}
}
