// Package criclient is the benchmarks' CRI client (hack/bench/cribench,
// hack/bench/vmmbench): a connection to a harness containerd's CRI socket,
// its runtime and image services, a bound on each call, and the labels that
// mark the pods a benchmark creates. What the benchmarks run through it is
// their own.
package criclient
