package metrics_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"iotd/metrics"
	"iotd/shard"
	"iotd/shard/shardtest"
)

// startBroker runs a real broker on a loopback port with its state in a
// temporary directory.
func startBroker(t *testing.T, cfg shard.Config) (*shard.Broker, string) {
	t.Helper()
	if cfg.Shards == 0 {
		cfg.Shards = 2
	}
	cfg.Persistence = true
	cfg.DataDir = t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	b, _ := shardtest.Serve(t, cfg, ln)
	return b, ln.Addr().String()
}

func pahoConnect(t *testing.T, addr, id string) mqtt.Client {
	t.Helper()
	o := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetCleanSession(true).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
	c := mqtt.NewClient(o)
	wait(t, c.Connect())
	t.Cleanup(func() { c.Disconnect(50) })
	return c
}

func wait(t *testing.T, tok mqtt.Token) {
	t.Helper()
	require.True(t, tok.WaitTimeout(5*time.Second), "paho operation timed out")
	require.NoError(t, tok.Error())
}

// scrape fetches url and parses it with Prometheus' own text parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Content-Type"), "text/plain")
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return fams
}

// value returns the value of the sample of family name whose labels match
// (label, value pairs), failing the test if there is none.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	f, ok := fams[name]
	require.True(t, ok, "no metric family %s", name)
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue()
		case dto.MetricType_HISTOGRAM:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	t.Fatalf("no sample of %s with labels %v", name, labels)
	return 0
}

