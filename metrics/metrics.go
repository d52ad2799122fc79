// Package metrics exposes the broker's counters: Prometheus metrics over
// HTTP (Collector, Handler) and Mosquitto-style $SYS topics (Sys).
//
// Both read shard.Broker.Stats() when asked (a scrape, a $SYS tick) and keep
// nothing on the message path: the shards count with atomics they own, and
// a scrape costs one pass over the shards.
package metrics

import (
	"net/http"
	"net/http/pprof"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"iotd/shard"
)

// Source is what the metrics read; *shard.Broker is one.
type Source interface {
	Stats() shard.Stats
	SecurityStats() shard.SecurityStats
}

// Drop reasons (iotd_messages_dropped_total{reason}).
const (
	DropOutboundFull = "outbound-full" // QoS 0 for a connection whose outbound queue is full
	DropQueueFull    = "queue-full"    // QoS 1/2 for a session whose queue is at max-queued-messages
	DropSysTopic     = "sys-topic"     // a client's PUBLISH to $SYS/...
	DropACLPublish   = "acl-publish"   // a PUBLISH the ACL does not let its client write
	DropACLDelivery  = "acl-delivery"  // a delivery the ACL does not let the subscriber read
)

// Collector is a prometheus.Collector over a broker's Stats, read at each
// scrape.
type Collector struct {
	src     Source
	version string

	connections, connectionsTotal, refused                          *prometheus.Desc
	received, sent, receivedBytes, sentBytes, dropped               *prometheus.Desc
	queued, inflight, retained, subscriptions, sessions, aclDenied  *prometheus.Desc
	limits                                                          *prometheus.Desc
	mailbox, shardSessions, loop, fsync, logBytes, logFailed, build *prometheus.Desc
	uptime, logErrors, logRecoveries, held                          *prometheus.Desc
	tlsHandshakes                                                   *prometheus.Desc
}

// NewCollector returns a collector for src; version is reported in
// iotd_build_info.
func NewCollector(src Source, version string) *Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("iotd_"+name, help, labels, nil)
	}
	return &Collector{
		src:              src,
		version:          version,
		build:            d("build_info", "Always 1; the version label is the running iotd's.", "version"),
		uptime:           d("uptime_seconds", "Seconds since the broker started."),
		connections:      d("connections_current", "Open network connections, including those that have not sent CONNECT yet."),
		connectionsTotal: d("connections_total", "Network connections accepted since start."),
		tlsHandshakes:    d("tls_handshakes_in_progress", "TLS handshakes (tls://, wss://) admitted and not yet done; new TLS connections are refused while it is at max-tls-handshakes."),
		refused:          d("connections_refused_total", "Connections refused, by reason: accept-rate, tls-handshakes, max-connections (closed at accept), client-id-too-long (CONNACK 0x02), not-authorized (CONNACK 0x04 or 0x05).", "reason"),
		received:         d("messages_received_total", "PUBLISH packets received from clients, by QoS.", "qos"),
		sent:             d("messages_sent_total", "PUBLISH packets sent to clients, by QoS (re-sends included).", "qos"),
		receivedBytes:    d("received_payload_bytes_total", "Payload bytes of the PUBLISH packets received from clients, by QoS.", "qos"),
		sentBytes:        d("sent_payload_bytes_total", "Payload bytes of the PUBLISH packets sent to clients, by QoS.", "qos"),
		dropped:          d("messages_dropped_total", "Messages dropped, by reason: outbound-full (QoS 0, the connection's outbound queue was full), queue-full (QoS 1/2, the session queue was at max-queued-messages), sys-topic (a client published to $SYS/), acl-publish, acl-delivery (refused by the ACL).", "reason"),
		limits:           d("limit_hits_total", "Times a configured limit was hit, by limit: max-accept-rate, max-tls-handshakes and max-connections (connection closed at accept), max-pending-handshakes (the oldest connection without CONNECT closed), max-client-id-length (CONNACK 0x02), max-packet-size and connect-timeout (connection closed), max-subscriptions (SUBACK 0x80), max-queued-messages and max-outbound-bytes (message dropped).", "limit"),
		aclDenied:        d("acl_denied_total", "Requests the ACL refused, by action: publish, subscribe (a filter answered 0x80), deliver, will.", "action"),
		queued:           d("messages_queued", "QoS 1/2 messages waiting in session queues."),
		inflight:         d("messages_inflight", "QoS 1/2 messages sent to clients and not yet acknowledged."),
		held:             d("messages_held", "Inbound QoS 2 messages from persistent sessions stored in their publisher's shard log and not yet stored everywhere they go (a restart routes them again)."),
		retained:         d("retained_messages", "Retained messages stored."),
		subscriptions:    d("subscriptions", "Topic filters subscribed, over all sessions."),
		sessions:         d("sessions", "Sessions held, connected or not."),
		mailbox:          d("shard_mailbox_depth", "Events waiting in a shard's mailbox.", "shard"),
		shardSessions:    d("shard_sessions", "Sessions owned by a shard.", "shard"),
		loop:             d("shard_loop_seconds", "Time of one shard loop iteration: a batch of events handled and its output written.", "shard"),
		fsync:            d("wal_fsync_seconds", "Time of one write-ahead log commit (write and fsync) of a shard.", "shard"),
		logBytes:         d("wal_size_bytes", "Bytes in a shard's write-ahead log (0 with persistence off).", "shard"),
		logFailed:        d("wal_failed", "1 while a write-ahead log is failed (disk full, I/O error): the QoS 1/2 publishes it must store are not acknowledged until it recovers. shard is the shard's index, or \"retained\" for the retained messages' log.", "shard"),
		logErrors:        d("wal_errors_total", "Write-ahead log failures (a failed write, fsync or truncation) and failed recovery attempts, by log (shard index or \"retained\").", "shard"),
		logRecoveries:    d("wal_recoveries_total", "Write-ahead logs recovered from a failure by a snapshot, by log (shard index or \"retained\").", "shard"),
	}
}

