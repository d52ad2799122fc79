package shard

import (
	"encoding/binary"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"iotd/wire"
)

// stallSubscriber connects a clean subscriber whose socket receive buffer
// is small, subscribes, and from then on does not read: a consumer that
// has stopped.
func (tb *testBroker) stallSubscriber(t *testing.T, id string, persistent bool, filter string, qos byte) *rawClient {
	t.Helper()
	c := tb.dial(t)
	require.NoError(t, c.conn.(*net.TCPConn).SetReadBuffer(4096))
	ack := c.connect(&wire.Connect{ClientID: id, CleanSession: !persistent})
	require.Equal(t, wire.Accepted, ack.ReturnCode)
	c.subscribeOK(filter, qos)
	return c
}

// A subscriber that stops reading must not slow the publisher or any other
// subscriber, and the broker's memory stays bounded: its writer queue is
// capped at MaxOutboundBytes, QoS 0 messages for it are dropped (and
// counted) once the cap is reached, QoS 1 messages wait in its session
// queue up to MaxQueuedMessages, after which they are dropped (and
// counted).
//
// One publisher sends n QoS 1 messages of 1 KiB with a window of
// unacknowledged PUBLISHes, never waiting for a single ack, as fast as the
// fast QoS 0 subscriber reads them. Two stalled subscribers (granted QoS 0
// and QoS 1, receive buffer 4 KiB, never reading) share a shard with the
// fast one; the publisher is on another shard. The publisher must get all
// its PUBACKs and the fast subscriber every message, in order, while the
// stalled ones stay stalled; the heap must stay within the bounds below.
func TestSlowConsumerDoesNotHoldUpOthers(t *testing.T) {
	const (
		n          = 40_000
		payloadLen = 1024
		window     = 1000 // the publisher's unacknowledged PUBLISHes
		lead       = 512  // how far the publisher may run ahead of the fast subscriber
		// Heap the broker may hold for this: per stalled connection a full
		// writer queue (MaxOutboundBytes, 1 MiB) and the batch its writer
		// is blocked on; for the QoS 1 one also the messages in flight
		// (those the kernel's socket buffer took, a few MiB at most, and
		// those in its writer queue) and a full session queue (1000 x 1
		// KiB); a little for the fast connection and the reader lane.
		// That is about 10 MiB live, where a broker that kept everything
		// for the stalled subscribers would hold 2 x 40 MB. Peak heap
		// also counts the garbage of the 40 MB that passed through, which
		// the GC (GOGC=100) lets grow to about the live heap again.
		peakBound = 48 << 20
		// Heap still in use after a GC with both subscribers still stalled.
		retainedBound = 24 << 20
	)
	b := runBroker(t, Config{
		Shards:       4,
		MaxInflight:  65535,           // so the byte limit, not the window, holds QoS 1 back
		WriteTimeout: 5 * time.Minute, // the stalled ones stay connected for the whole test
	})
	stalled0 := b.stallSubscriber(t, b.idOnShard("stalled-q0-", 1), false, "flood", 0)
	stalled1ID := b.idOnShard("stalled-q1-", 1)
	stalled1 := b.stallSubscriber(t, stalled1ID, true, "flood", 1)
	fast, _ := b.connect(t, b.idOnShard("fast", 1), true)
	fast.subscribeOK("flood", 0)
	pub, _ := b.connect(t, b.idOnShard("pub", 0), true)

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
		}
	}()

	// The fast subscriber reads everything and checks order.
	var wg sync.WaitGroup
	var fastErr error
	var fastGot atomic.Int64
	fastDone := make(chan struct{}) // fastErr is set once it is closed
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(fastDone)
		fastErr = readSequence(fast.conn, n, &fastGot)
	}()

	// The publisher's acks come back on their own goroutine; ids return to
	// the free list as they are acknowledged.
	free := make(chan uint16, window)
	for id := 1; id <= window; id++ {
		free <- uint16(id)
	}
	var ackErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		ackErr = func() error {
			for i := 0; i < n; i++ {
				if pub.r.Buffered() == 0 {
					pub.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
				}
				fh, body, err := pub.r.ReadPacket()
				if err != nil {
					return fmt.Errorf("publisher after %d of %d PUBACKs: %w", i, n, err)
				}
				if fh.Type != wire.PUBACK {
					return fmt.Errorf("publisher got %s", fh.Type)
				}
				free <- binary.BigEndian.Uint16(body)
			}
			return nil
		}()
	}()

	start := time.Now()
	payload := make([]byte, payloadLen)
	var batch []byte
	for i := 0; i < n; {
		// The publisher never waits for a PUBACK, nor for the stalled
		// subscribers; it stays at most lead messages ahead of the fast
		// one. At QoS 0 a consumer that falls more than MaxOutboundBytes
		// behind loses messages whether or not anyone else is stalled, and
		// the broker takes messages faster than one reader on this machine
		// can keep up with for long.
		for i-int(fastGot.Load()) >= lead {
			select {
			case <-fastDone:
				require.NoError(t, fastErr, "the fast subscriber stopped reading")
			default:
			}
			if time.Since(start) > 30*time.Second {
				require.FailNow(t, "fast subscriber held up", "%d of %d after 30 s", fastGot.Load(), i)
			}
			time.Sleep(50 * time.Microsecond)
		}
		batch = batch[:0]
		select {
		case id := <-free:
			binary.BigEndian.PutUint32(payload, uint32(i))
			batch = (&wire.Publish{QoS: 1, Topic: []byte("flood"), PacketID: id, Payload: payload}).Append(batch)
			i++
		case <-time.After(20 * time.Second):
			require.FailNow(t, "publisher held up: no PUBACK for 20 s", "after %d messages", i)
		}
		for more := true; more && i < n && i-int(fastGot.Load()) < lead && len(batch) < 64<<10; {
			select {
			case id := <-free:
				binary.BigEndian.PutUint32(payload, uint32(i))
				batch = (&wire.Publish{QoS: 1, Topic: []byte("flood"), PacketID: id, Payload: payload}).Append(batch)
				i++
			default:
				more = false
			}
		}
		pub.write(batch)
	}
	wg.Wait()
	published := time.Since(start)
	require.NoError(t, ackErr)  // the publisher was never held up [MQTT-4.8.0-2]
	require.NoError(t, fastErr) // the fast subscriber got every message, in order
	close(stopSampling)
	<-sampled
	runtime.GC()
	runtime.ReadMemStats(&ms)
	retained := ms.HeapInuse
	st := b.Stats()
	t.Logf("%d x %d B published and delivered to the fast subscriber in %v (%.0f msg/s); heap in use: base %.1f MiB, peak +%.1f MiB, after GC +%.1f MiB; dropped QoS 0 %d, queue full %d",
		n, payloadLen, published.Round(time.Millisecond), n/published.Seconds(),
		mib(base), mib(peak.Load()-base), mib(retained-base), st.DroppedQoS0, st.DroppedQueueFull)
	require.Less(t, peak.Load()-base, uint64(peakBound), "peak heap growth")
	require.Less(t, int64(retained)-int64(base), int64(retainedBound), "heap retained for the stalled subscribers")
	require.Positive(t, st.DroppedQoS0, "the stalled QoS 0 subscriber's messages were not dropped")
	require.Positive(t, st.DroppedQueueFull, "the stalled QoS 1 subscriber's queue never filled")

	// The stalled QoS 1 subscriber comes back on a new connection (its
	// old socket, with a tiny receive window, would take minutes to drain):
	// the messages held in flight are resent first with DUP=1, then the
	// queue, all in publish order, and together they are every message the
	// full queue did not drop.
	stalled1.conn.Close()
	resumed, ack := b.connect(t, stalled1ID, false)
	require.True(t, ack.SessionPresent)
	got, resent, err := drainInOrder(resumed, n-int(st.DroppedQueueFull))
	require.NoError(t, err)
	t.Logf("the stalled QoS 1 subscriber resumed: %d resent (DUP=1), then %d from its queue", resent, got-resent)
	require.Equal(t, int64(n), int64(got)+st.DroppedQueueFull, "QoS 1: received + dropped")
	require.Positive(t, resent)
	stalled0.conn.Close()
}

