// Package pool keeps VMs booted ahead of the pods that will use them: a
// warm pool per VM shape (hypervisor, vCPUs, memory).
//
// The pool does not know how a VM is booted or what a pod needs of it: it
// calls a BootFunc to make an Item of a shape, keeps the ready ones, hands
// one out with Take (used once: whoever takes an Item owns and destroys
// it), and refills in the background:
//
//   - at most Config.Concurrency boots at a time, and none while a pod
//     start holds the pool (Hold): on a host with few cores a refill must
//     not slow the pod start that emptied the pool;
//   - within Config.MaxMemoryMiB of guest memory, ready and booting VMs
//     together;
//   - an Item that ends by itself while it waits (its Done closes) is
//     destroyed and replaced; a boot that fails is tried again after a
//     backoff that doubles up to a minute, and logged.
//
// Close stops the refills and destroys every ready Item. A pool is the
// daemon's: VMs of a daemon that died without Close are found and removed
// by its owner's next start (vmmsb), not here.
package pool
