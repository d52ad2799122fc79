package shard

import (
	"context"
	"crypto/tls"
	"net"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// A client with keep-alive 0 gets TCP keep-alive on its socket, also behind
// a TLS wrapper, since the listeners accept with it off.
func TestEnableTCPKeepAliveLooksThroughWrappers(t *testing.T) {
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	for _, wrap := range []func(net.Conn) net.Conn{
		func(c net.Conn) net.Conn { return c },
		func(c net.Conn) net.Conn { return tls.Server(c, &tls.Config{}) },
	} {
		dialed, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		accepted, err := ln.Accept()
		require.NoError(t, err)
		tc := accepted.(*net.TCPConn)
		require.Equal(t, 0, sockopt(t, tc, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE))
		enableTCPKeepAlive(wrap(accepted))
		require.Equal(t, 1, sockopt(t, tc, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE))
		require.Equal(t, int(tcpKeepAlive.Idle.Seconds()), sockopt(t, tc, syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE))
		dialed.Close()
		accepted.Close()
	}
}

func sockopt(t *testing.T, c *net.TCPConn, level, opt int) int {
	t.Helper()
	rc, err := c.SyscallConn()
	require.NoError(t, err)
	var v int
	var serr error
	require.NoError(t, rc.Control(func(fd uintptr) { v, serr = syscall.GetsockoptInt(int(fd), level, opt) }))
	require.NoError(t, serr)
	return v
}