func mib(v uint64) float64 { return float64(v) / (1 << 20) }

// drainInOrder reads want QoS 1 PUBLISHes, acknowledging them, and checks
// that their sequence numbers increase and that the resends (DUP=1) come
// before the rest; then it checks that nothing more arrives.
func drainInOrder(c *rawClient, want int) (got, resent int, err error) {
	last := -1
	var acks []byte
	for got < want {
		if c.r.Buffered() == 0 {
			c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		}
		fh, body, err := c.r.ReadPacket()
		if err != nil {
			return got, resent, fmt.Errorf("after %d of %d: %w", got, want, err)
		}
		var p wire.Publish
		if err := p.Decode(fh, body); err != nil {
			return got, resent, err
		}
		if p.QoS != 1 {
			return got, resent, fmt.Errorf("got QoS %d", p.QoS)
		}
		if p.Dup {
			if resent != got {
				return got, resent, fmt.Errorf("resend after %d new messages", got-resent) // [MQTT-4.4.0-1]
			}
			resent++
		}
		seq := int(binary.BigEndian.Uint32(p.Payload))
		if seq <= last {
			return got, resent, fmt.Errorf("got %d after %d", seq, last) // [MQTT-4.6.0-6]
		}
		last = seq
		got++
		acks = (&wire.Puback{PacketID: p.PacketID}).Append(acks)
		if c.r.Buffered() == 0 || got == want {
			c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.conn.Write(acks); err != nil {
				return got, resent, err
			}
			acks = acks[:0]
		}
	}
	c.conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if fh, _, err := c.r.ReadPacket(); err == nil {
		return got, resent, fmt.Errorf("unexpected %s after %d messages", fh.Type, got)
	}
	return got, resent, nil
}

