// Command sbctl calls the Sandbox API (containerd.services.sandbox.v1
// Controller, gRPC) of a Magnetar sandboxer daemon directly, as containerd
// would, for tests below containerd and for troubleshooting:
//
//	sbctl -address SOCKET [-sandboxer NAME] [-cgroup-parent P] create ID
//	sbctl -address SOCKET start|status|stop|shutdown ID
//
// create makes a host-network pod (nothing of the host's network changes)
// that containerd knows nothing of; status prints the sandbox's state and
// pid. Errors are printed with their gRPC code ("sbctl: status ID:
// NotFound: ...") and exit 1; a bad command line exits 2.
package main
