package shard

import (
	"io"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"iotd/wire"
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
	o.write(first, nil)
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
		o.write(packet, nil)
	}
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("queueing %d KiB behind a stalled write allocated %d KiB", (limit-limit/2)>>10, allocated>>10)
	require.Less(t, allocated, uint64(limit/2*5/4), "bytes allocated to queue limit/2 bytes")

	o.close()
	b.goroutines.wait()
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (server, client *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	s, err := ln.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { c.Close(); s.Close() })
	return s.(*net.TCPConn), c.(*net.TCPConn)
}

// inlineTest is an outbound queue on a loopback TCP connection, with the
// raw connection its inline writes go through.
type inlineTest struct {
	b              *Broker
	o              *outbound
	server, client *net.TCPConn
	rc             syscall.RawConn
}

// newInlineTest sets one up; noWriter stops the goroutine group first, so
// no writer goroutine can start and only inline writes reach the socket.
func newInlineTest(t *testing.T, limit int, noWriter bool) *inlineTest {
	t.Helper()
	b := &Broker{cfg: Config{MaxOutboundBytes: limit, WriteTimeout: time.Minute}}
	if noWriter {
		b.goroutines.stop()
	}
	server, client := tcpPair(t)
	rc, err := server.SyscallConn()
	require.NoError(t, err)
	it := &inlineTest{b: b, o: &outbound{conn: server, b: b}, server: server, client: client, rc: rc}
	t.Cleanup(func() { it.o.close(); b.goroutines.wait() })
	return it
}

// A small batch to an idle TCP connection goes straight to the socket: with
// the goroutine group stopped no writer can start, so only an inline write
// delivers it. A batch over maxInlineWrite waits for the writer.
func TestInlineWriteNeedsNoWriterGoroutine(t *testing.T) {
	it := newInlineTest(t, 1<<20, true)
	o, client, rc := it.o, it.client, it.rc

	o.write([]byte("hello"), rc)
	o.send(&wire.Pingresp{}, rc)
	got := make([]byte, 7)
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.ReadFull(client, got)
	require.NoError(t, err)
	require.Equal(t, "hello\xd0\x00", string(got))
	require.Zero(t, o.queuedBytes())

	o.write(make([]byte, maxInlineWrite+1), rc)
	require.Equal(t, maxInlineWrite+1, o.queuedBytes(), "a large batch is left to the writer")
	o.write([]byte("x"), rc)
	require.Equal(t, maxInlineWrite+2, o.queuedBytes(), "nothing overtakes queued bytes")
}

// When the kernel takes only part of an inline write, the rest is queued
// for the writer, and later writes follow it in order.
func TestInlineWriteLeavesTheRestToTheWriter(t *testing.T) {
	it := newInlineTest(t, 64<<20, false)
	o, client, rc := it.o, it.client, it.rc
	require.NoError(t, it.server.SetWriteBuffer(4096))
	require.NoError(t, client.SetReadBuffer(4096))

	// Numbered bytes in batches of 1000 until the socket is full and bytes
	// wait in the queue, then as many again.
	var sent []byte
	batch := func() {
		p := make([]byte, 1000)
		for i := range p {
			p[i] = byte(len(sent) + i)
		}
		sent = append(sent, p...)
		o.write(p, rc)
	}
	for o.queuedBytes() == 0 {
		require.Less(t, len(sent), 64<<20, "the socket never filled")
		batch()
	}
	for range 50 {
		batch()
	}
	got := make([]byte, len(sent))
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.ReadFull(client, got)
	require.NoError(t, err)
	require.Equal(t, sent, got)
}

// A write deadline the writer left behind makes the raw write refuse; the
// batch then goes through the writer, which sets a fresh deadline.
func TestInlineWriteAfterAnExpiredDeadline(t *testing.T) {
	it := newInlineTest(t, 1<<20, false)
	require.NoError(t, it.server.SetWriteDeadline(time.Now().Add(-time.Second)))
	it.o.write([]byte("late"), it.rc)
	got := make([]byte, 4)
	it.client.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.ReadFull(it.client, got)
	require.NoError(t, err)
	require.Equal(t, "late", string(got))
}

