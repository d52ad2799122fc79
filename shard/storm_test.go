package shard

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"iotd/internal/syncbuf"
	"iotd/listener"
	"iotd/tlsconf"
	"iotd/tlsconf/tlstest"
	"iotd/wire"
)

// Connection storms: many clients connecting as fast as they can, against
// a broker with a low accept rate (or TLS handshake cap). The excess is
// closed at once and counted, while connected clients keep exchanging
// messages and a new client gets in by retrying, as clients do.

// stormWorkers open connections at once; with the broker's side that is
// at most twice as many descriptors, well under the process's limit.
const stormWorkers = 32

// storm is a connection flood: each worker dials, completes TLS (tlsCfg
// set), sends CONNECT and waits for the CONNACK or the close, then closes
// and starts again, until stop or maxAttempts or maxTime.
type storm struct {
	attempts, admitted, refused, odd atomic.Int64
	slowestRefusal                   atomic.Int64 // ns from dial to close
	oddErr                           atomic.Value // first unexpected error
	stopc                            chan struct{}
	stopOnce                         sync.Once
	wg                               sync.WaitGroup
	exhausted                        atomic.Bool // ended by maxAttempts or maxTime, not by stop
}

func startStorm(addr string, tlsCfg *tls.Config, maxAttempts int64, maxTime time.Duration) *storm {
	s := &storm{stopc: make(chan struct{})}
	end := time.Now().Add(maxTime)
	for w := range stormWorkers {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-s.stopc:
					return
				default:
				}
				if s.attempts.Add(1) > maxAttempts || time.Now().After(end) {
					s.exhausted.Store(true)
					return
				}
				s.attempt(addr, tlsCfg, fmt.Sprintf("storm-%d-%d", w, i))
			}
		}()
	}
	return s
}

func (s *storm) attempt(addr string, tlsCfg *tls.Config, id string) {
	start := time.Now()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		s.unexpected(err)
		return
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	var c net.Conn = conn
	if tlsCfg != nil {
		tc := tls.Client(conn, tlsCfg)
		if err := tc.Handshake(); err != nil {
			s.closedOr(err, start)
			return
		}
		c = tc
	}
	if _, err := c.Write((&wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: id, CleanSession: true}).Append(nil)); err != nil {
		s.closedOr(err, start)
		return
	}
	fh, _, err := wire.NewReader(c, 64).ReadPacket()
	switch {
	case err != nil:
		s.closedOr(err, start)
	case fh.Type == wire.CONNACK:
		s.admitted.Add(1)
	default:
		s.unexpected(fmt.Errorf("got %s", fh.Type))
	}
}

// closedOr counts err as a refusal if it means the broker closed the
// connection (nothing was received before it).
func (s *storm) closedOr(err error, start time.Time) {
	if !isClosedByPeer(err) {
		s.unexpected(err)
		return
	}
	s.refused.Add(1)
	d := int64(time.Since(start))
	for {
		old := s.slowestRefusal.Load()
		if d <= old || s.slowestRefusal.CompareAndSwap(old, d) {
			return
		}
	}
}

func (s *storm) unexpected(err error) {
	s.odd.Add(1)
	s.oddErr.CompareAndSwap(nil, err.Error())
}

func isClosedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// atLeast lets the storm run until it has made n attempts.
func (s *storm) atLeast(t *testing.T, n int64) {
	t.Helper()
	require.Eventually(t, func() bool { return s.attempts.Load() >= n || s.exhausted.Load() }, time.Minute, time.Millisecond)
}

// stop ends the storm and waits for its workers; it reports whether the
// storm was still running (not cut short by its own bounds).
func (s *storm) stop() bool {
	s.stopOnce.Do(func() { close(s.stopc) })
	s.wg.Wait()
	return !s.exhausted.Load()
}

