package loadtest

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds from 1µs to one hour with three
// significant digits: 0.1% precision over the whole range, which is what
// p99 and max need, at ~180 KB per histogram.
const (
	latMinUS   = 1
	latMaxUS   = int64(time.Hour / time.Microsecond)
	latSigFigs = 3

	// latBatch values are buffered per reader before taking a shard lock.
	latBatch = 256
)

// Percentiles summarizes latencies in milliseconds.
type Percentiles struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// latencyHist collects latencies from many reader goroutines. A histogram
// per reader would cost 180 KB each (too much for 10,000 clients in pairs),
// so readers buffer values in a latBuf and add them in batches to one of a
// few lock-striped histograms, merged once at the end.
type latencyHist struct {
	shards []latShard
}

type latShard struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
	_  [48]byte // keep neighbouring locks off one cache line
}

func newLatencyHist(stripes int) *latencyHist {
	l := &latencyHist{shards: make([]latShard, max(stripes, 1))}
	for i := range l.shards {
		l.shards[i].h = hdrhistogram.New(latMinUS, latMaxUS, latSigFigs)
	}
	return l
}

// buffer returns a recorder for one goroutine; n picks its stripe.
func (l *latencyHist) buffer(n int) *latBuf {
	return &latBuf{l: l, shard: &l.shards[n%len(l.shards)]}
}

// latBuf is one goroutine's batch of values waiting to be recorded.
type latBuf struct {
	l     *latencyHist
	shard *latShard
	vals  []int64
}

// add records one latency; values outside the histogram's range are
// clamped to it (a negative one can only come from a clock step).
func (b *latBuf) add(d time.Duration) {
	us := int64(d / time.Microsecond)
	if b.vals == nil {
		b.vals = make([]int64, 0, latBatch)
	}
	b.vals = append(b.vals, min(max(us, 0), latMaxUS))
	if len(b.vals) == cap(b.vals) {
		b.flush()
	}
}

// flush moves the buffered values into the shared histogram.
func (b *latBuf) flush() {
	if len(b.vals) == 0 {
		return
	}
	b.shard.mu.Lock()
	for _, v := range b.vals {
		b.shard.h.RecordValue(v) // cannot fail: v is within range
	}
	b.shard.mu.Unlock()
	b.vals = b.vals[:0]
}

// merged returns one histogram holding every stripe's values.
func (l *latencyHist) merged() *hdrhistogram.Histogram {
	out := hdrhistogram.New(latMinUS, latMaxUS, latSigFigs)
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		out.Merge(s.h)
		s.mu.Unlock()
	}
	return out
}

// summarize reports p50/p90/p99/max of a microsecond histogram in
// milliseconds; an empty histogram gives zeros.
func summarize(h *hdrhistogram.Histogram) Percentiles {
	if h.TotalCount() == 0 {
		return Percentiles{}
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Percentiles{
		Count: h.TotalCount(),
		P50:   ms(h.ValueAtQuantile(50)),
		P90:   ms(h.ValueAtQuantile(90)),
		P99:   ms(h.ValueAtQuantile(99)),
		Max:   ms(h.Max()),
	}
}
