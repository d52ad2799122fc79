package loadtest

import (
	"sync/atomic"
	"time"

	"iotd/wire"
)

// stallTimeout is how long a publisher waits on the end-to-end window
// without any progress from its subscribers before it gives up on that
// window (the broker dropped every message in it) and carries on.
const stallTimeout = 2 * time.Second

// Packet id states of a publisher's QoS 1/2 window.
const (
	idFree     = 0
	idSent     = 1 // PUBLISH sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2)
	idReleased = 2 // QoS 2: PUBREL sent, waiting for PUBCOMP
)

// publisher sends numbered messages on one topic from its own goroutine
// (run). The reader of its connection completes QoS 1/2 flows and hands
// packet ids back through free; subscribers' readers advance the streams
// it watches for end-to-end flow control and wake it through wake.
type publisher struct {
	idx     uint32
	topic   []byte
	qos     byte
	c       *conn
	quota   uint64 // messages to send, if limited
	limited bool   // false: send until the run stops publishing

	// End-to-end flow control: the streams carrying this publisher's
	// messages, and how far ahead of the slowest one it may run.
	streams []*stream
	window  uint64

	free  chan uint16     // QoS 1/2 packet ids ready for use; capacity = in-flight window
	state []atomic.Uint32 // by packet id: idFree, idSent or idReleased
	// sentAt is the send time (ns since the run's epoch) by packet id,
	// written before state goes to idSent and read by the reader after
	// it moves state on, which orders the two. ackLat, owned by the
	// reader, records publish to PUBACK/PUBREC; nil records nothing.
	sentAt []int64
	ackLat *latBuf
	sent   atomic.Uint64 // messages written; also the next sequence number
	_      [56]byte
	// waitFor is the stream position the publisher is blocked on, 0 when
	// it is not blocked; subscriber readers wake it once reached.
	waitFor atomic.Uint64
	wake    chan struct{}
	floor   uint64 // window positions given up after a stall
}

func newPublisher(idx uint32, topic string, qos byte, inflight int) *publisher {
	p := &publisher{idx: idx, topic: []byte(topic), qos: qos, wake: make(chan struct{}, 1)}
	if qos > 0 {
		p.free = make(chan uint16, inflight)
		p.state = make([]atomic.Uint32, inflight+1)
		p.sentAt = make([]int64, inflight+1)
		for id := 1; id <= inflight; id++ {
			p.free <- uint16(id)
		}
	}
	return p
}

// onAck completes a QoS 1 (PUBACK) or QoS 2 (PUBCOMP) message; called by
// the reader at now (ns since the epoch). It reports false for an id that
// is not waiting for that ack.
func (p *publisher) onAck(t wire.Type, id uint16, now int64) bool {
	from := uint32(idSent)
	if t == wire.PUBCOMP {
		from = idReleased
	} else if t != wire.PUBACK || p.qos != 1 {
		return false
	}
	if int(id) >= len(p.state) || !p.state[id].CompareAndSwap(from, idFree) {
		return false
	}
	if t == wire.PUBACK && p.ackLat != nil {
		p.ackLat.add(time.Duration(now - p.sentAt[id]))
	}
	p.free <- id // never blocks: at most cap(free) ids exist
	return true
}

// onPubrec moves a QoS 2 message to its second phase; the reader then
// sends PUBREL. A repeated PUBREC is answered again [MQTT-4.3.3].
func (p *publisher) onPubrec(id uint16, now int64) bool {
	if p.qos != 2 || int(id) >= len(p.state) {
		return false
	}
	if p.state[id].CompareAndSwap(idSent, idReleased) {
		if p.ackLat != nil {
			p.ackLat.add(time.Duration(now - p.sentAt[id]))
		}
		return true
	}
	return p.state[id].Load() == idReleased
}

// minNext is the lowest stream position (highest sequence received + 1)
// over the subscribers this publisher feeds.
func (p *publisher) minNext() uint64 {
	lo := ^uint64(0)
	for _, s := range p.streams {
		lo = min(lo, s.next.Load())
	}
	return max(lo, p.floor)
}

// sendPlan says what a publisher's run sends.
type sendPlan struct {
	start    time.Time
	rate     float64                 // this publisher's msg/s; 0 = as fast as allowed
	size     int                     // payload bytes, header included
	retain   bool                    // RETAIN flag
	topicFor func(seq uint64) string // topic per message; nil = the publisher's topic
	empty    bool                    // zero-length payloads (deletes retained messages)
}

