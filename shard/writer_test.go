package shard

import (
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A stalled connection's outbound queue counts the batch its writer is
// blocked on, so the connection holds about MaxOutboundBytes and not twice
// that; and filling the queue allocates about what it holds, because it
// grows by chunks instead of by copying itself into larger arrays (which
// allocated four to five times the queue).
func TestOutboundQueueOfStalledConnection(t *testing.T) {
	const limit = 1 << 20
	b := &Broker{cfg: Config{MaxOutboundBytes: limit, WriteTimeout: time.Minute}}
	server, client := net.Pipe() // a Write blocks until the other end reads
	defer client.Close()
	o := &outbound{conn: server, b: b}

	first := make([]byte, limit/2)
	o.write(first)
	// The writer has taken the batch once the first byte arrives; the rest
	// of it stays unwritten: the reader stalls.
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := client.Read(make([]byte, 1))
	require.NoError(t, err)
	require.Equal(t, limit/2, o.queuedBytes(), "bytes the stalled writer holds count as queued")

	packet := make([]byte, 100)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for o.queuedBytes() < limit {
		o.write(packet)
	}
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("queueing %d KiB behind a stalled write allocated %d KiB", (limit-limit/2)>>10, allocated>>10)
	require.Less(t, allocated, uint64(limit/2*5/4), "bytes allocated to queue limit/2 bytes")

	o.close()
	b.goroutines.wait()
}
