package loadtest

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"iotd/wire"
)

func TestPercentilesUniform(t *testing.T) {
	l := newLatencyHist(4)
	var wg sync.WaitGroup
	// 1..10000 µs spread over four goroutines with their own buffers.
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := l.buffer(g)
			for v := g + 1; v <= 10000; v += 4 {
				b.add(time.Duration(v) * time.Microsecond)
			}
			b.flush()
		}()
	}
	wg.Wait()
	p := summarize(l.merged())
	require.Equal(t, int64(10000), p.Count)
	// Three significant digits: within 0.1% of the exact percentile.
	require.InEpsilon(t, 5.0, p.P50, 0.002)
	require.InEpsilon(t, 9.0, p.P90, 0.002)
	require.InEpsilon(t, 9.9, p.P99, 0.002)
	require.InEpsilon(t, 10.0, p.Max, 0.002)
}

func TestPercentilesTail(t *testing.T) {
	l := newLatencyHist(1)
	b := l.buffer(0)
	for range 989 {
		b.add(100 * time.Microsecond)
	}
	for range 10 {
		b.add(20 * time.Millisecond)
	}
	b.add(3 * time.Second)
	b.flush()
	p := summarize(l.merged())
	require.InEpsilon(t, 0.1, p.P50, 0.002)
	require.InEpsilon(t, 0.1, p.P90, 0.002)
	require.InEpsilon(t, 20.0, p.P99, 0.002, "p99 falls in the 10 slow ones")
	require.InEpsilon(t, 3000.0, p.Max, 0.002)
}

func TestPercentilesClampAndEmpty(t *testing.T) {
	require.Equal(t, Percentiles{}, summarize(newLatencyHist(1).merged()))
	l := newLatencyHist(1)
	b := l.buffer(7)       // any n picks a stripe
	b.add(-time.Second)    // a clock step: recorded as 0
	b.add(100 * time.Hour) // beyond the range: clamped to one hour
	b.flush()
	p := summarize(l.merged())
	require.Equal(t, int64(2), p.Count)
	require.Zero(t, p.P50)
	require.InEpsilon(t, float64(time.Hour/time.Millisecond), p.Max, 0.002)
}

func TestLatBufFlushesWhenFull(t *testing.T) {
	l := newLatencyHist(1)
	b := l.buffer(0)
	for range latBatch {
		b.add(time.Millisecond)
	}
	require.Empty(t, b.vals, "a full batch goes to the histogram by itself")
	require.Equal(t, int64(latBatch), l.merged().TotalCount())
}

// TestAckLatency: the publisher times publish to PUBACK (QoS 1) and to the
// first PUBREC (QoS 2); repeats and PUBCOMP add nothing.
func TestAckLatency(t *testing.T) {
	h := newLatencyHist(1)
	ms := int64(time.Millisecond)

	p1 := newPublisher(0, "t", 1, 4)
	p1.ackLat = h.buffer(0)
	id := <-p1.free // as run does before sending
	p1.sentAt[id] = 10 * ms
	p1.state[id].Store(idSent)
	require.True(t, p1.onAck(wire.PUBACK, id, 13*ms))
	require.False(t, p1.onAck(wire.PUBACK, id, 20*ms), "a second PUBACK")

	p2 := newPublisher(1, "t", 2, 4)
	p2.ackLat = h.buffer(0)
	id = <-p2.free
	p2.sentAt[id] = 100 * ms
	p2.state[id].Store(idSent)
	require.True(t, p2.onPubrec(id, 107*ms))
	require.True(t, p2.onPubrec(id, 150*ms), "a repeated PUBREC is answered")
	require.True(t, p2.onAck(wire.PUBCOMP, id, 200*ms))

	p1.ackLat.flush()
	p2.ackLat.flush()
	got := summarize(h.merged())
	require.Equal(t, int64(2), got.Count)
	require.InEpsilon(t, 3.0, got.P50, 0.002)
	require.InEpsilon(t, 7.0, got.Max, 0.002)
}
