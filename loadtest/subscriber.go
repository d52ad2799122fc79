package loadtest

import (
	"sync/atomic"
	"time"

	"iotd/wire"
)

// stream is one publisher -> subscriber flow of messages.
type stream struct {
	pub      *publisher
	sub      *subscriber
	t        seqTracker    // owned by the subscriber's reader goroutine
	next     atomic.Uint64 // t.Next(), published for the publisher's flow control
	expected uint64        // set at the end from pub.sent
}

// subscriber is the receiving side of a client. Its accounting is done by
// the reader goroutine of its current connection (one at a time: in
// offline, the next connection starts after the previous reader ended),
// so only the counters others read while it runs are atomic.
type subscriber struct {
	idx     int
	id      string
	filters []wire.Subscription

	// The streams it should receive, by publisher index: dense when most
	// publishers feed it (fanin), a map when few do (pairs).
	dense  []*stream
	sparse map[uint32]*stream
	all    []*stream

	ordered   bool  // count out-of-order deliveries (not for retained messages)
	floor     int64 // latency is measured from max(send time, floor), ns since epoch
	fromFloor bool  // measure latency from floor alone (send times from another run)

	recv     atomic.Uint64 // deliveries, for progress and drain
	distinct atomic.Uint64 // distinct messages, for drain
	last     atomic.Int64  // time of the last delivery, ns since epoch

	foreign    uint64 // payloads not from this run
	unexpected uint64 // messages from publishers it did not subscribe to, or bad sequence numbers
	lat        *latBuf
	qos2       []uint64 // QoS 2 packet ids received and not yet released (PUBREL)
}

func (s *subscriber) addStream(p *publisher) *stream {
	st := &stream{pub: p, sub: s}
	s.all = append(s.all, st)
	p.streams = append(p.streams, st)
	return st
}

// index builds the lookup from publisher index to stream once every
// stream is added; nPubs is the number of publishers in the run.
func (s *subscriber) index(nPubs int) {
	if len(s.all)*4 >= nPubs {
		s.dense = make([]*stream, nPubs)
		for _, st := range s.all {
			s.dense[st.pub.idx] = st
		}
		return
	}
	s.sparse = make(map[uint32]*stream, len(s.all))
	for _, st := range s.all {
		s.sparse[st.pub.idx] = st
	}
}

func (s *subscriber) stream(pub uint32) *stream {
	if s.dense != nil {
		if int(pub) < len(s.dense) {
			return s.dense[pub]
		}
		return nil
	}
	return s.sparse[pub]
}

// onPublish accounts one delivery; called by the reader. It reports false
// for a QoS 2 PUBLISH whose packet id is still held, a resend of a message
// already received and not to be delivered again [MQTT-4.3.3-2].
func (s *subscriber) onPublish(c *conn, p *wire.Publish) bool {
	r := c.run
	if p.QoS == 2 {
		if s.qos2 == nil {
			s.qos2 = make([]uint64, 65536/64)
		}
		w, bit := p.PacketID/64, uint64(1)<<(p.PacketID%64)
		if s.qos2[w]&bit != 0 {
			return false
		}
		s.qos2[w] |= bit
	}
	now := int64(time.Since(r.epoch))
	h, ok := parseHeader(p.Payload)
	switch {
	case !ok || h.Tag != r.tag:
		s.foreign++
		if s.foreign == 1 {
			r.errorf("client %s: message on %q is not from this run (another load test on the same topics? use a distinct --topic-prefix)", s.id, p.Topic)
		}
	default:
		st := s.stream(h.Pub)
		if st == nil {
			s.unexpected++
			if s.unexpected == 1 {
				r.errorf("client %s: got publisher %d's message on %q, which it did not subscribe to", s.id, h.Pub, p.Topic)
			}
			break
		}
		before := st.t.Distinct
		if !st.t.Add(h.Seq) {
			s.unexpected++
			r.errorf("client %s: implausible sequence number %d from publisher %d", s.id, h.Seq, h.Pub)
			break
		}
		if st.t.Distinct != before {
			s.distinct.Add(1)
			if n := st.t.Next(); n != st.next.Load() {
				st.next.Store(n)
				if w := st.pub.waitFor.Load(); w != 0 && n >= w {
					select {
					case st.pub.wake <- struct{}{}:
					default:
					}
				}
			}
		}
		from := max(h.TS, s.floor)
		if s.fromFloor {
			from = s.floor
		}
		s.lat.add(time.Duration(now - from))
	}
	s.recv.Add(1)
	s.last.Store(now)
	return true
}

// release forgets a QoS 2 packet id once the broker sent PUBREL.
func (s *subscriber) release(id uint16) {
	if s.qos2 != nil {
		s.qos2[id/64] &^= uint64(1) << (id % 64)
	}
}
