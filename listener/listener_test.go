package listener

import (
	"net"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in       string
		addr     string
		loopback bool
		err      string
	}{
		{in: "tcp://127.0.0.1:1883", addr: "127.0.0.1:1883", loopback: true},
		{in: "127.0.0.1:0", addr: "127.0.0.1:0", loopback: true},
		{in: "tcp://localhost:1883", addr: "localhost:1883", loopback: true},
		{in: "tcp://[::1]:1883", addr: "[::1]:1883", loopback: true},
		{in: "tcp://0.0.0.0:1883", addr: "0.0.0.0:1883"},
		{in: "tcp://:1883", addr: ":1883"},
		{in: "udp://127.0.0.1:1883", err: "unsupported scheme"},
		{in: "tcp://127.0.0.1", err: "missing port"},
		{in: "tcp://", err: "missing host:port"},
		{in: "tcp://127.0.0.1:1883/mqtt", err: "takes no path"},
	} {
		spec, err := Parse(tc.in)
		if tc.err != "" {
			require.ErrorContains(t, err, tc.err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.addr, spec.Addr, tc.in)
		require.Equal(t, tc.loopback, spec.IsLoopback(), tc.in)
	}
}

func TestListenReportsTheURL(t *testing.T) {
	spec, err := Parse("tcp://127.0.0.1:0")
	require.NoError(t, err)
	ln, err := Listen(spec)
	require.NoError(t, err)
	defer ln.Close()
	_, err = Listen(Spec{Scheme: "tcp", Addr: ln.Addr().String(), URL: "tcp://" + ln.Addr().String()})
	require.ErrorContains(t, err, "listen on tcp://"+ln.Addr().String())
}

// Accepted connections start with TCP keep-alive off: MQTT keep-alive does
// that job, and the four setsockopt calls are a measurable part of an accept.
func TestAcceptedConnectionsHaveNoTCPKeepAlive(t *testing.T) {
	spec, err := Parse("tcp://127.0.0.1:0")
	require.NoError(t, err)
	ln, err := Listen(spec) // tls:// and ws:// bind through the same listenTCP
	require.NoError(t, err)
	defer ln.Close()
	dialed, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer dialed.Close()
	accepted, err := ln.Accept()
	require.NoError(t, err)
	defer accepted.Close()
	require.Equal(t, 0, soKeepAlive(t, accepted.(*net.TCPConn)))
}

func soKeepAlive(t *testing.T, c *net.TCPConn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	require.NoError(t, err)
	var v int
	var serr error
	require.NoError(t, rc.Control(func(fd uintptr) {
		v, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
	}))
	require.NoError(t, serr)
	return v
}
