package shard

import (
	"sync/atomic"

	"iotd/wire"
)

// ticket holds back the acknowledgement of one inbound QoS 1/2 PUBLISH until
// every log that the message touched has committed it: the publisher's own
// shard, each target shard that delivered it, and the retained log. Each of
// them holds one share and releases it after its commit; the last release
// hands the ticket back to the publisher's shard, which sends the
// acknowledgements of each client in arrival order.
type ticket struct {
	shares  atomic.Int32
	owner   *Shard
	c       *client
	ack     wire.Type // PUBACK or PUBREC
	id      uint16
	settled bool // owned by the owner shard: every share is released

	// routed is set instead of an acknowledgement for a held QoS 2
	// message (heldroute.go): its sequence number, logged as routed once
	// every log has the message.
	routed uint64

	// abandoned: the connection is gone, nobody waits for the
	// acknowledgement; a failed log stops holding the ticket (persistfault.go).
	abandoned atomic.Bool
}

// release gives back one share from outside any shard (the retained log).
// The last one settles the ticket on its owner's goroutine.
func (t *ticket) release() { t.releaseOn(nil) }

// releaseOn gives back one share from shard s; on the owner's own goroutine
// the ticket settles at once instead of through the mailbox.
func (t *ticket) releaseOn(s *Shard) {
	if t.shares.Add(-1) != 0 {
		return
	}
	if s == t.owner {
		s.settle(t)
		return
	}
	t.owner.mb.pushShard(event{kind: evSettled, t: t})
}