// run publishes until the quota is sent or the run stops publishing, then
// waits (up to the drain period) for the acknowledgements outstanding.
func (p *publisher) run(r *runner, plan sendPlan) {
	c := p.c
	payload := newPayload(plan.size)
	pk := wire.Publish{QoS: p.qos, Retain: plan.retain, Topic: p.topic, Payload: payload}
	if plan.empty {
		pk.Payload = nil
	}
	var scratch []byte
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	// sleep waits d unless publishing stops first.
	sleep := func(d time.Duration) bool {
		timer.Reset(d)
		select {
		case <-timer.C:
			return true
		case <-r.stop:
			timer.Stop()
			return false
		}
	}
	var known uint64 // last minNext seen; refreshed only when the window binds
	for seq := uint64(0); ; seq++ {
		if (p.limited && seq >= p.quota) || r.stopping.Load() {
			break
		}
		if plan.rate > 0 {
			due := plan.start.Add(time.Duration(float64(seq) * float64(time.Second) / plan.rate))
			if d := time.Until(due); d > 0 {
				if c.flush() != nil || !sleep(d) {
					break
				}
			}
		}
		if p.window > 0 && seq >= known+p.window {
			known = p.minNext()
			if seq >= known+p.window {
				if c.flush() != nil || !p.waitWindow(r, seq+1-p.window, &known) {
					break
				}
			}
		}
		ts := r.since()
		if p.qos > 0 {
			var ok bool
			if pk.PacketID, ok = p.takeID(r); !ok {
				break
			}
			ts = r.since() // after any wait for a free id
			p.sentAt[pk.PacketID] = ts
			p.state[pk.PacketID].Store(idSent)
		}
		if plan.topicFor != nil {
			pk.Topic = append(pk.Topic[:0:0], plan.topicFor(seq)...)
		}
		if !plan.empty {
			putHeader(payload, header{Tag: r.tag, Pub: p.idx, Seq: seq, TS: ts})
		}
		var err error
		size := 5 + 2 + len(pk.Topic) + 2 + len(pk.Payload)
		if scratch, err = c.writePublish(&pk, size, scratch); err != nil {
			break // the reader reports the broken connection
		}
		p.sent.Store(seq + 1)
	}
	c.flush()
	p.awaitAcks(r)
}

// takeID returns a free packet id, flushing and blocking while the
// in-flight window is full.
func (p *publisher) takeID(r *runner) (uint16, bool) {
	select {
	case id := <-p.free:
		return id, true
	default:
	}
	if p.c.flush() != nil {
		return 0, false
	}
	select {
	case id := <-p.free:
		return id, true
	case <-r.stop:
		return 0, false
	case <-p.c.done:
		return 0, false
	}
}

// waitWindow blocks until every stream has reached target, publishing
// stops, or the subscribers make no progress for stallTimeout (then the
// window is written off and counted as a stall).
func (p *publisher) waitWindow(r *runner, target uint64, known *uint64) bool {
	timer := time.NewTimer(stallTimeout)
	defer timer.Stop()
	defer p.waitFor.Store(0)
	for {
		p.waitFor.Store(target)
		lo := p.minNext()
		if lo >= target {
			*known = lo
			return true
		}
		if lo > *known {
			*known = lo
			timer.Reset(stallTimeout) // progress: restart the stall clock
		}
		select {
		case <-p.wake:
		case <-timer.C:
			r.stalls.Add(1)
			r.errorf("publisher %d: its subscribers received nothing for %v with %d messages outstanding; the broker dropped them (continuing)", p.idx, stallTimeout, p.window)
			p.floor = target
			*known = target
			return true
		case <-r.stop:
			return false
		}
	}
}

// awaitAcks takes back every packet id, which means every QoS 1/2 message
// was acknowledged, giving up after the drain period.
func (p *publisher) awaitAcks(r *runner) {
	if p.qos == 0 {
		return
	}
	deadline := time.NewTimer(r.cfg.Drain)
	defer deadline.Stop()
	for i := range cap(p.free) {
		select {
		case <-p.free:
		case <-deadline.C:
			r.errorf("publisher %d: %d messages still unacknowledged %v after publishing stopped", p.idx, cap(p.free)-i, r.cfg.Drain)
			return
		case <-p.c.done:
			return
		case <-r.ctx.Done():
			return
		}
	}
}
