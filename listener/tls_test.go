package listener

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"iotd/tlsconf"
	"iotd/tlsconf/tlstest"
)

func TestParseTLS(t *testing.T) {
	spec, err := Parse("tls://0.0.0.0:8883")
	require.NoError(t, err)
	require.Equal(t, "tls", spec.Scheme)
	require.Equal(t, "0.0.0.0:8883", spec.Addr)
	require.False(t, spec.IsLoopback())
	spec, err = Parse("tls://127.0.0.1:8883")
	require.NoError(t, err)
	require.True(t, spec.IsLoopback())

	_, err = Listen(spec)
	require.ErrorContains(t, err, "needs a certificate")
	tcp, err := Parse("tcp://127.0.0.1:0")
	require.NoError(t, err)
	_, err = ListenTLS(tcp, &tls.Config{})
	require.ErrorContains(t, err, "not a tls:// listener")
}

// A tls:// listener serves the reloader's certificate; the handshake runs
// on the connection's first read, not in Accept.
func TestListenTLSHandshake(t *testing.T) {
	ca := tlstest.NewCA(t)
	srv := ca.Issue(t, "localhost", true)
	r, err := tlsconf.New(tlsconf.Config{CertFile: srv.CertFile, KeyFile: srv.KeyFile})
	require.NoError(t, err)
	spec, err := Parse("tls://127.0.0.1:0")
	require.NoError(t, err)
	ln, err := ListenTLS(spec, r.TLSConfig())
	require.NoError(t, err)
	defer ln.Close()

	// A client that never speaks does not block Accept for the next one.
	silent, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer silent.Close()
	got := make(chan error, 2)
	go func() {
		for range 2 {
			c, err := ln.Accept()
			if err != nil {
				got <- err
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4)
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.ReadFull(c, buf); err != nil {
					got <- err
					return
				}
				_, err := c.Write(buf)
				got <- err
			}()
		}
	}()
	conn, err := tls.Dial("tcp", ln.Addr().String(), tlstest.ClientConfig(ca, nil))
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.Write([]byte("ping"))
	require.NoError(t, err)
	buf := make([]byte, 4)
	_, err = io.ReadFull(conn, buf)
	require.NoError(t, err)
	require.Equal(t, "ping", string(buf))
	require.NoError(t, <-got)
	require.GreaterOrEqual(t, conn.ConnectionState().Version, uint16(tls.VersionTLS12))
}
