package shard

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"iotd/internal/syncbuf"
)

// newIdleBroker is a broker that serves nothing, for admission's own
// tests: they call Admit directly with a clock of their own.
func newIdleBroker(t *testing.T, cfg Config) *Broker {
	t.Helper()
	b, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, b.Close(ctx))
	})
	return b
}

// pipeConn is one end of a net.Pipe, whose other end sees the close.
func pipeConn(t *testing.T) (conn, peer net.Conn) {
	conn, peer = net.Pipe()
	t.Cleanup(func() { conn.Close(); peer.Close() })
	return conn, peer
}

func requireClosed(t *testing.T, peer net.Conn) {
	t.Helper()
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := peer.Read(make([]byte, 1))
	require.Error(t, err)
	require.False(t, isTimeout(err), "the refused connection was not closed")
}

// The accept rate is a token bucket: a full burst at once, then one
// connection per 1/rate; each refusal closes the connection and counts.
func TestAdmissionAcceptRate(t *testing.T) {
	logs := &syncbuf.Buffer{}
	b := newIdleBroker(t, Config{MaxAcceptRate: 10, MaxAcceptBurst: 3, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	now := time.Unix(1_000_000, 0)
	b.admit.now = func() time.Time { return now }

	admit := func() bool {
		conn, peer := pipeConn(t)
		ok := b.admit.Admit(conn, false)
		if !ok {
			requireClosed(t, peer)
		}
		return ok
	}
	for i := range 3 {
		require.True(t, admit(), "burst: connection %d", i)
	}
	require.False(t, admit(), "the burst is spent")
	require.False(t, admit())
	now = now.Add(99 * time.Millisecond)
	require.False(t, admit(), "a token takes 100ms at 10/s")
	now = now.Add(2 * time.Millisecond)
	require.True(t, admit())
	require.False(t, admit())
	now = now.Add(time.Hour)
	for i := range 3 {
		require.True(t, admit(), "refilled to the burst, not beyond: connection %d", i)
	}
	require.False(t, admit())

	require.Equal(t, int64(5), b.Stats().Refused[RefusedAcceptRate])
	require.Equal(t, 1, strings.Count(logs.String(), "over max-accept-rate"), "rate-limited log:\n%s", logs.String())
	require.Contains(t, logs.String(), "limit=max-accept-rate")
	require.Equal(t, int64(0), b.Stats().TLSHandshakes, "plain connections take no handshake slot")
}

// The burst defaults to one second's worth; 0 means no limit at all.
func TestAdmissionAcceptRateDefaults(t *testing.T) {
	b := newIdleBroker(t, Config{MaxAcceptRate: 7})
	require.Equal(t, 7, b.Config().MaxAcceptBurst)
	b = newIdleBroker(t, Config{})
	require.Nil(t, b.admit.rate)
	for range 1000 {
		conn, _ := pipeConn(t)
		require.True(t, b.admit.Admit(conn, false))
	}
	d := DefaultConfig()
	require.Positive(t, d.MaxTLSHandshakes)
}

// The default bucket admits 20,000 connections at one instant, so the
// bench's 10,000- and 19,000-connection runs are never refused however fast
// they connect, and then 5000 a second.
func TestAdmissionDefaultAdmitsTheBenchRunsAtOnce(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Persistence = false
	b := newIdleBroker(t, cfg)
	now := time.Unix(1_000_000, 0)
	b.admit.now = func() time.Time { return now }
	conn, _ := net.Pipe()
	defer conn.Close()
	for i := range 20000 {
		if !b.admit.Admit(conn, false) {
			t.Fatalf("connection %d refused", i)
		}
	}
	refused, peer := pipeConn(t)
	require.False(t, b.admit.Admit(refused, false))
	requireClosed(t, peer)
	now = now.Add(time.Second)
	for i := range 5000 {
		if !b.admit.Admit(conn, false) {
			t.Fatalf("connection %d in the next second refused", i)
		}
	}
	require.False(t, b.admit.Admit(refused, false))
}

// TLS connections hold a slot from Admit to HandshakeDone; past the cap a
// new one is refused at once, and a freed slot lets the next in. Plain
// connections are not counted.
func TestAdmissionTLSHandshakeCap(t *testing.T) {
	logs := &syncbuf.Buffer{}
	b := newIdleBroker(t, Config{MaxTLSHandshakes: 2, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	a := b.admit
	c1, _ := pipeConn(t)
	c2, _ := pipeConn(t)
	require.True(t, a.Admit(c1, true))
	require.True(t, a.Admit(c2, true))
	plain, _ := pipeConn(t)
	require.True(t, a.Admit(plain, false), "plain connections are not capped")
	require.Equal(t, int64(2), b.Stats().TLSHandshakes)

	over, peer := pipeConn(t)
	require.False(t, a.Admit(over, true))
	requireClosed(t, peer)
	require.Equal(t, int64(2), b.Stats().TLSHandshakes, "a refusal holds no slot")

	a.HandshakeDone()
	c3, _ := pipeConn(t)
	require.True(t, a.Admit(c3, true))
	a.HandshakeDone()
	a.HandshakeDone()
	require.Equal(t, int64(0), b.Stats().TLSHandshakes)
	require.Equal(t, int64(1), b.Stats().Refused[RefusedTLSHandshakes])
	require.Contains(t, logs.String(), "max-tls-handshakes are in progress")
	require.Contains(t, logs.String(), "limit=max-tls-handshakes")

	// Without a cap handshakes are still counted, for the gauge.
	b = newIdleBroker(t, Config{})
	for range 5 {
		c, _ := pipeConn(t)
		require.True(t, b.admit.Admit(c, true))
	}
	require.Equal(t, int64(5), b.Stats().TLSHandshakes)
}
