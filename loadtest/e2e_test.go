package loadtest

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"iotd/shard"
	"iotd/shard/shardtest"
	"iotd/tlsconf/tlstest"
)

// Every test must leave no goroutine behind: the load generator's readers,
// publishers and background loops, and the in-process broker's.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// startBroker runs an in-process iotd on an ephemeral loopback port; wrap,
// if set, wraps the listener (TLS). It stops when the test ends.
func startBroker(t *testing.T, wrap func(net.Listener) net.Listener) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	if wrap != nil {
		ln = wrap(ln)
	}
	shardtest.Serve(t, shard.Config{Shards: 2}, ln)
	return addr
}

// brief is a run small and short enough for a unit test, bounded by a hard
// timeout well under the test's.
func brief(addr string, s Scenario, qos byte) Config {
	return Config{
		Scenario:         s,
		Addr:             addr,
		QoS:              qos,
		Duration:         300 * time.Millisecond,
		Drain:            3 * time.Second,
		Timeout:          20 * time.Second,
		Hold:             200 * time.Millisecond,
		ProgressInterval: 100 * time.Millisecond,
	}
}

func run(t *testing.T, cfg Config) *Result {
	t.Helper()
	var progress strings.Builder
	cfg.Progress = &progress
	res, err := Run(context.Background(), cfg)
	require.NoError(t, err)
	require.NotNil(t, res)
	var sum strings.Builder
	require.NoError(t, res.WriteSummary(&sum))
	t.Logf("\n%s%s", progress.String(), sum.String())
	require.Zero(t, res.Errors, "errors: %v", res.ErrorSamples)
	return res
}

// checkCounts asserts the invariants of a message scenario's result.
func checkCounts(t *testing.T, res *Result, fan uint64) {
	t.Helper()
	require.NotZero(t, res.Sent, "something was published")
	require.Equal(t, res.Sent*fan, res.Expected, "expected = sent x subscribers per message")
	// Every expected delivery either arrived (once, or more) or is lost.
	require.Equal(t, res.Expected, res.Received-res.Duplicated+res.Lost, "counts add up")
	require.Equal(t, int64(res.Received), res.Latency.Count, "one latency per delivery")
	if res.QoS > 0 {
		// QoS 1/2 from iotd with the end-to-end window under its queue
		// limit: nothing may be lost, duplicated or reordered.
		require.Zero(t, res.Lost, "lost at QoS %d", res.QoS)
		require.Zero(t, res.Duplicated, "duplicated at QoS %d", res.QoS)
		require.Equal(t, res.Expected, res.Received)
	}
	require.Zero(t, res.OutOfOrder, "one publisher to one subscriber is an ordered path")
	require.Positive(t, res.MsgsPerSec)
	require.LessOrEqual(t, res.Latency.P50, res.Latency.P99)
	require.LessOrEqual(t, res.Latency.P99, res.Latency.Max)
	if res.QoS > 0 {
		// Every QoS 1/2 publish was acknowledged, and timed, once.
		require.Equal(t, int64(res.Sent), res.AckLatency.Count, "one PUBACK/PUBREC time per publish")
		require.Positive(t, res.AckLatency.Max)
		require.LessOrEqual(t, res.AckLatency.P50, res.AckLatency.P99)
		require.LessOrEqual(t, res.AckLatency.P99, res.AckLatency.Max)
	} else {
		require.Zero(t, res.AckLatency.Count, "QoS 0 has no acknowledgement")
	}
}

