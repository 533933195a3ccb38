// Package debugsrv serves a daemon's Go runtime profiles (net/http/pprof:
// heap, goroutines, CPU, allocations, blocking, mutexes, execution traces)
// on a unix socket of its own, mode 0600, so that a user can see where a slow
// start or a big heap comes from on a running node:
//
//	curl -s --unix-socket /run/magnetar/runc-debug.sock \
//	    http://magnetar/debug/pprof/heap > heap.pb.gz
//	go tool pprof heap.pb.gz
//
// It is off unless the daemon's configuration names the socket
// (debug_socket); it serves nothing but the profiles, and a panic in a
// handler ends that request only.
package debugsrv
