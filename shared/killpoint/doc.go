// Package killpoint is a debug hook for crash testing (hack/chaos): a daemon
// started with MAGNETAR_KILLPOINT=NAME (or NAME:N, the Nth time the point is
// reached, counting from 1) kills itself with SIGKILL when it reaches the
// named point, so that a test can stop it exactly in the middle of an
// operation (after a record is persisted and before the answer, after a
// process is made and before its record is) and check what the restarted
// daemon makes of it.
//
// The variable is read once, by Setup at daemon start; an unknown name or a
// malformed count is an error there, so that a test never runs with a hook
// that cannot fire. Unset (production), Hit costs a comparison of an empty
// string.
//
// The points (Names):
//
//	controller.create.driver     Controller.Create: the driver made the sandbox, no record yet
//	controller.create.persisted  Controller.Create: the record is written, no answer yet
//	controller.start.starting    Controller.Start: phase "starting" persisted, the driver's Start not called
//	controller.start.started     Controller.Start: the driver's Start returned, phase "running" not persisted
//	task.create.started          Task.Create: the backend made the process, its record not written
//	vmm.pool.claimed             magnetar-vmm's Start: a pool VM marked as the pod's, nothing of the pod done to it
package killpoint