// An inline write to a socket the peer reset closes the connection, so its
// reader ends and reports it.
func TestInlineWriteToAResetSocketCloses(t *testing.T) {
	it := newInlineTest(t, 1<<20, true)
	o, server, client, rc := it.o, it.server, it.client, it.rc
	require.NoError(t, client.SetLinger(0))
	require.NoError(t, client.Close()) // RST
	require.Eventually(t, func() bool {
		o.write([]byte("x"), rc)
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.closed
	}, 10*time.Second, time.Millisecond)
	_, err := server.Read(make([]byte, 1))
	require.ErrorIs(t, err, net.ErrClosed)
	require.Zero(t, o.queuedBytes())
}

// The shard reads a client's queue once per iteration; when that reading
// says full and the shard staged more since, it reads again, because the
// writer drains while a long iteration stages. A stale reading dropped QoS 0
// messages for a subscriber that kept up (TestSlowConsumerDoesNotHoldUpOthers
// under load).
func TestRoomRereadsAStaleQueueReading(t *testing.T) {
	const limit = 1 << 20
	b := &Broker{cfg: Config{MaxOutboundBytes: limit, WriteTimeout: time.Minute}}
	b.goroutines.stop() // no writer: the test drains the queue itself
	s := &Shard{b: b, iter: 1}
	c := &client{}
	c.out = outbound{b: b}
	c.out.write(make([]byte, limit/2+1000), nil)
	require.Equal(t, limit/2-1000, s.room(c))

	// The writer wrote everything; the shard, in the same iteration, stages
	// another half.
	c.out.mu.Lock()
	c.out.dropChunks()
	c.out.mu.Unlock()
	c.stage = stagePool.Get()
	c.stage.B = append(c.stage.B, make([]byte, limit/2)...)
	defer stagePool.Put(c.stage)
	require.Equal(t, limit/2, s.room(c), "a reading from before the writer drained is read again")

	// Next iteration, a queue that is really full: full, and read no more
	// until the shard stages again (a stalled subscriber's drops take no
	// lock).
	s.iter++
	c.out.write(make([]byte, limit), nil)
	require.Equal(t, -limit/2, s.room(c))
	c.out.mu.Lock()
	c.out.dropChunks()
	c.out.mu.Unlock()
	require.Equal(t, -limit/2, s.room(c), "nothing staged since the last reading")
	c.stage.B = append(c.stage.B, 1)
	require.Equal(t, limit/2-1, s.room(c))
}

// The writer writes a large batch in windows, and a finished window leaves
// the queued count at once: a subscriber that keeps up is not charged for
// what it already received while the rest of the batch is written.
func TestWriterCountsOnlyTheUnwrittenPartOfItsBatch(t *testing.T) {
	b := &Broker{cfg: Config{MaxOutboundBytes: 4 << 20, WriteTimeout: time.Minute}}
	server, client := net.Pipe() // a Write returns once the other end read it all
	defer client.Close()
	o := &outbound{conn: server, b: b}
	const batch = 2*writeWindow + writeWindow/2
	o.write(make([]byte, batch), nil)

	// Read the first window and one byte of the second: the writer is now
	// blocked on the second window.
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.ReadFull(client, make([]byte, writeWindow+1))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return o.queuedBytes() == batch-writeWindow },
		10*time.Second, time.Millisecond, "queued %d, want %d", o.queuedBytes(), batch-writeWindow)

	_, err = io.ReadFull(client, make([]byte, batch-writeWindow-1))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return o.queuedBytes() == 0 }, 10*time.Second, time.Millisecond)
	o.close()
	b.goroutines.wait()
}
