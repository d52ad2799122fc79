package shard

import "sync"

// mailbox is a shard's inbox: a mutex-guarded slice plus a capacity-1 signal
// channel, drained in batches by the one goroutine that owns the shard.
//
// Two lanes keep shards from ever waiting on each other: events from
// connection readers go to a bounded lane whose pushers wait for room (that
// is the backpressure a fast publisher feels), while deliveries from other
// shards go to an unbounded lane that never blocks. The shard lane stays
// bounded in practice because readers are throttled before they can make
// more deliveries.
type mailbox struct {
	mu      sync.Mutex
	readers []event
	shards  []event
	limit   int           // capacity of the reader lane
	signal  chan struct{} // capacity 1: "there is work"
	space   chan struct{} // closed when the reader lane drains; nil while nobody waits
	quit    <-chan struct{}
	spareR  []event
	spareS  []event
}

func newMailbox(limit int, quit <-chan struct{}) *mailbox {
	return &mailbox{limit: limit, signal: make(chan struct{}, 1), quit: quit}
}

func (m *mailbox) wake() {
	select {
	case m.signal <- struct{}{}:
	default:
	}
}

// pushShard queues an event from another shard (or from a writer) and never blocks.
func (m *mailbox) pushShard(ev event) {
	m.mu.Lock()
	m.shards = append(m.shards, ev)
	m.mu.Unlock()
	m.wake()
}

// pushShardBatch queues many events in one lock.
func (m *mailbox) pushShardBatch(evs []event) {
	m.mu.Lock()
	m.shards = append(m.shards, evs...)
	m.mu.Unlock()
	m.wake()
}

// pushReader queues an event from a connection reader, waiting while the
// reader lane is full. It reports false if the shard is shutting down.
func (m *mailbox) pushReader(ev event) bool {
	m.mu.Lock()
	for len(m.readers) >= m.limit {
		if m.space == nil {
			m.space = make(chan struct{})
		}
		space := m.space
		m.mu.Unlock()
		select {
		case <-space:
		case <-m.quit:
			return false
		}
		m.mu.Lock()
	}
	m.readers = append(m.readers, ev)
	m.mu.Unlock()
	m.wake()
	return true
}

// pop takes everything queued: shard-lane events first, so deliveries that
// are already routed drain before new publishes create more.
func (m *mailbox) pop() (fromShards, fromReaders []event) {
	m.mu.Lock()
	fromShards, fromReaders = m.shards, m.readers
	m.shards, m.readers = m.spareS[:0], m.spareR[:0]
	m.spareS, m.spareR = nil, nil
	if m.space != nil {
		close(m.space)
		m.space = nil
	}
	m.mu.Unlock()
	return fromShards, fromReaders
}

// recycle hands drained slices back for reuse, clearing them so the events'
// pointers do not keep messages alive.
func (m *mailbox) recycle(fromShards, fromReaders []event) {
	clear(fromShards)
	clear(fromReaders)
	m.mu.Lock()
	if cap(fromShards) <= 4096 {
		m.spareS = fromShards[:0]
	}
	if cap(fromReaders) <= 4096 {
		m.spareR = fromReaders[:0]
	}
	m.mu.Unlock()
}

// depth is the number of queued events, for metrics.
func (m *mailbox) depth() int {
	m.mu.Lock()
	n := len(m.readers) + len(m.shards)
	m.mu.Unlock()
	return n
}
