package shard

import (
	"container/list"
	"sync"
)

// pendingHandshakes tracks connections that have not completed CONNECT.
// Past the cap the oldest one is closed to make room: a flood of connections
// that never finish their handshake (slowloris) cannot lock legitimate
// clients out, and each costs at most the connect timeout anyway.
type pendingHandshakes struct {
	mu   sync.Mutex
	max  int
	list list.List // of *client, oldest first
}

// add registers c and returns the client to evict, if the cap was reached.
func (p *pendingHandshakes) add(c *client) (evict *client) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.list.Len() >= p.max {
		oldest := p.list.Front()
		evict = p.list.Remove(oldest).(*client)
		evict.pending = nil
	}
	c.pending = p.list.PushBack(c)
	return evict
}

// done removes c once its handshake ended, either way.
func (p *pendingHandshakes) done(c *client) {
	p.mu.Lock()
	if c.pending != nil {
		p.list.Remove(c.pending)
		c.pending = nil
	}
	p.mu.Unlock()
}