func TestScenariosAgainstIotd(t *testing.T) {
	addr := startBroker(t, nil)
	for _, qos := range []byte{0, 1, 2} {
		t.Run(fmt.Sprintf("fanin/qos%d", qos), func(t *testing.T) {
			cfg := brief(addr, Fanin, qos)
			cfg.Publishers, cfg.Subscribers = 4, 1
			res := run(t, cfg)
			require.Equal(t, 4, res.Publishers)
			require.Equal(t, 5, res.Connections)
			checkCounts(t, res, 1)
		})
		t.Run(fmt.Sprintf("fanout/qos%d", qos), func(t *testing.T) {
			cfg := brief(addr, Fanout, qos)
			cfg.Subscribers = 4
			res := run(t, cfg)
			require.Equal(t, 1, res.Publishers)
			checkCounts(t, res, 4)
		})
		t.Run(fmt.Sprintf("pairs/qos%d", qos), func(t *testing.T) {
			cfg := brief(addr, Pairs, qos)
			cfg.Clients = 5 // rounded up to 6
			res := run(t, cfg)
			require.Equal(t, 6, res.Connections, "each client both publishes and subscribes")
			checkCounts(t, res, 1)
		})
		t.Run(fmt.Sprintf("retained/qos%d", qos), func(t *testing.T) {
			cfg := brief(addr, Retained, qos)
			cfg.Count, cfg.Subscribers = 300, 2
			res := run(t, cfg)
			require.Equal(t, uint64(300), res.Sent)
			// Retained messages are stored before anyone subscribes: even
			// at QoS 0 all of them must arrive.
			require.Equal(t, uint64(600), res.Received)
			checkCounts(t, res, 2)
		})
	}
	for _, qos := range []byte{1, 2} {
		t.Run(fmt.Sprintf("offline/qos%d", qos), func(t *testing.T) {
			cfg := brief(addr, Offline, qos)
			cfg.Count, cfg.Subscribers = 200, 3
			res := run(t, cfg)
			require.Equal(t, uint64(200), res.Sent)
			checkCounts(t, res, 3)
			require.Equal(t, res.MsgsPerSec, res.BacklogMsgsPerSec)
		})
	}
	t.Run("latency", func(t *testing.T) {
		cfg := brief(addr, Latency, 1)
		cfg.Rate = 200
		cfg.Duration = 500 * time.Millisecond
		res := run(t, cfg)
		checkCounts(t, res, 1)
		// 200 msg/s for half a second, paced from the start: ~100.
		require.InDelta(t, 100, float64(res.Sent), 15)
	})
	t.Run("connect", func(t *testing.T) {
		cfg := brief(addr, Connect, 0)
		cfg.Clients, cfg.ConnectParallelism = 200, 16
		cfg.BrokerPID = os.Getpid() // the broker runs in this process
		res := run(t, cfg)
		require.Equal(t, 200, res.Connections)
		require.Positive(t, res.ConnectsPerSec)
		require.Equal(t, int64(200), res.Latency.Count, "one CONNECT->CONNACK time per connection")
		require.Positive(t, res.RSSBeforeBytes)
		require.Positive(t, res.RSSAfterBytes)
	})
	t.Run("count", func(t *testing.T) {
		// Count alone bounds the run, shared out over the publishers.
		cfg := brief(addr, Fanin, 1)
		cfg.Duration, cfg.Count, cfg.Publishers = 0, 1001, 3
		res := run(t, cfg)
		require.Equal(t, uint64(1001), res.Sent)
		checkCounts(t, res, 1)
	})
	t.Run("small-windows", func(t *testing.T) {
		// Windows of one: stop-and-wait in flight and end to end must still
		// complete without loss.
		cfg := brief(addr, Fanout, 2)
		cfg.Inflight, cfg.E2EWindow, cfg.Subscribers = 1, 1, 2
		res := run(t, cfg)
		checkCounts(t, res, 2)
	})
}

func TestTLS(t *testing.T) {
	ca := tlstest.NewCA(t)
	srv := ca.Issue(t, "localhost", true)
	addr := startBroker(t, func(ln net.Listener) net.Listener {
		return tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{srv.TLS}, MinVersion: tls.VersionTLS12})
	})
	cfg := brief(addr, Fanin, 1)
	cfg.Publishers = 2
	cfg.TLS = tlstest.ClientConfig(ca, nil) // no ServerName: checked against 127.0.0.1
	checkCounts(t, run(t, cfg), 1)

	// Without the CA the handshake fails and Run says why.
	cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	_, err := Run(context.Background(), cfg)
	require.ErrorContains(t, err, "TLS handshake")
}

