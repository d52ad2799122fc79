package listener_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"iotd/listener"
	"iotd/shard"
	"iotd/tlsconf"
	"iotd/tlsconf/tlstest"
)

func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// A ws:// listener passes each TCP connection through the broker's
// accept-rate limit before its HTTP server reads a byte: a refused one is
// closed without an HTTP response, and counted.
func TestWebSocketAcceptRate(t *testing.T) {
	const rate, burst, tries = 1, 2, 20
	began := time.Now()
	b, ln := serveWSConfig(t, "ws://127.0.0.1:0/mqtt", nil, shard.Config{Shards: 2, MaxAcceptRate: rate, MaxAcceptBurst: burst})
	addr := ln.Addr().String()
	var admitted, refused int64
	for range tries {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		require.NoError(t, err)
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		conn.Write([]byte("GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err == nil {
			require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
			admitted++
		} else {
			require.True(t, closedByPeer(err), "refused: closed with nothing sent: %v", err)
			refused++
		}
		conn.Close()
	}
	elapsed := time.Since(began)
	st := b.Stats()
	require.Equal(t, refused, st.Refused[shard.RefusedAcceptRate])
	require.LessOrEqual(t, float64(admitted), burst+rate*elapsed.Seconds()+1, "the token bucket bounds what is admitted")
	require.Equal(t, admitted, st.ConnectionsTotal)
	require.Positive(t, refused)
}

// wssServer serves a broker on a wss:// listener with the TLS handshake cap.
func wssServer(t *testing.T, cfg shard.Config) (*shard.Broker, net.Listener, *tls.Config) {
	t.Helper()
	ca := tlstest.NewCA(t)
	srv := ca.Issue(t, "localhost", true)
	r, err := tlsconf.New(tlsconf.Config{CertFile: srv.CertFile, KeyFile: srv.KeyFile})
	require.NoError(t, err)
	b, ln := serveWSConfig(t, "wss://127.0.0.1:0/mqtt", r.TLSConfig(), cfg)
	client := tlstest.ClientConfig(ca, nil)
	client.ServerName = "127.0.0.1" // for tls.Client; tls.Dial and Paho take it from the address
	return b, ln, client
}

// A wss:// connection holds a handshake slot from accept until its TLS
// handshake ends (not until the HTTP upgrade): at the cap, further TLS
// connections are closed at accept and counted; when the slot frees, clients
// connect as usual.
func TestWebSocketTLSHandshakeCap(t *testing.T) {
	b, ln, clientCfg := wssServer(t, shard.Config{Shards: 2, MaxTLSHandshakes: 1})
	addr := ln.Addr().String()
	silent, err := net.Dial("tcp", addr) // never sends its ClientHello
	require.NoError(t, err)
	defer silent.Close()
	require.Eventually(t, func() bool { return b.Stats().TLSHandshakes == 1 }, 5*time.Second, time.Millisecond)

	for range 3 {
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		err = tls.Client(conn, clientCfg).Handshake()
		conn.Close()
		require.True(t, closedByPeer(err), "refused at the cap: %v", err)
	}
	require.Equal(t, int64(3), b.Stats().Refused[shard.RefusedTLSHandshakes])

	silent.Close() // its handshake fails: the slot is free
	require.Eventually(t, func() bool { return b.Stats().TLSHandshakes == 0 }, 5*time.Second, time.Millisecond)
	sub := pahoWS(t, "wss://"+addr+"/mqtt", "gate-wss-sub", clientCfg)
	pub := pahoWS(t, "wss://"+addr+"/mqtt", "gate-wss-pub", clientCfg)
	pahoRoundTrip(t, sub, pub)
	require.Zero(t, b.Stats().TLSHandshakes, "a completed handshake frees its slot before the HTTP upgrade")
	require.Equal(t, int64(3), b.Stats().Refused[shard.RefusedTLSHandshakes])
}

// Closing a wss:// listener ends the TLS handshakes in progress, which free
// their slots.
func TestWebSocketTLSCloseEndsHandshakes(t *testing.T) {
	b, ln, _ := wssServer(t, shard.Config{Shards: 2})
	for range 3 {
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		defer c.Close()
	}
	require.Eventually(t, func() bool { return b.Stats().TLSHandshakes == 3 }, 5*time.Second, time.Millisecond)
	require.NoError(t, ln.Close())
	require.Eventually(t, func() bool { return b.Stats().TLSHandshakes == 0 }, 5*time.Second, time.Millisecond)
}

// Only ws:// and wss:// listeners take a gate: the broker admits what
// other listeners' Accept returns itself.
func TestSetGate(t *testing.T) {
	tcp, err := listener.Listen(listener.Spec{Scheme: "tcp", Addr: "127.0.0.1:0", URL: "tcp://127.0.0.1:0"})
	require.NoError(t, err)
	defer tcp.Close()
	require.False(t, listener.SetGate(tcp, nil))
	ws, err := listener.Listen(listener.Spec{Scheme: "ws", Addr: "127.0.0.1:0", URL: "ws://127.0.0.1:0"})
	require.NoError(t, err)
	defer ws.Close()
	require.True(t, listener.SetGate(ws, nil))
}
