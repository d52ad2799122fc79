package shard

import (
	"net"
	"sync"
	"time"

	"github.com/valyala/bytebufferpool"

	"iotd/wire"
)

// writeBufPool holds outbound batches; it is separate from the read pool
// because the two kinds of buffer have different size profiles.
var writeBufPool bytebufferpool.Pool

// outbound is a connection's write side. Shards and the reader append encoded
// packets under mu; one writer goroutine, started only while there is output,
// takes the whole batch and writes it with a single call. An idle connection
// therefore holds no buffer and no writer goroutine.
type outbound struct {
	mu        sync.Mutex
	conn      net.Conn
	b         *Broker
	pending   *bytebufferpool.ByteBuffer // nil while empty
	running   bool                       // a writer goroutine owns the socket
	closeWhen bool                       // close the socket once pending is written
	closed    bool
	wantSpace bool   // a shard holds QoS 1/2 messages back until the queue drains
	notify    func() // called (without mu) when wantSpace is satisfied
}

// queued reports the bytes waiting to be written. Called with mu held.
func (o *outbound) queued() int {
	if o.pending == nil {
		return 0
	}
	return len(o.pending.B)
}

// queuedBytes reports the bytes waiting to be written.
func (o *outbound) queuedBytes() int {
	o.mu.Lock()
	n := o.queued()
	o.mu.Unlock()
	return n
}

// write queues encoded packets (a shard's staged batch for this connection).
func (o *outbound) write(b []byte) {
	o.mu.Lock()
	if !o.closed {
		o.buffer()
		o.pending.B = append(o.pending.B, b...)
		o.kick()
	}
	o.mu.Unlock()
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

// send queues a packet from the connection's reader (PINGRESP, a refusing
// CONNACK); shards stage theirs and write them in batches.
func (o *outbound) send(p wire.Packet) {
	o.mu.Lock()
	if !o.closed {
		o.buffer()
		o.pending.B = p.Append(o.pending.B)
		o.kick()
	}
	o.mu.Unlock()
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
	if o.queued() > 0 {
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
	if o.pending != nil && !o.running {
		writeBufPool.Put(o.pending)
		o.pending = nil
	}
	o.mu.Unlock()
	o.conn.Close()
}

func (o *outbound) buffer() {
	if o.pending == nil {
		o.pending = writeBufPool.Get()
	}
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
	var batch *bytebufferpool.ByteBuffer
	for {
		o.mu.Lock()
		if batch != nil {
			batch.Reset()
			if o.pending == nil {
				o.pending, batch = batch, nil // keep one warm buffer while busy
			}
		}
		if o.closed || o.queued() == 0 {
			o.running = false
			closeNow := o.closeWhen && !o.closed
			if closeNow {
				o.closed = true
			}
			if o.pending != nil {
				writeBufPool.Put(o.pending)
				o.pending = nil
			}
			notify := o.takeNotify()
			o.mu.Unlock()
			if batch != nil {
				writeBufPool.Put(batch)
			}
			if closeNow {
				o.conn.Close()
			}
			if notify != nil {
				notify()
			}
			return
		}
		if batch != nil {
			writeBufPool.Put(batch)
		}
		batch, o.pending = o.pending, nil
		notify := o.takeNotify()
		o.mu.Unlock()
		if notify != nil {
			notify()
		}
		if t := o.b.cfg.WriteTimeout; t > 0 {
			o.conn.SetWriteDeadline(time.Now().Add(t))
		}
		if _, err := o.conn.Write(batch.B); err != nil {
			// The reader sees the closed socket and reports it to the shard.
			o.mu.Lock()
			o.closed = true
			o.running = false
			o.mu.Unlock()
			writeBufPool.Put(batch)
			o.conn.Close()
			return
		}
	}
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