func TestHardTimeout(t *testing.T) {
	addr := startBroker(t, nil)
	cfg := brief(addr, Fanin, 1)
	cfg.Duration, cfg.Timeout = time.Minute, 500*time.Millisecond
	start := time.Now()
	res, err := Run(context.Background(), cfg)
	require.ErrorContains(t, err, "hard timeout of 500ms reached")
	require.Less(t, time.Since(start), 5*time.Second, "the timeout stops everything")
	require.NotNil(t, res, "what was measured is still reported")
	require.NotZero(t, res.Sent)
	require.Contains(t, res.Failure, "hard timeout")
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Scenario: "nope"}, "unknown scenario"},
		{Config{Scenario: Fanin, QoS: 3}, "QoS 3"},
		{Config{Scenario: Fanin, PayloadSize: 10}, "below the 24-byte header"},
		{Config{Scenario: Offline}, "offline needs QoS 1 or 2"},
		{Config{Scenario: Fanin, Inflight: 70000}, "in-flight window"},
		{Config{Scenario: Latency, Rate: -1}, "rate"},
		{Config{Scenario: Fanin, Phase: PhaseFill, RunID: "x"}, "for the offline scenario only"},
		{Config{Scenario: Offline, QoS: 1, Phase: PhaseDrain}, "needs a run id"},
		{Config{Scenario: Offline, QoS: 1, Phase: "later", RunID: "x"}, `phase "later"`},
		{Config{Scenario: Fanin, RunID: "no-dashes"}, "run id"},
		{Config{Scenario: Fanin, RunID: "thirteen13131"}, "run id"},
		{Config{Scenario: Connect, PersistentSessions: true}, "persistent sessions apply to"},
	} {
		_, err := Run(context.Background(), tc.cfg)
		require.ErrorContains(t, err, tc.want, "%+v", tc.cfg)
	}
	// Nothing listening: a clear connection error, quickly.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	res, err := Run(context.Background(), brief(addr, Fanin, 0))
	require.ErrorContains(t, err, "connect "+addr)
	require.NotNil(t, res)
}

// sourceRecorder notes the remote address of every accepted connection.
type sourceRecorder struct {
	net.Listener
	mu   sync.Mutex
	seen map[string]int
}

func (r *sourceRecorder) Accept() (net.Conn, error) {
	c, err := r.Listener.Accept()
	if err == nil {
		host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		r.mu.Lock()
		r.seen[host]++
		r.mu.Unlock()
	}
	return c, err
}

// Against a loopback broker, connections come from 127.0.0.1-127.0.0.8 in
// turn, so a connect run is not limited by one address's ephemeral ports;
// SourceAddrs chooses them explicitly.
func TestSourceAddresses(t *testing.T) {
	rec := &sourceRecorder{seen: map[string]int{}}
	addr := startBroker(t, func(ln net.Listener) net.Listener { rec.Listener = ln; return rec })
	cfg := brief(addr, Connect, 0)
	cfg.Clients = 80
	run(t, cfg)
	rec.mu.Lock()
	require.Len(t, rec.seen, DefaultLoopbackSources, "sources: %v", rec.seen)
	for host, n := range rec.seen {
		require.Equal(t, 10, n, "connections from %s", host)
	}
	clear(rec.seen)
	rec.mu.Unlock()

	cfg.Clients = 6
	cfg.SourceAddrs = []netip.Addr{netip.MustParseAddr("127.0.0.42"), netip.MustParseAddr("127.0.0.43")}
	run(t, cfg)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	require.Equal(t, map[string]int{"127.0.0.42": 3, "127.0.0.43": 3}, rec.seen)
}