// Describe sends every descriptor.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.build, c.uptime, c.connections, c.connectionsTotal, c.refused, c.received, c.sent, c.tlsHandshakes,
		c.receivedBytes, c.sentBytes, c.dropped, c.limits, c.aclDenied, c.queued, c.inflight, c.retained,
		c.subscriptions, c.sessions, c.mailbox, c.shardSessions, c.loop, c.fsync, c.logBytes, c.logFailed,
		c.logErrors, c.logRecoveries, c.held,
	} {
		ch <- d
	}
}

// Collect reads the broker's counters once and sends them.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Stats()
	sec := c.src.SecurityStats()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(c.build, 1, c.version)
	gauge(c.uptime, st.Uptime.Seconds())
	gauge(c.connections, float64(st.Connections))
	counter(c.connectionsTotal, float64(st.ConnectionsTotal))
	gauge(c.tlsHandshakes, float64(st.TLSHandshakes))
	refused := map[string]int64{shard.RefusedMaxConnections: 0, shard.RefusedClientIDTooLong: 0, "not-authorized": sec.RefusedConnects,
		shard.RefusedAcceptRate: 0, shard.RefusedTLSHandshakes: 0}
	for reason, n := range st.Refused {
		refused[reason] += n
	}
	for reason, n := range refused {
		counter(c.refused, float64(n), reason)
	}
	for q := range 3 {
		qos := strconv.Itoa(q)
		counter(c.received, float64(st.Received[q]), qos)
		counter(c.sent, float64(st.Sent[q]), qos)
		counter(c.receivedBytes, float64(st.ReceivedBytesQoS[q]), qos)
		counter(c.sentBytes, float64(st.SentBytesQoS[q]), qos)
	}
	counter(c.dropped, float64(st.DroppedQoS0), DropOutboundFull)
	counter(c.dropped, float64(st.DroppedQueueFull), DropQueueFull)
	counter(c.dropped, float64(st.DroppedSys), DropSysTopic)
	counter(c.dropped, float64(sec.DeniedPublishes), DropACLPublish)
	counter(c.dropped, float64(sec.DeniedDeliveries), DropACLDelivery)
	for limit, n := range map[string]int64{
		shard.LimitMaxConnections:    st.Refused[shard.RefusedMaxConnections],
		shard.LimitMaxAcceptRate:     st.Refused[shard.RefusedAcceptRate],
		shard.LimitMaxTLSHandshakes:  st.Refused[shard.RefusedTLSHandshakes],
		shard.LimitMaxClientIDLength: st.Refused[shard.RefusedClientIDTooLong],
		shard.LimitMaxPacketSize:     st.LimitHits[shard.LimitMaxPacketSize],
		shard.LimitConnectTimeout:    st.LimitHits[shard.LimitConnectTimeout],
		shard.LimitMaxSubscriptions:  st.LimitHits[shard.LimitMaxSubscriptions],
		shard.LimitMaxQueuedMessages: st.DroppedQueueFull,
		shard.LimitMaxOutboundBytes:  st.DroppedQoS0,
		// closes the oldest connection still without CONNECT, not the new one:
		shard.LimitMaxPendingHandshakes: st.LimitHits[shard.LimitMaxPendingHandshakes],
	} {
		counter(c.limits, float64(n), limit)
	}
	counter(c.aclDenied, float64(sec.DeniedPublishes), "publish")
	counter(c.aclDenied, float64(sec.DeniedSubscribes), "subscribe")
	counter(c.aclDenied, float64(sec.DeniedDeliveries), "deliver")
	counter(c.aclDenied, float64(sec.DeniedWills), "will")
	gauge(c.queued, float64(st.Queued))
	gauge(c.inflight, float64(st.Inflight))
	gauge(c.held, float64(st.Held))
	gauge(c.retained, float64(st.Retained))
	gauge(c.subscriptions, float64(st.Subscriptions))
	var sessions int64
	for i, s := range st.Shards {
		shard := strconv.Itoa(i)
		sessions += s.Sessions
		gauge(c.mailbox, float64(s.MailboxDepth), shard)
		gauge(c.shardSessions, float64(s.Sessions), shard)
		ch <- histogram(c.loop, s.LoopTime, shard)
		ch <- histogram(c.fsync, s.FsyncTime, shard)
		gauge(c.logBytes, float64(s.LogBytes), shard)
		gauge(c.logFailed, boolValue(s.LogFailed), shard)
		counter(c.logErrors, float64(s.LogErrors), shard)
		counter(c.logRecoveries, float64(s.LogRecovered), shard)
	}
	gauge(c.logFailed, boolValue(st.RetainedLogFailed), RetainedLog)
	counter(c.logErrors, float64(st.RetainedLogErrors), RetainedLog)
	counter(c.logRecoveries, float64(st.RetainedLogRecovered), RetainedLog)
	gauge(c.sessions, float64(sessions))
}

