package debugsrv

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/containerd/log"

	"github.com/magnetar-runtime/magnetar/shared/transport"
)

// Handler serves the profiles under /debug/pprof/ and nothing else.
func Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index) // heap, goroutine, allocs, block, mutex, threadcreate
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// Serve listens on the unix socket at path (mode 0600) and serves Handler
// until ctx ends, then closes the listener, which removes the socket. It
// returns once the socket is listening; errors after that are logged.
func Serve(ctx context.Context, path string) error {
	l, err := transport.Listen(path)
	if err != nil {
		return fmt.Errorf("debug socket: %w", err)
	}
	srv := &http.Server{
		Handler:           Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		// a CPU profile or a trace takes ?seconds=N (30 by default)
		WriteTimeout: 10 * time.Minute,
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.G(ctx).WithError(err).WithField("debug_socket", path).Error("debug server stopped")
		}
	}()
	log.G(ctx).WithField("debug_socket", path).Info("serving Go profiles")
	return nil
}
