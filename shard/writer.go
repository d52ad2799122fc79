package shard

import (
	"math/bits"
	"net"
	"sync"
	"syscall"
	"time"

	"iotd/wire"
)

// outbound is a connection's write side. Shards and the reader append encoded
// packets under mu; one writer goroutine, started only while there is output,
// takes everything queued and writes it with a single writev. An idle
// connection therefore holds no buffer and no writer goroutine.
//
// The queue is a list of chunks, so it grows without copying itself: a
// single growing buffer allocated four to five times a stalled connection's
// queue on its way to the limit. The part of its batch the writer has not
// yet written counts against MaxOutboundBytes too, so a connection holds
// about MaxOutboundBytes however its reader stopped.
type outbound struct {
	mu        sync.Mutex
	conn      net.Conn
	b         *Broker
	chunks    []*chunk // queued bytes in order; nil while empty and idle
	queuedN   int      // bytes in chunks
	writing   int      // bytes the writer took and has not yet written (by window)
	running   bool     // a writer goroutine owns the socket
	closeWhen bool     // close the socket once the queue is written
	closed    bool
	wantSpace bool        // a shard holds QoS 1/2 messages back until the queue drains
	notify    func()      // called (without mu) when wantSpace is satisfied
	iov       net.Buffers // the writer's scratch for writev; owned by the writer
}

// queued reports the bytes waiting to be written or being written. Called
// with mu held.
func (o *outbound) queued() int { return o.queuedN + o.writing }

// queuedBytes reports the bytes waiting to be written or being written.
func (o *outbound) queuedBytes() int {
	o.mu.Lock()
	n := o.queued()
	o.mu.Unlock()
	return n
}

// write sends encoded packets (a shard's staged batch for this connection).
// rc is the TCP socket's raw connection (nil for TLS and WebSocket): while
// no writer runs and nothing is queued, a small batch is written straight to
// the socket without blocking, saving a goroutine start and a wake-up per
// flush; whatever the kernel does not take is queued for the writer.
func (o *outbound) write(b []byte, rc syscall.RawConn) {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return
	}
	if rc != nil && !o.running && o.queuedN == 0 && len(b) <= maxInlineWrite {
		var err error
		if b, err = writeInline(b, rc); err != nil {
			o.closed = true
			o.mu.Unlock()
			o.conn.Close() // the reader sees it and reports it to the shard
			return
		}
	}
	if len(b) > 0 {
		o.appendBytes(b)
		o.kick()
	}
	o.mu.Unlock()
}

// maxInlineWrite bounds the batch a shard writes to a socket itself: a
// larger one is copied by the writer goroutine, in parallel with the shard.
const maxInlineWrite = 16 << 10

// writeInline writes as much of b as the socket takes now, without waiting,
// and returns the rest, or the socket's error. The caller owns the socket's
// write side (holds mu with no writer running).
func writeInline(b []byte, rc syscall.RawConn) ([]byte, error) {
	w := inlineWriters.Get().(*inlineWriter)
	w.b, w.n, w.err = b, 0, nil
	// An error from Write itself (a write deadline the writer left behind,
	// a socket being closed) leaves b to the writer, which sorts it out.
	if err := rc.Write(w.try); err == nil {
		b = b[w.n:]
	}
	err := w.err
	w.b, w.err = nil, nil
	inlineWriters.Put(w)
	return b, err
}

// An inlineWriter is the state of one non-blocking write through a raw
// connection; pooled so the callback is allocated once, not per write.
type inlineWriter struct {
	b   []byte
	n   int
	err error
	try func(fd uintptr) bool
}

var inlineWriters = sync.Pool{New: func() any {
	w := &inlineWriter{}
	w.try = w.write
	return w
}}

// write is called by the runtime with the descriptor; returning true always
// (never waiting for the socket) keeps the write non-blocking.
func (w *inlineWriter) write(fd uintptr) bool {
	for w.n < len(w.b) {
		n, err := syscall.Write(int(fd), w.b[w.n:])
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return true
		case err != nil:
			w.err = err
			return true
		case n <= 0:
			return true
		}
		w.n += n
	}
	return true
}

// appendBytes copies b to the end of the queue, filling the last chunk and
// adding chunks as needed. Called with mu held.
func (o *outbound) appendBytes(b []byte) {
	o.queuedN += len(b)
	for len(b) > 0 {
		n := len(o.chunks)
		if n == 0 || len(o.chunks[n-1].b) == cap(o.chunks[n-1].b) {
			prev := 0
			if n > 0 {
				prev = cap(o.chunks[n-1].b)
			}
			o.chunks = append(o.chunks, getChunk(max(len(b), 2*prev)))
			n++
		}
		last := o.chunks[n-1]
		k := min(len(b), cap(last.b)-len(last.b))
		last.b = append(last.b, b[:k]...)
		b = b[k:]
	}
}

// dropChunks returns the queued chunks to their pools. Called with mu held.
func (o *outbound) dropChunks() {
	putChunks(o.chunks)
	o.chunks = nil
	o.queuedN = 0
}

// requestSpace asks for notify once the queue is under its byte limit; if it
// already is, notify runs now.
func (o *outbound) requestSpace() {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return
	}
	if o.queued() >= o.b.cfg.MaxOutboundBytes {
		o.wantSpace = true
		o.mu.Unlock()
		return
	}
	notify := o.notify
	o.mu.Unlock()
	if notify != nil {
		notify()
	}
}

