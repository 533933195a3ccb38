package wasmtime

/*
#include <stdint.h>
#include <stdlib.h>

// The part of wasmtime's C API (wasmtime/store.h, wasmtime/error.h) that
// wasmtime-go v39 does not wrap. libwasmtime.a is linked by wasmtime-go.
typedef struct wasmtime_context wasmtime_context_t;
typedef struct wasmtime_store wasmtime_store_t;
typedef struct wasmtime_error wasmtime_error_t;
extern wasmtime_error_t *wasmtime_error_new(const char *);
extern void wasmtime_store_epoch_deadline_callback(
	wasmtime_store_t *store,
	wasmtime_error_t *(*func)(wasmtime_context_t *, void *, uint64_t *, uint8_t *),
	void *data, void (*finalizer)(void *));

// mg_epoch runs on the store's own thread when guest code passes an epoch
// check after the engine's epoch was incremented (by some Kill): it traps
// the store whose flag is set and gives every other store one more epoch.
// Plain C: no Go on the wasm thread, no cgo callback per tick.
static wasmtime_error_t *mg_epoch(wasmtime_context_t *cx, void *data,
		uint64_t *delta, uint8_t *kind) {
	int32_t *killed = data;
	if (__atomic_load_n(killed, __ATOMIC_ACQUIRE)) {
		return wasmtime_error_new("magnetar: instance killed");
	}
	*delta = 1;
	*kind = 0; // WASMTIME_UPDATE_DEADLINE_CONTINUE
	return NULL;
}

static int32_t *mg_flag_new(void) { return calloc(1, sizeof(int32_t)); }
static void mg_flag_free(int32_t *f) { free(f); }
static void mg_flag_set(int32_t *f) { __atomic_store_n(f, 1, __ATOMIC_RELEASE); }

static void mg_store_set_epoch_callback(void *store, int32_t *flag) {
	wasmtime_store_epoch_deadline_callback(store, mg_epoch, flag, NULL);
}
*/
import "C"

import (
	"errors"
	"reflect"
	"unsafe"

	wt "github.com/bytecodealliance/wasmtime-go/v39"
)

// killFlag is a store's kill flag, in C memory so that mg_epoch reads it
// without touching Go memory. It is freed after the store is closed.
type killFlag struct{ p *C.int32_t }

func newKillFlag() killFlag { return killFlag{p: C.mg_flag_new()} }
func (f killFlag) set()     { C.mg_flag_set(f.p) }
func (f killFlag) free()    { C.mg_flag_free(f.p) }

// errStoreLayout is returned by New when the wasmtime-go Store is not laid
// out as storePtr expects (another wasmtime-go version).
var errStoreLayout = errors.New("wasmtime-go Store layout unknown: cannot install the per-store epoch callback")

// storeLayoutOK checks that wasmtime.Store's first field is the
// *C.wasmtime_store_t that wasmtime_store_epoch_deadline_callback needs;
// wasmtime-go only exposes the store's context.
var storeLayoutOK = func() bool {
	f, ok := reflect.TypeFor[wt.Store]().FieldByName("_ptr")
	return ok && f.Offset == 0 && f.Type.Kind() == reflect.Pointer
}()

// setEpochCallback installs mg_epoch with flag on store.
func setEpochCallback(store *wt.Store, flag killFlag) {
	ptr := *(*unsafe.Pointer)(unsafe.Pointer(store))
	C.mg_store_set_epoch_callback(ptr, flag.p)
}
