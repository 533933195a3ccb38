// Package hostproc reads the host's processes from /proc for the benchmarks
// (hack/bench/cribench, hack/bench/vmmbench): who each one is (stat,
// cmdline, exe), its CPU time, and its memory (smaps_rollup and the thread
// count of status). It only reads; which processes belong to what under
// test is each benchmark's business.
package hostproc
