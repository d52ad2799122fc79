package shard

import (
	"slices"

	"iotd/wire"
)

// Exactly once for QoS 2 across shard logs.
//
// An inbound QoS 2 message from a persistent session is written to its
// publisher's shard log whole (recInHoldMsg), under a sequence number that
// becomes its origin, and is routed only once that record is durable. Its
// PUBREC needs nothing more: from then on a restart routes the message again
// if it did not reach every log it had to. Each target log marks the
// deliveries of held messages it completed (recOrigin, the retained log
// likewise), and because a shard routes its held messages in sequence order
// and every log applies them in arrival order, one mark per publishing shard
// tells which held messages a log already has. When every log has committed
// the message, the publisher's shard logs recRouted and forgets it.
//
// A crash at any point therefore leaves either no trace of the message (no
// PUBREC went out; the client sends it again) or a held copy in the
// publisher's log, which recovery routes to the logs that lack it: never
// lost, never delivered twice.

// hold logs a QoS 2 message and queues it for routing once it is durable.
func (s *Shard) hold(sess *session, id uint16, msg *Message) {
	seq := s.p.holdMessage(sess.id, id, msg)
	msg.origin = origin{shard: s.index, seq: seq}
	s.unrouted[seq] = msg
	s.stats.held.Add(1)
	s.holdNew = append(s.holdNew, msg)
}

// heldCommitted is called after a successful commit: the messages held in
// it are routed in the next iteration, so their deliveries are logged and
// committed before anything is written to a subscriber.
func (s *Shard) heldCommitted() {
	if len(s.holdNew) == 0 {
		return
	}
	s.routeNext = append(s.routeNext, s.holdNew...)
	clear(s.holdNew)
	s.holdNew = s.holdNew[:0]
	s.mb.pushShard(event{kind: evRouteHeld})
}

// routeHeld routes the held messages that became durable, in sequence order.
// Each gets a ticket whose settlement records that every log has it.
func (s *Shard) routeHeld() {
	for _, msg := range s.routeNext {
		t := &ticket{owner: s, routed: msg.origin.seq}
		t.shares.Store(1) // this shard's own commit
		s.shares = append(s.shares, t)
		s.publish(msg, t)
	}
	clear(s.routeNext)
	s.routeNext = s.routeNext[:0]
}

// finishRoute forgets a held message that every log has committed.
func (s *Shard) finishRoute(seq uint64) {
	if _, ok := s.unrouted[seq]; !ok {
		return
	}
	delete(s.unrouted, seq)
	s.stats.held.Add(-1)
	s.p.routed(seq)
}

// deliverMatched delivers msg to the local sessions subscribed to filters.
// A held message this shard already completed before a restart is skipped,
// and the completion of a new one is marked after its records.
func (s *Shard) deliverMatched(msg *Message, filters []string) {
	o := msg.origin
	if o.seq == 0 {
		s.deliverLocal(msg, filters)
		return
	}
	if s.marks.has(o) {
		return
	}
	before := s.p.records
	s.deliverLocal(msg, filters)
	s.marks.note(o)
	if s.p.records != before {
		s.p.originMark(o)
	}
}

// restoreHeld installs the held messages recovered from the log and queues
// the unrouted ones for routing, oldest first, when the shard starts.
func (s *Shard) restoreHeld(st *durableState) {
	s.marks = st.marks
	seqs := make([]uint64, 0, len(st.unrouted))
	for seq, msg := range st.unrouted {
		msg.origin = origin{shard: s.index, seq: seq}
		s.unrouted[seq] = msg
		s.stats.held.Add(1)
		seqs = append(seqs, seq)
	}
	if len(seqs) == 0 {
		return
	}
	slices.Sort(seqs)
	for _, seq := range seqs {
		s.routeNext = append(s.routeNext, s.unrouted[seq])
	}
	s.mb.pushShard(event{kind: evRouteHeld})
}

// grantedQoS is the highest QoS granted to a subscription of subs that
// matches topic, and whether any does.
func grantedQoS(subs map[string]byte, topic []byte) (byte, bool) {
	best, found := byte(0), false
	for filter, qos := range subs {
		if wire.MatchTopic(filter, topic) && (!found || qos > best) {
			best, found = qos, true
		}
	}
	return best, found
}