// send writes a packet from the connection's reader (PINGRESP, a refusing
// CONNACK), like write; shards stage theirs and write them in batches.
func (o *outbound) send(p wire.Packet, rc syscall.RawConn) {
	var scratch [16]byte
	o.write(p.Append(scratch[:0]), rc)
}

// closeAfterFlush writes what is queued, then closes the socket.
func (o *outbound) closeAfterFlush() {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return
	}
	o.closeWhen = true
	if o.running {
		o.mu.Unlock()
		return
	}
	if o.queuedN > 0 {
		o.kick()
		if o.running {
			o.mu.Unlock()
			return
		}
		// No writer can start (shutting down): close now rather than never.
	}
	o.closed = true
	o.mu.Unlock()
	o.conn.Close()
}

// close drops whatever is queued and closes the socket now.
func (o *outbound) close() {
	o.mu.Lock()
	o.closed = true
	if !o.running {
		o.dropChunks() // else the writer drops them when its write fails
	}
	o.mu.Unlock()
	o.conn.Close()
}

// kick starts the writer goroutine if none runs. Called with mu held.
func (o *outbound) kick() {
	if o.running {
		return
	}
	if !o.b.goroutines.start(o.run) {
		return // shutting down: the socket is about to be closed anyway
	}
	o.running = true
}

// run is the writer goroutine: it owns the socket's write side until the
// queue is empty, then exits.
func (o *outbound) run() {
	var batch []*chunk
	for {
		o.mu.Lock()
		o.writing = 0
		if o.closed || o.queuedN == 0 {
			o.running = false
			closeNow := o.closeWhen && !o.closed
			if closeNow {
				o.closed = true
			}
			o.dropChunks()
			o.iov = nil // an idle connection keeps nothing
			notify := o.takeNotify()
			o.mu.Unlock()
			if closeNow {
				o.conn.Close()
			}
			if notify != nil {
				notify()
			}
			return
		}
		// Swap the lists: the written one comes back as the next queue.
		batch, o.chunks = o.chunks, batch[:0]
		o.writing, o.queuedN = o.queuedN, 0
		notify := o.takeNotify()
		o.mu.Unlock()
		if notify != nil {
			notify()
		}
		for i := 0; i < len(batch); {
			n, size := window(batch[i:])
			if err := o.writeChunks(batch[i : i+n]); err != nil {
				// The reader sees the closed socket and reports it to the shard.
				o.mu.Lock()
				o.closed = true
				o.running = false
				o.writing = 0
				o.dropChunks()
				o.iov = nil
				o.mu.Unlock()
				putChunks(batch[i:])
				o.conn.Close()
				return
			}
			putChunks(batch[i : i+n])
			i += n
			if i == len(batch) {
				break // the loop's next lock settles the last window
			}
			o.mu.Lock()
			o.writing -= size
			notify := o.takeNotify()
			o.mu.Unlock()
			if notify != nil {
				notify()
			}
		}
		batch = batch[:0]
	}
}

// writeWindow is about the most the writer hands the kernel in one call.
// A finished window leaves the queued count (and its chunks the pools)
// before the next starts, so a subscriber that keeps up is not charged for
// the part of a large batch the kernel already took: it was, and dropped
// QoS 0 messages while reading everything.
const writeWindow = 128 << 10

// window returns how many of chunks make the next write (at least one),
// and their bytes.
func window(chunks []*chunk) (n, size int) {
	for n < len(chunks) && (n == 0 || size+len(chunks[n].b) <= writeWindow) {
		size += len(chunks[n].b)
		n++
	}
	return n, size
}

// writeChunks writes chunks with one writev, blocking up to WriteTimeout.
func (o *outbound) writeChunks(chunks []*chunk) error {
	if t := o.b.cfg.WriteTimeout; t > 0 {
		o.conn.SetWriteDeadline(time.Now().Add(t))
	}
	o.iov = o.iov[:0]
	for _, c := range chunks {
		o.iov = append(o.iov, c.b)
	}
	iov := o.iov // WriteTo consumes its receiver
	_, err := iov.WriteTo(o.conn)
	clear(o.iov)
	return err
}

// takeNotify returns the space callback once the queue is under its limit.
// Called with mu held.
func (o *outbound) takeNotify() func() {
	if o.wantSpace && o.queued() < o.b.cfg.MaxOutboundBytes {
		o.wantSpace = false
		return o.notify
	}
	return nil
}

// A chunk is one piece of an outbound queue. Chunks come in powers of two
// from 512 B to 64 KiB: a queue starts with one just big enough for its
// first write and doubles the size of each chunk it adds up to 64 KiB, so a
// few small packets take little memory and a long backlog is mostly 64 KiB
// pieces with at most one partly empty.
type chunk struct{ b []byte }

const (
	minChunkBits = 9  // 512 B
	maxChunkBits = 16 // 64 KiB
)

// chunkPools holds free chunks, one pool per size.
var chunkPools [maxChunkBits - minChunkBits + 1]sync.Pool

// getChunk returns an empty chunk of the smallest size that holds n bytes,
// or of the largest size.
func getChunk(n int) *chunk {
	class := 0
	for class < len(chunkPools)-1 && 1<<(minChunkBits+class) < n {
		class++
	}
	if c, ok := chunkPools[class].Get().(*chunk); ok {
		return c
	}
	return &chunk{b: make([]byte, 0, 1<<(minChunkBits+class))}
}

// putChunks returns chunks to their pools and clears the list.
func putChunks(list []*chunk) {
	for i, c := range list {
		class := bits.Len(uint(cap(c.b))) - 1 - minChunkBits
		c.b = c.b[:0]
		chunkPools[class].Put(c)
		list[i] = nil
	}
}