// RetainedLog is the shard label of the retained messages' log in the
// iotd_wal_failed, iotd_wal_errors_total and iotd_wal_recoveries_total series.
const RetainedLog = "retained"

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// histogram converts a shard histogram (per-bucket counts) to Prometheus'
// cumulative buckets. The count is the buckets' sum, so the +Inf bucket and
// the count agree even though the shard may observe while this reads.
func histogram(d *prometheus.Desc, h shard.Histogram, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(shard.HistogramBounds))
	var cum uint64
	for i, n := range h.Counts {
		cum += n
		if i < len(shard.HistogramBounds) {
			buckets[shard.HistogramBounds[i]] = cum
		}
	}
	return prometheus.MustNewConstHistogram(d, cum, h.Sum.Seconds(), buckets, labels...)
}

// Registry returns a registry with the broker's collector and the Go
// runtime and process collectors, all under the iotd_ prefix
// (iotd_go_goroutines, iotd_process_resident_memory_bytes, ...).
func Registry(src Source, version string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(src, version))
	prefixed := prometheus.WrapRegistererWithPrefix("iotd_", reg)
	prefixed.MustRegister(collectors.NewGoCollector())
	prefixed.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler serves /metrics from reg and, with withPprof, the runtime
// profiles under /debug/pprof/.
func Handler(reg *prometheus.Registry, withPprof bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: nil}))
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("iotd: metrics at /metrics\n"))
	})
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}