// check: every connection was admitted or refused, and each refused one
// was closed within bound of its dial (the time it waited in the listen
// backlog included).
func (s *storm) check(t *testing.T, bound time.Duration) {
	t.Helper()
	require.Zero(t, s.odd.Load(), "every storm connection was admitted or closed by the broker; first other outcome: %v", s.oddErr.Load())
	require.Less(t, time.Duration(s.slowestRefusal.Load()), bound, "refused connections are closed quickly")
}

// connectRetrying connects a client the way a real one does under a storm:
// a refused connection is retried after a short pause, for up to bound. It
// returns the client and how many of its tries were refused.
func connectRetrying(t *testing.T, addr string, tlsCfg *tls.Config, id string, bound time.Duration) (*rawClient, int64) {
	t.Helper()
	var refused int64
	deadline := time.Now().Add(bound)
	for time.Now().Before(deadline) {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		require.NoError(t, err)
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		c := conn
		if tlsCfg != nil {
			tc := tls.Client(conn, tlsCfg)
			if err := tc.Handshake(); err != nil {
				conn.Close()
				require.True(t, isClosedByPeer(err), "TLS handshake: %v", err)
				refused++
				time.Sleep(10 * time.Millisecond)
				continue
			}
			c = tc
		}
		rc := &rawClient{t: t, conn: c, r: wire.NewReader(c, 1<<20)}
		rc.write((&wire.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, ClientID: id, CleanSession: true}).Append(nil))
		p, err := rc.read(10 * time.Second)
		if err != nil {
			conn.Close()
			require.True(t, isClosedByPeer(err), "waiting for CONNACK: %v", err)
			refused++
			time.Sleep(10 * time.Millisecond)
			continue
		}
		require.Equal(t, wire.Accepted, p.(*wire.Connack).ReturnCode)
		c.SetDeadline(time.Time{})
		t.Cleanup(func() { c.Close() })
		return rc, refused
	}
	t.Fatalf("%s: no connection admitted within %v (%d refused)", id, bound, refused)
	return nil, 0
}

// legitTraffic checks that connected clients still get their messages
// through while the storm runs.
func legitTraffic(t *testing.T, pub, sub *rawClient, topic string, n int, firstID uint16) {
	t.Helper()
	for i := range n {
		payload := fmt.Sprintf("%s-%d", topic, i)
		pub.publishAcked(topic, payload, false, firstID+uint16(i))
		sub.expectMessage(topic, payload)
	}
}

// clientsKeepWorking is the part both storm tests share, while storm s runs
// against b: once b has refused minRefused of its connections (for reason),
// pub and sub still exchange messages, and a newcomer gets in by retrying
// and exchanges messages with both; the storm then runs to minAttempts and
// must not have ended on its own bounds before that. It stops the storm and
// returns how many of the newcomer's tries were refused.
func (s *storm) clientsKeepWorking(t *testing.T, b *testBroker, tlsCfg *tls.Config, pub, sub *rawClient, reason string, minRefused, minAttempts int64) int64 {
	t.Helper()
	require.Eventually(t, func() bool { return b.Stats().Refused[reason] >= minRefused }, 30*time.Second, time.Millisecond,
		"the storm is refused")
	legitTraffic(t, pub, sub, "legit/before", 10, 1)
	newcomer, newcomerRefused := connectRetrying(t, b.addr, tlsCfg, "newcomer", 30*time.Second)
	require.Equal(t, []byte{1}, newcomer.subscribe(1, wire.Subscription{Filter: "newcomer/in", QoS: 1}).ReturnCodes)
	legitTraffic(t, pub, newcomer, "newcomer/in", 5, 100)
	legitTraffic(t, newcomer, sub, "legit/from-newcomer", 5, 200)
	s.atLeast(t, minAttempts)
	require.True(t, s.stop(), "the storm lasted until the legitimate clients were done (%d attempts)", s.attempts.Load())
	return newcomerRefused
}

