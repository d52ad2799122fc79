package shard

import (
	"sync/atomic"
	"time"
)

// shardStats are one shard's counters. Only the shard goroutine writes them
// (so the atomics never contend); readers (metrics, $SYS) load them.
type shardStats struct {
	received      [3]atomic.Int64 // PUBLISH packets from clients, by QoS
	receivedBytes [3]atomic.Int64 // their payload bytes, by QoS
	sent          [3]atomic.Int64 // PUBLISH packets to clients, by QoS (resends included)
	sentBytes     [3]atomic.Int64
	droppedSys    atomic.Int64 // client publishes to $SYS/ dropped
	queued        atomic.Int64 // QoS 1/2 messages waiting in session queues
	inflight      atomic.Int64 // QoS 1/2 messages sent and not yet completed
	held          atomic.Int64 // inbound QoS 2 messages held in this log, not yet in every log (heldroute.go)
	sessions      atomic.Int64
	loop          durationHistogram // one loop iteration, events to write
	fsync         durationHistogram // one log commit
	logBytes      atomic.Int64
}

// HistogramBounds are the upper bounds (seconds) of the duration histograms,
// from 10 µs to 5 s.
var HistogramBounds = []float64{0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

// durationHistogram counts durations into HistogramBounds buckets; written
// by one goroutine, read by any.
type durationHistogram struct {
	buckets [18]atomic.Uint64 // len(HistogramBounds)+1; the last is +Inf
	count   atomic.Uint64
	sumNs   atomic.Int64
}

func (h *durationHistogram) observe(d time.Duration) {
	sec := d.Seconds()
	i := 0
	for i < len(HistogramBounds) && sec > HistogramBounds[i] {
		i++
	}
	h.buckets[i].Add(1)
	h.count.Add(1)
	h.sumNs.Add(int64(d))
}

// Histogram is a snapshot: Counts[i] observations were at most Bounds[i]
// (not cumulative); the last count is above every bound.
type Histogram struct {
	Counts []uint64
	Count  uint64
	Sum    time.Duration
}

func (h *durationHistogram) snapshot() Histogram {
	s := Histogram{Counts: make([]uint64, len(h.buckets)), Count: h.count.Load(), Sum: time.Duration(h.sumNs.Load())}
	for i := range h.buckets {
		s.Counts[i] = h.buckets[i].Load()
	}
	return s
}

// ShardStats is one shard's snapshot.
type ShardStats struct {
	MailboxDepth int
	Sessions     int64
	LoopTime     Histogram
	FsyncTime    Histogram
	LogBytes     int64
	LogFailed    bool  // the log failed and is not recovered yet (persistfault.go)
	LogErrors    int64 // log failures and failed recovery attempts
	LogRecovered int64 // recoveries from a failure
}

// Stats is a snapshot of broker counters.
type Stats struct {
	Connections      int   // open network connections, including those before CONNECT
	ConnectionsTotal int64 // accepted since start
	TLSHandshakes    int64 // TLS handshakes in progress (max-tls-handshakes)
	Refused          map[string]int64
	LimitHits        map[string]int64 // limits hit that no other counter shows (limits.go)
	Subscriptions    int64
	Retained         int
	Received         [3]int64 // PUBLISH packets from clients by QoS
	ReceivedBytes    int64
	ReceivedBytesQoS [3]int64 // ReceivedBytes by QoS
	Sent             [3]int64 // PUBLISH packets to clients by QoS
	SentBytes        int64
	SentBytesQoS     [3]int64
	DroppedQoS0      int64 // QoS 0 dropped for a full outbound queue
	DroppedQueueFull int64 // QoS 1/2 dropped for a full session queue
	DroppedSys       int64 // client publishes to $SYS/ dropped
	Queued           int64
	Inflight         int64
	Held             int64 // inbound QoS 2 messages logged by their publisher's shard and still being routed
	Shards           []ShardStats
	Uptime           time.Duration

	// The retained messages' log, like ShardStats.LogFailed and the rest.
	RetainedLogFailed    bool
	RetainedLogErrors    int64
	RetainedLogRecovered int64
}

// Stats returns current counters.
func (b *Broker) Stats() Stats {
	st := Stats{
		Connections:      b.conns.len(),
		ConnectionsTotal: b.stats.connectionsTotal.Load(),
		TLSHandshakes:    b.admit.tls.Load(),
		Refused:          make(map[string]int64),
		Subscriptions:    b.stats.subscriptions.Load(),
		Retained:         b.retained.Len(),
		DroppedQoS0:      b.stats.droppedQoS0.Load(),
		DroppedQueueFull: b.stats.droppedQueueFull.Load(),
		Uptime:           time.Since(b.started),
	}
	b.stats.refused.Range(func(k, v any) bool {
		st.Refused[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	st.LimitHits = make(map[string]int64)
	b.stats.limits.Range(func(k, v any) bool {
		st.LimitHits[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	for _, s := range b.shards {
		ss := &s.stats
		for q := range 3 {
			st.Received[q] += ss.received[q].Load()
			st.Sent[q] += ss.sent[q].Load()
			st.ReceivedBytesQoS[q] += ss.receivedBytes[q].Load()
			st.SentBytesQoS[q] += ss.sentBytes[q].Load()
		}
		st.DroppedSys += ss.droppedSys.Load()
		st.Queued += ss.queued.Load()
		st.Inflight += ss.inflight.Load()
		st.Held += ss.held.Load()
		st.Shards = append(st.Shards, ShardStats{
			MailboxDepth: s.mb.depth(),
			Sessions:     ss.sessions.Load(),
			LoopTime:     ss.loop.snapshot(),
			FsyncTime:    ss.fsync.snapshot(),
			LogBytes:     ss.logBytes.Load(),
			LogFailed:    s.fault.failed.Load(),
			LogErrors:    s.fault.errors.Load(),
			LogRecovered: s.fault.recoveries.Load(),
		})
	}
	if rl := b.retainLog; rl != nil {
		st.RetainedLogFailed = rl.fault.failed.Load()
		st.RetainedLogErrors = rl.fault.errors.Load()
		st.RetainedLogRecovered = rl.fault.recoveries.Load()
	}
	for q := range 3 {
		st.ReceivedBytes += st.ReceivedBytesQoS[q]
		st.SentBytes += st.SentBytesQoS[q]
	}
	return st
}

// countRefused counts a connection refused for reason (max-connections,
// bad-connect, auth, ...).
func (b *Broker) countRefused(reason string) {
	v, ok := b.stats.refused.Load(reason)
	if !ok {
		v, _ = b.stats.refused.LoadOrStore(reason, new(atomic.Int64))
	}
	v.(*atomic.Int64).Add(1)
}
