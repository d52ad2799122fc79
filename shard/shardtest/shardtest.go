// Package shardtest runs an in-process broker on an ephemeral loopback port
// for the tests of the packages that drive one (loadtest, netfuzz, metrics).
// Only _test.go files import it. shard's own tests cannot (this package
// imports shard) and keep their own harness.
package shardtest

import (
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"iotd/internal/servetest"
	"iotd/shard"
)

// StartBroker serves a broker made from cfg on 127.0.0.1:0 and returns the
// address it listens on. stop is Serve's (see there).
func StartBroker(t testing.TB, cfg shard.Config) (addr string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	_, stop = Serve(t, cfg, ln)
	return ln.Addr().String(), stop
}

// Serve makes a broker from cfg and serves ln with it. stop closes the
// listener and the broker and waits for Serve to return; it is idempotent
// (a test may stop the broker early, for example to restart it on the same
// data directory) and also runs when the test ends.
func Serve(t testing.TB, cfg shard.Config, ln net.Listener) (b *shard.Broker, stop func()) {
	t.Helper()
	b, err := shard.New(cfg)
	if err != nil {
		ln.Close()
	}
	require.NoError(t, err)
	stop = servetest.Run(t, ln, func() { b.Serve(ln) }, b.Close)
	return b, stop
}