// readSequence reads n QoS 0 PUBLISHes whose payloads start with the
// sequence numbers 0..n-1, in big chunks, parsing the packets in place,
// and counts them in got.
func readSequence(conn net.Conn, n int, got *atomic.Int64) error {
	buf := make([]byte, 1<<20)
	start, end := 0, 0
	for i := 0; i < n; {
		fh, hl, err := wire.DecodeHeader(buf[start:end])
		if err == nil && end-start >= hl+fh.RemainingLength {
			var p wire.Publish
			if err := p.Decode(fh, buf[start+hl:start+hl+fh.RemainingLength]); err != nil {
				return err
			}
			if seq := binary.BigEndian.Uint32(p.Payload); seq != uint32(i) {
				return fmt.Errorf("fast subscriber got %d, want %d", seq, i)
			}
			start += hl + fh.RemainingLength
			i++
			got.Store(int64(i))
			continue
		}
		if err != nil && err != wire.ErrIncomplete {
			return err
		}
		// Need more bytes: move the partial packet to the front and read.
		end = copy(buf, buf[start:end])
		start = 0
		conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		m, err := conn.Read(buf[end:])
		if err != nil {
			return fmt.Errorf("fast subscriber after %d of %d: %w", i, n, err)
		}
		end += m
	}
	return nil
}

