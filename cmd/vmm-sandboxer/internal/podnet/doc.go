// Package podnet prepares a pod's network namespace, as CNI left it, for a
// micro-VM: every pod interface gets a tap in the same namespace, and the two
// are joined with tc so that whatever arrives on one leaves by the other. The
// VMM gets the tap's descriptor and gives the guest NIC the pod interface's
// MAC; the guest agent then configures that NIC with the pod interface's
// name, addresses and routes (shared/agentapi SetupRequest). This is the
// model of Kata Containers ("tcfilter") and Kuasar; vm-host.md §8 tested it
// on the build machines.
//
// # What Attach does
//
// Inside the pod's netns (nsutil.Do: a locked OS thread that is switched back
// or discarded, never handed back to other goroutines while inside), Attach
// takes every link that is not loopback, not a tun/tap, has an Ethernet
// address and holds at least one address other than an IPv6 link-local one:
// normally CNI's veth end, eth0. In ifindex order, the Nth gets:
//
//   - a tap named tap<N>_mg (IFF_TAP|IFF_NO_PI|IFF_VNET_HDR, one queue),
//     with the pod interface's MTU, set up. The tap is not persistent: it
//     disappears when its last descriptor closes, so once the VMM holds the
//     only one (the caller closes its copy with Network.Close after starting
//     the VMM) a VMM that dies takes its tap with it;
//   - an ingress qdisc on the pod interface (unless one, ingress or clsact,
//     is there already: it is then shared and left in place by Detach) and
//     on the tap;
//   - on each of the two, a u32 match-all filter at priority 0x4d47 whose
//     action is "mirred egress redirect" to the other, so that
//     `tc filter add dev X parent ffff:fff2 prio 19783 protocol all u32 match
//     u8 0 0 action mirred egress redirect dev Y` holds both ways. The pod
//     namespace's own stack no longer sees the interface's inbound traffic;
//     the guest answers in its place, with the same MAC and addresses.
//
// Attach returns, per link, the names, the open tap, the MAC, the MTU and the
// addresses (CIDR), and the namespace's main-table routes (IPv4 and IPv6) in
// the agent's form, the device being the pod interface's name, which the
// agent gives the guest NIC it finds by MAC. Link routes come first, so that
// the gateways they make reachable exist before the routes through them.
// Left out, because the guest kernel makes them itself: routes of protocol
// kernel (the prefix route of each address, fe80::/64) and ra (learnt from
// router advertisements, which reach the guest as they reached the pod), IPv6
// link-local addresses and IPv6 addresses that are not permanent (SLAAC,
// temporary). Also left out, with a log line: multipath routes, routes via a
// gateway of the other family (RTA_VIA), non-unicast routes, and routes
// through an interface that is not attached.
//
// A namespace with no such interface (only loopback) gives a Network with no
// links and no routes: the VM gets loopback only. A host-network pod has no
// namespace of its own and must be refused by the caller: Attach would take
// the host's interfaces.
//
// On any error Attach undoes what it did (filters, the qdiscs it added,
// taps) before returning; tap names already present in the namespace (a
// previous Attach not detached) are refused with errdefs.ErrAlreadyExists
// before anything is changed.
//
// # Detach and recovery
//
// Detach undoes Attach from a State alone: the namespace path, and per link
// the pod interface's and the tap's names and whether Attach added the
// ingress qdisc. State is JSON-serialisable, so a restarted daemon that lost
// everything in memory detaches from what it persisted. Detach is idempotent:
// what is already gone is skipped, and a namespace that no longer exists (its
// file removed or unmounted) is fine. It deletes the taps even while a VMM
// still holds them (the VMM's descriptor then fails), so Stop the VM first.
package podnet