// A storm of plain TCP connects against --max-accept-rate: all but the
// rate's worth are closed at once with nothing read or written, each is
// counted, and clients connected before and during it keep working.
func TestConnectionStormAcceptRate(t *testing.T) {
	const rate, burst = 50, 10
	logs := &syncbuf.Buffer{}
	began := time.Now() // the bucket starts full when the broker is made
	b := runBroker(t, Config{MaxAcceptRate: rate, MaxAcceptBurst: burst, ConnectTimeout: time.Minute,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	sub := b.subscriber(t, "legit-sub", "legit/+", 1)
	pub, _ := b.connect(t, "legit-pub", true)

	s := startStorm(b.addr, nil, 200000, time.Minute)
	newcomerRefused := s.clientsKeepWorking(t, b, nil, pub, sub, RefusedAcceptRate, 200, 3000)
	elapsed := time.Since(began)

	s.check(t, 5*time.Second)
	st := b.Stats()
	t.Logf("storm: %d attempts in %v, %d admitted, %d refused (slowest close %v); newcomer refused %d times",
		s.attempts.Load(), elapsed.Round(time.Millisecond), s.admitted.Load(), s.refused.Load(),
		time.Duration(s.slowestRefusal.Load()).Round(time.Microsecond), newcomerRefused)
	require.Equal(t, s.refused.Load()+newcomerRefused, st.Refused[RefusedAcceptRate], "every refusal counted, nothing else refused")
	require.Equal(t, s.admitted.Load()+3, st.ConnectionsTotal, "admitted: the storm's, legit-sub, legit-pub, newcomer")
	require.LessOrEqual(t, float64(st.ConnectionsTotal), burst+rate*elapsed.Seconds()+1, "the token bucket bounds what is admitted")
	lines := strings.Count(logs.String(), "refused a connection: over max-accept-rate")
	require.GreaterOrEqual(t, lines, 1)
	require.LessOrEqual(t, lines, 1+int(elapsed/limitLogEvery), "logged at most once per %v:\n%s", limitLogEvery, logs.String())
}

// runTLSBroker is runBroker on a tls:// listener (listener.ListenTLS, as
// iotd serves it). It returns the client configuration that trusts it.
func runTLSBroker(t *testing.T, cfg Config) (*testBroker, *tls.Config) {
	t.Helper()
	ca := tlstest.NewCA(t)
	srv := ca.Issue(t, "localhost", true)
	r, err := tlsconf.New(tlsconf.Config{CertFile: srv.CertFile, KeyFile: srv.KeyFile})
	require.NoError(t, err)
	if cfg.Shards == 0 {
		cfg.Shards = 4
	}
	spec, err := listener.Parse("tls://127.0.0.1:0")
	require.NoError(t, err)
	ln, err := listener.ListenTLS(spec, r.TLSConfig())
	require.NoError(t, err)
	b, _ := serveOn(t, cfg, ln, ListenerOptions{})
	client := tlstest.ClientConfig(ca, nil)
	client.ServerName = "127.0.0.1"
	return b, client
}

// A storm of TLS connects against --max-tls-handshakes: while the cap's
// worth of handshakes are in progress, further TLS connections are closed at
// accept (before the ClientHello is read) and counted; connected clients
// keep working, a new one gets in by retrying, and every slot is freed.
func TestConnectionStormTLSHandshakes(t *testing.T) {
	const maxTLS = 8
	b, tlsCfg := runTLSBroker(t, Config{MaxTLSHandshakes: maxTLS, ConnectTimeout: time.Minute})
	sub, _ := connectRetrying(t, b.addr, tlsCfg, "legit-sub", 10*time.Second)
	require.Equal(t, []byte{1}, sub.subscribe(1, wire.Subscription{Filter: "legit/+", QoS: 1}).ReturnCodes)
	pub, _ := connectRetrying(t, b.addr, tlsCfg, "legit-pub", 10*time.Second)
	require.Zero(t, b.Stats().Refused[RefusedTLSHandshakes], "no storm yet")

	s := startStorm(b.addr, tlsCfg, 15000, time.Minute)
	newcomerRefused := s.clientsKeepWorking(t, b, tlsCfg, pub, sub, RefusedTLSHandshakes, 20, 300)

	s.check(t, 10*time.Second) // TLS storms saturate both cores: the accept loop waits its turn
	st := b.Stats()
	t.Logf("TLS storm: %d attempts, %d admitted, %d refused (slowest close %v); newcomer refused %d times",
		s.attempts.Load(), s.admitted.Load(), s.refused.Load(), time.Duration(s.slowestRefusal.Load()).Round(time.Microsecond), newcomerRefused)
	require.Equal(t, s.refused.Load()+newcomerRefused, st.Refused[RefusedTLSHandshakes], "every refusal counted, nothing else refused")
	require.Equal(t, s.admitted.Load()+3, st.ConnectionsTotal)
	require.Eventually(t, func() bool { return b.Stats().TLSHandshakes == 0 }, 10*time.Second, time.Millisecond,
		"every handshake slot is freed")
}

// A TLS handshake is bounded by the connect timeout: a client that opens
// the connection and sends nothing holds its slot only that long, and is
// then closed and counted as a connect timeout. Meanwhile, at the cap, new
// TLS connections are refused.
func TestTLSHandshakeTimesOutAndFreesItsSlot(t *testing.T) {
	const timeout = 2 * time.Second
	b, tlsCfg := runTLSBroker(t, Config{MaxTLSHandshakes: 1, ConnectTimeout: timeout})
	silentSince := time.Now()
	silent, err := net.Dial("tcp", b.addr)
	require.NoError(t, err)
	defer silent.Close()
	require.Eventually(t, func() bool { return b.Stats().TLSHandshakes == 1 }, 5*time.Second, time.Millisecond)

	over, err := net.Dial("tcp", b.addr)
	require.NoError(t, err)
	defer over.Close()
	over.SetDeadline(time.Now().Add(5 * time.Second))
	err = tls.Client(over, tlsCfg).Handshake()
	require.True(t, isClosedByPeer(err), "refused at the cap: %v", err)
	require.Equal(t, int64(1), b.Stats().Refused[RefusedTLSHandshakes])

	silent.SetReadDeadline(time.Now().Add(timeout + 5*time.Second))
	_, err = silent.Read(make([]byte, 1))
	require.True(t, isClosedByPeer(err), "a silent TLS client is closed at the connect timeout: %v", err)
	require.Less(t, time.Since(silentSince), timeout+3*time.Second)
	require.Equal(t, int64(1), b.Stats().LimitHits[LimitConnectTimeout])
	require.Eventually(t, func() bool { return b.Stats().TLSHandshakes == 0 }, 5*time.Second, time.Millisecond)

	c, refused := connectRetrying(t, b.addr, tlsCfg, "after", 10*time.Second)
	require.Zero(t, refused, "the slot is free again")
	c.ping()
}

// A TLS connection refused for max-connections gives its handshake slot
// back: the cap counts handshakes in progress, not refusals.
func TestTLSRefusedAtMaxConnectionsFreesItsSlot(t *testing.T) {
	b, tlsCfg := runTLSBroker(t, Config{MaxConnections: 1, MaxTLSHandshakes: 1})
	c, _ := connectRetrying(t, b.addr, tlsCfg, "only", 10*time.Second)
	for range 3 {
		over, err := net.Dial("tcp", b.addr)
		require.NoError(t, err)
		over.SetDeadline(time.Now().Add(5 * time.Second))
		err = tls.Client(over, tlsCfg).Handshake()
		over.Close()
		require.True(t, isClosedByPeer(err), "refused: %v", err)
	}
	st := b.Stats()
	require.Equal(t, int64(3), st.Refused[RefusedMaxConnections])
	require.Zero(t, st.Refused[RefusedTLSHandshakes], "each refusal freed its slot")
	require.Zero(t, st.TLSHandshakes)
	c.ping()
}