// A subscriber that pauses (stops reading) and then resumes on the same
// connection gets every QoS 1 message, in order: while its writer queue is
// full the messages wait in the session queue, and the writer's "drained"
// notice moves them on. The subscriber never acknowledges, so nothing but
// that notice can move them.
func TestSlowConsumerResumesFromSessionQueue(t *testing.T) {
	const (
		n          = 2000
		payloadLen = 8 << 10
	)
	b := runBroker(t, Config{
		MaxOutboundBytes:  64 << 10,
		MaxInflight:       n, // all of them may be in flight: no ack is needed to move the queue
		MaxQueuedMessages: n,
	})
	sub, _ := b.connect(t, b.idOnShard("paused", 1), true)
	sub.subscribeOK("resume", 1)
	pub, _ := b.connect(t, b.idOnShard("pub", 2), true)

	payload := make([]byte, payloadLen)
	var batch []byte
	for i := 0; i < n; i += 100 {
		batch = batch[:0]
		for j := i; j < i+100; j++ {
			binary.BigEndian.PutUint32(payload, uint32(j))
			batch = (&wire.Publish{QoS: 1, Topic: []byte("resume"), PacketID: uint16(j%100 + 1), Payload: payload}).Append(batch)
		}
		pub.write(batch)
		for range 100 {
			pub.expect(wire.PUBACK)
		}
	}
	// 16 MB is more than the kernel's socket buffers and the 64 KiB writer
	// queue take: most of it is waiting in the session queue now.
	for i := range n {
		if sub.r.Buffered() == 0 {
			sub.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		}
		fh, body, err := sub.r.ReadPacket()
		require.NoError(t, err, "after %d of %d", i, n)
		var p wire.Publish
		require.NoError(t, p.Decode(fh, body))
		require.Equal(t, uint32(i), binary.BigEndian.Uint32(p.Payload)) // [MQTT-4.6.0-6]
	}
	require.Zero(t, b.Stats().DroppedQueueFull)
}

// Messages dropped for stalled subscribers cost no allocation per
// subscriber: logging each drop boxed its arguments, three allocations per
// stalled subscriber per message, and read the clock, which made the
// stalled subscribers, not the ones reading, what a publisher waited for.
func TestDroppingForStalledSubscribersAllocatesNothing(t *testing.T) {
	const (
		stalled     = 40
		payloadLen  = 1024
		maxOutbound = 64 << 10
		fill        = 4 << 20 / payloadLen
		dropped     = 2000
	)
	b := runBroker(t, Config{
		Shards:           2,
		MaxOutboundBytes: maxOutbound,
		WriteTimeout:     5 * time.Minute, // the stalled ones stay connected
	})
	for i := range stalled {
		c := b.stallSubscriber(t, fmt.Sprintf("stalled-%d", i), false, "fill", 0)
		defer c.conn.Close()
	}
	pub, _ := b.connect(t, "pub", true)
	sent := 0
	payload := make([]byte, payloadLen)
	var batch []byte
	// publish sends n messages and waits until every delivery to the
	// stalled subscribers was either staged or dropped.
	publish := func(n int) {
		for end := sent + n; sent < end; {
			batch = batch[:0]
			for ; sent < end && len(batch) < 32<<10; sent++ {
				batch = (&wire.Publish{Topic: []byte("fill"), Payload: payload}).Append(batch)
			}
			pub.write(batch)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			st := b.Stats()
			if st.Sent[0]+st.DroppedQoS0 == int64(stalled*sent) {
				return
			}
			require.True(t, time.Now().Before(deadline), "deliveries: %d sent + %d dropped of %d", st.Sent[0], st.DroppedQoS0, stalled*sent)
			time.Sleep(5 * time.Millisecond)
		}
	}
	// Fill the queues and the kernel's socket buffers before them (which
	// go on taking a little as they grow).
	publish(fill)
	droppedBefore := b.Stats().DroppedQoS0
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	publish(dropped)
	runtime.ReadMemStats(&after)
	n := b.Stats().DroppedQoS0 - droppedBefore
	require.Greater(t, n, int64(stalled*dropped*9/10), "deliveries dropped of %d: the queues were not full", stalled*dropped)
	perMsg := float64(after.Mallocs-before.Mallocs) / dropped
	t.Logf("%d messages for %d stalled subscribers, %d deliveries dropped: %.1f allocations per message", dropped, stalled, n, perMsg)
	require.Less(t, perMsg, float64(stalled)/4, "allocations per message dropped for %d subscribers", stalled)
}
