// Package agentclient is the host side of the agent protocol
// (shared/agentapi): it dials the agent in a VM over the transport the VMM
// gives, checks the protocol version, and wraps the three services that
// share the one ttrpc connection.
//
//	c, err := agentclient.Dial(ctx, agentclient.Target{Serial: dir + "/agent.sock"},
//		agentclient.Options{Alive: func() error { return vmmProcessError(cmd) }})
//	defer c.Close()
//	c.Task()     // containerd Task API v3 client (taskapi.TTRPCTaskService)
//	c.Sandbox()  // Health, Setup, SyncClock, GetEvents, DebugExec, Shutdown
//	c.Stdout(ctx, id, execID) / c.Stderr(...)  // io.ReadCloser until EOF; Close detaches
//	c.Stdin(ctx, id, execID)                   // io.WriteCloser; Close = EOF
//
// The stdio helpers implement agentapi's credit-based flow control (ttrpc
// itself has none), so a slow reader or a process that does not read stdin
// blocks only its own stream.
//
//	c.SyncClock(ctx, 10*time.Millisecond)
//	c.Events(ctx, afterSeq, func(*agentapi.Event) error { … })
//
// # Transports (Target)
//
// Target.Address is the shared/transport address; transport dials it.
//
//   - Serial: the unix socket of QEMU's virtio-serial chardev
//     (-chardev socket,id=agent,path=P,server=on,wait=off
//     -device virtserialport,chardev=agent,name=magnetar.agent). QEMU accepts
//     at once and holds what the host writes until the guest opens the port,
//     so an attempt connects and then waits for Health for the rest of the
//     deadline (AttemptTimeout 0), checking Alive meanwhile.
//   - HybridVsock: Cloud Hypervisor's vsock socket; "CONNECT <port>\n" →
//     "OK <n>\n" (shared/transport's handshake), retried while the guest does
//     not listen yet.
//   - VsockCID: AF_VSOCK to cid:port through shared/transport (context-aware
//     non-blocking connect). github.com/mdlayher/vsock is on the module proxy,
//     but its Dial takes no context (a connect can overrun the deadline by
//     the kernel's 2 s vsock connect timeout) and v1.4.0 would raise
//     golang.org/x/net, so the raw x/sys dialer is kept (transport's one
//     vsock dial function, where it would be swapped).
//
// # Dial semantics
//
// Dial runs shared/transport's DialWith loop (its backoff and its one set
// of errors that retrying cannot fix); each attempt connects and calls New
// (a ttrpc client and Health). It retries with backoff (RetryMin..RetryMax)
// until its context ends, because the guest is usually still booting.
// Options.Alive is transport's peer hook: checked before each attempt and
// every AlivePoll during one or a backoff; once the VMM process is gone Dial
// fails at once with ErrVMMExited (transport.ErrPeerExited) and the last
// attempt's error, instead of burning the deadline. A deadline fails with an
// error wrapping context.DeadlineExceeded that names the target, the number
// of attempts and the last error. An agent of another protocol major fails
// with FailedPrecondition without retrying.
//
// # Errors
//
// One ttrpc client interceptor converts the error of every unary call
// (Task(), Sandbox(), TTRPC().Call): a ttrpc status becomes an errdefs error
// (errgrpc.ToNative: errdefs.IsNotFound etc. work), a broken connection
// errdefs.ErrUnavailable, and a call whose own context ended returns the
// context's error. The stdio helpers convert their streams' errors the same
// way; Streams() is raw. Done() is closed when the connection ends; the
// agent serves again after a disconnect, so the host re-Dials.
package agentclient
