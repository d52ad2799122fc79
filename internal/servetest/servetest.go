// Package servetest runs a server under test on its own goroutine and stops
// it once, whether the test stops it early or ends. It imports nothing of
// iotd, so shard's own tests and the packages that drive a broker from
// outside (through shard/shardtest) share it. Only _test.go files and test
// helpers import it.
package servetest

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Run calls serve on a new goroutine. stop closes ln, then the server (with
// closeServer, given 10 s), and waits for serve to return; it is idempotent
// (a test may stop a broker early, for example to restart it on the same
// data directory) and also runs when the test ends.
func Run(t testing.TB, ln net.Listener, serve func(), closeServer func(context.Context) error) (stop func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		serve()
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			ln.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			require.NoError(t, closeServer(ctx))
			<-done
		})
	}
	t.Cleanup(stop)
	return stop
}
