package main

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"iotd/tlsconf/tlstest"
	"iotd/wire"
)

// The connection-storm limits set by config key and flag reach the broker:
// each refuses on the real binary, shows in /metrics and is logged. (The
// storms themselves: shard/storm_test.go.)
func TestConnectionStormLimitsOnTheRealBinary(t *testing.T) {
	const rate, burst = 5, 3
	bin := buildIotd(t)
	ca := tlstest.NewCA(t)
	srv := ca.Issue(t, "localhost", true)
	cfg := writeConfig(t, `
max-accept-rate = 5
max-tls-handshakes = 1
connect-timeout = "2s"
`)
	began := time.Now()
	p := startIotd(t, bin, "--config", cfg, "--max-accept-burst", "3",
		"--listen", "tcp://127.0.0.1:0", "--listen", "tls://127.0.0.1:0",
		"--tls-cert", srv.CertFile, "--tls-key", srv.KeyFile,
		"--metrics-listen", "127.0.0.1:0", "--sys-interval", "0")
	metric := func(key string) float64 { return scrapeProc(t, p.metrics)[key] }
	clientCfg := tlstest.ClientConfig(ca, nil)
	clientCfg.ServerName = "127.0.0.1"
	closedByPeer := func(err error) bool {
		return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
	}

	// max-tls-handshakes 1: a client that never sends its ClientHello holds
	// the slot; the next TLS connection is closed at accept.
	silent := opsDial(t, p.addrs["tls"])
	require.Eventually(t, func() bool { return metric("iotd_tls_handshakes_in_progress") == 1 }, 10*time.Second, 10*time.Millisecond)
	conn, err := net.DialTimeout("tcp", p.addrs["tls"], 5*time.Second)
	require.NoError(t, err)
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	err = tls.Client(conn, clientCfg).Handshake()
	conn.Close()
	require.True(t, closedByPeer(err), "refused at the cap: %v", err)
	require.Equal(t, 1.0, metric("iotd_connections_refused_total,reason=tls-handshakes"))
	require.Equal(t, 1.0, metric("iotd_limit_hits_total,limit=max-tls-handshakes"))
	p.log.waitFor(t, "limit=max-tls-handshakes", 1)
	// connect-timeout bounds the handshake: the silent one is closed.
	require.True(t, silent.closed(10*time.Second))
	require.Eventually(t, func() bool { return metric("iotd_tls_handshakes_in_progress") == 0 }, 10*time.Second, 10*time.Millisecond)

	// max-accept-rate 5, burst 3: of 30 connects in a row, the bucket's
	// worth get a CONNACK and the others are closed at once.
	var admitted, refused float64
	for range 30 {
		c := opsDial(t, p.addrs["tcp"])
		c.send(&wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: "", CleanSession: true})
		switch pk, err := c.read(); {
		case err == nil:
			_, ok := pk.(*wire.Connack)
			require.True(t, ok)
			admitted++
		default:
			require.True(t, closedByPeer(err), "refused: closed with nothing sent: %v", err)
			refused++
		}
		c.conn.Close()
	}
	elapsed := time.Since(began).Seconds()
	require.Positive(t, refused)
	require.LessOrEqual(t, admitted+2, burst+rate*elapsed+1, "the two TLS connections took tokens too")
	require.Equal(t, refused, metric("iotd_connections_refused_total,reason=accept-rate"))
	require.Equal(t, refused, metric("iotd_limit_hits_total,limit=max-accept-rate"))
	p.log.waitFor(t, "limit=max-accept-rate", 1)
}