// After known traffic every counter on /metrics matches it exactly:
// 7 QoS 0 and 5 QoS 1 PUBLISHes in, one subscriber getting all but the one
// sent to $SYS/, which is dropped.
func TestScrapeAfterKnownTraffic(t *testing.T) {
	b, addr := startBroker(t, shard.Config{Shards: 3})
	srv := httptest.NewServer(metrics.Handler(metrics.Registry(b, "v1.2.3"), false))
	defer srv.Close()

	got := make(chan mqtt.Message, 100)
	sub := pahoConnect(t, addr, "sub")
	wait(t, sub.Subscribe("t/#", 1, func(_ mqtt.Client, m mqtt.Message) { got <- m }))
	pub := pahoConnect(t, addr, "pub")
	for i := range 6 {
		wait(t, pub.Publish("t/zero", 0, i == 0, fmt.Sprintf("zero-%d", i))) // 6 bytes each; the first is retained
	}
	wait(t, pub.Publish("$SYS/forged", 0, false, "x")) // dropped [MQTT-4.7.2-1]
	for i := range 5 {
		wait(t, pub.Publish("t/one", 1, false, fmt.Sprintf("one-%d", i))) // 5 bytes each
	}
	for range 11 {
		select {
		case <-got:
		case <-time.After(5 * time.Second):
			t.Fatal("subscriber did not get all 11 messages")
		}
	}

	fams := scrape(t, srv.URL+"/metrics")
	for name := range fams {
		require.True(t, strings.HasPrefix(name, "iotd_"), "metric %s lacks the iotd_ prefix", name)
	}
	require.Equal(t, 1.0, value(t, fams, "iotd_build_info", "version", "v1.2.3"))
	require.Equal(t, 7.0, value(t, fams, "iotd_messages_received_total", "qos", "0"))
	require.Equal(t, 5.0, value(t, fams, "iotd_messages_received_total", "qos", "1"))
	require.Equal(t, 0.0, value(t, fams, "iotd_messages_received_total", "qos", "2"))
	require.Equal(t, 6.0, value(t, fams, "iotd_messages_sent_total", "qos", "0"))
	require.Equal(t, 5.0, value(t, fams, "iotd_messages_sent_total", "qos", "1"))
	require.Equal(t, 6.0*6+1, value(t, fams, "iotd_received_payload_bytes_total", "qos", "0"))
	require.Equal(t, 5.0*5, value(t, fams, "iotd_received_payload_bytes_total", "qos", "1"))
	require.Equal(t, 6.0*6, value(t, fams, "iotd_sent_payload_bytes_total", "qos", "0"))
	require.Equal(t, 5.0*5, value(t, fams, "iotd_sent_payload_bytes_total", "qos", "1"))
	require.Equal(t, 1.0, value(t, fams, "iotd_messages_dropped_total", "reason", "sys-topic"))
	require.Equal(t, 0.0, value(t, fams, "iotd_messages_dropped_total", "reason", "queue-full"))
	require.Equal(t, 0.0, value(t, fams, "iotd_messages_dropped_total", "reason", "outbound-full"))
	require.Equal(t, 2.0, value(t, fams, "iotd_connections_current"))
	require.Equal(t, 2.0, value(t, fams, "iotd_connections_total"))
	for _, reason := range []string{shard.RefusedMaxConnections, shard.RefusedAcceptRate, shard.RefusedTLSHandshakes} {
		require.Equal(t, 0.0, value(t, fams, "iotd_connections_refused_total", "reason", reason))
	}
	require.Equal(t, 0.0, value(t, fams, "iotd_tls_handshakes_in_progress"))
	require.Len(t, fams["iotd_limit_hits_total"].GetMetric(), 10, "every limit has a series")
	for _, limit := range []string{shard.LimitMaxConnections, shard.LimitMaxClientIDLength, shard.LimitMaxPacketSize,
		shard.LimitConnectTimeout, shard.LimitMaxSubscriptions, shard.LimitMaxQueuedMessages, shard.LimitMaxOutboundBytes,
		shard.LimitMaxAcceptRate, shard.LimitMaxTLSHandshakes, shard.LimitMaxPendingHandshakes} {
		require.Equal(t, 0.0, value(t, fams, "iotd_limit_hits_total", "limit", limit))
	}
	require.Equal(t, 2.0, value(t, fams, "iotd_sessions"))
	require.Equal(t, 1.0, value(t, fams, "iotd_subscriptions"))
	require.Equal(t, 1.0, value(t, fams, "iotd_retained_messages"))
	require.Equal(t, 0.0, value(t, fams, "iotd_messages_queued"))
	require.Equal(t, 0.0, value(t, fams, "iotd_messages_held"))
	require.Len(t, fams["iotd_shard_mailbox_depth"].GetMetric(), 3, "one series per shard")
	require.Len(t, fams["iotd_shard_loop_seconds"].GetMetric(), 3)
	require.Len(t, fams["iotd_wal_fsync_seconds"].GetMetric(), 3)
	require.Len(t, fams["iotd_wal_size_bytes"].GetMetric(), 3)
	var loops float64
	for i := range 3 {
		loops += value(t, fams, "iotd_shard_loop_seconds", "shard", fmt.Sprint(i))
		require.Equal(t, 0.0, value(t, fams, "iotd_wal_failed", "shard", fmt.Sprint(i)))
		require.Equal(t, 0.0, value(t, fams, "iotd_wal_errors_total", "shard", fmt.Sprint(i)))
		require.Equal(t, 0.0, value(t, fams, "iotd_wal_recoveries_total", "shard", fmt.Sprint(i)))
	}
	require.Len(t, fams["iotd_wal_failed"].GetMetric(), 3+1, "one series per shard and one for the retained log")
	require.Equal(t, 0.0, value(t, fams, "iotd_wal_failed", "shard", "retained"))
	require.Positive(t, loops, "the shard loops ran")
	h := fams["iotd_shard_loop_seconds"].GetMetric()[0].GetHistogram()
	require.Len(t, h.GetBucket(), len(shard.HistogramBounds)+1, "the bounds and +Inf")
	for i, bk := range h.GetBucket()[:len(shard.HistogramBounds)] {
		require.Equal(t, shard.HistogramBounds[i], bk.GetUpperBound())
		require.LessOrEqual(t, bk.GetCumulativeCount(), h.GetSampleCount())
	}
	require.Contains(t, fams, "iotd_go_goroutines", "the Go runtime collector, prefixed")
	require.Contains(t, fams, "iotd_process_resident_memory_bytes", "the process collector, prefixed")

	// pprof is off unless asked for.
	resp, err := http.Get(srv.URL + "/debug/pprof/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

func TestPprofBehindItsFlag(t *testing.T) {
	b, _ := startBroker(t, shard.Config{})
	srv := httptest.NewServer(metrics.Handler(metrics.Registry(b, "dev"), true))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/debug/pprof/goroutine?debug=1")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(body), "goroutine profile")
}

// statsSource serves fixed Stats, for states a live broker does not reach
// without a failing disk.
type statsSource struct{ st shard.Stats }

func (s statsSource) Stats() shard.Stats                 { return s.st }
func (s statsSource) SecurityStats() shard.SecurityStats { return shard.SecurityStats{} }

// A failed log, shard or retained, shows in iotd_wal_failed, and its errors
// and recoveries in their counters.
func TestWALFailureMetrics(t *testing.T) {
	src := statsSource{shard.Stats{
		Shards:               []shard.ShardStats{{}, {LogFailed: true, LogErrors: 3, LogRecovered: 1}},
		RetainedLogFailed:    true,
		RetainedLogErrors:    2,
		RetainedLogRecovered: 0,
	}}
	srv := httptest.NewServer(metrics.Handler(metrics.Registry(src, "dev"), false))
	defer srv.Close()
	fams := scrape(t, srv.URL+"/metrics")
	for _, c := range []struct {
		shard                    string
		failed, errors, recovers float64
	}{{"0", 0, 0, 0}, {"1", 1, 3, 1}, {metrics.RetainedLog, 1, 2, 0}} {
		require.Equal(t, c.failed, value(t, fams, "iotd_wal_failed", "shard", c.shard), c.shard)
		require.Equal(t, c.errors, value(t, fams, "iotd_wal_errors_total", "shard", c.shard), c.shard)
		require.Equal(t, c.recovers, value(t, fams, "iotd_wal_recoveries_total", "shard", c.shard), c.shard)
	}
}
