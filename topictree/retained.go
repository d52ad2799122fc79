package topictree

import (
	"strings"
	"sync"
	"sync/atomic"
)

// Retained holds the last retained message per topic. Set and Delete may be
// called from any goroutine and serialize on one mutex; Get, Match, Range and
// Len take no lock and may run alongside them, seeing for each topic either
// the value before or after a concurrent change.
type Retained[V any] struct {
	mu   sync.Mutex // serializes Set and Delete
	root rnode[V]
	tomb *item[rnode[V]]
	n    atomic.Int64
}

// rnode is one level of the retained trie. Levels are literal topic levels;
// there are no wildcards in topic names.
type rnode[V any] struct {
	kids atomic.Pointer[table[rnode[V]]]
	val  atomic.Pointer[rval[V]] // the message retained on the topic ending here
}

// rval is immutable once published; Set replaces it.
type rval[V any] struct {
	topic string
	v     V
}

// NewRetained returns an empty Retained.
func NewRetained[V any]() *Retained[V] {
	return &Retained[V]{tomb: newTomb[rnode[V]]()}
}

// Len reports how many topics hold a retained value. Safe without a lock.
func (r *Retained[V]) Len() int { return int(r.n.Load()) }

// Set stores v as the retained value of topic, replacing any previous one.
func (r *Retained[V]) Set(topic string, v V) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var stable string // topic copied once, lazily, for node names and rval.topic
	n := &r.root
	for start := 0; ; {
		end := len(topic)
		if i := strings.IndexByte(topic[start:], '/'); i >= 0 {
			end = start + i
		}
		kids := n.kids.Load()
		var c *item[rnode[V]]
		if kids != nil {
			c = kids.findString(topic[start:end])
		}
		if c == nil {
			name := topic[start:end]
			if len(name) > shortName {
				if stable == "" {
					stable = strings.Clone(topic)
				}
				name = stable[start:end]
			}
			if kids == nil {
				kids, c = firstChild[rnode[V]](name)
				n.kids.Store(kids)
			} else {
				c = newItem[rnode[V]](name)
				if nk := kids.insert(c, r.tomb); nk != kids {
					n.kids.Store(nk)
				}
			}
		}
		n = &c.node
		if end == len(topic) {
			break
		}
		start = end + 1
	}
	old := n.val.Load()
	switch {
	case old != nil:
		stable = old.topic
	case stable == "":
		stable = strings.Clone(topic)
	}
	n.val.Store(&rval[V]{topic: stable, v: v})
	if old == nil {
		r.n.Add(1)
	}
}

// Delete removes the retained value of topic and prunes the levels that no
// longer lead to one. It is a no-op if topic holds no value.
func (r *Retained[V]) Delete(topic string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.delete(&r.root, topic, 0)
}

// delete removes the value of topic[start:] below n and reports whether it
// existed.
func (r *Retained[V]) delete(n *rnode[V], topic string, start int) bool {
	end := len(topic)
	if i := strings.IndexByte(topic[start:], '/'); i >= 0 {
		end = start + i
	}
	kids := n.kids.Load()
	if kids == nil {
		return false
	}
	c := kids.findString(topic[start:end])
	if c == nil {
		return false
	}
	if end == len(topic) {
		if c.node.val.Load() == nil {
			return false
		}
		c.node.val.Store(nil)
		r.n.Add(-1)
	} else if !r.delete(&c.node, topic, end+1) {
		return false
	}
	if c.node.val.Load() == nil && c.node.kids.Load() == nil {
		if nk := kids.remove(c, r.tomb); nk != kids {
			n.kids.Store(nk)
		}
	}
	return true
}

// Get returns the retained value of topic. Safe without a lock.
func (r *Retained[V]) Get(topic string) (V, bool) {
	n := &r.root
	for start := 0; ; {
		end := len(topic)
		if i := strings.IndexByte(topic[start:], '/'); i >= 0 {
			end = start + i
		}
		kids := n.kids.Load()
		if kids == nil {
			break
		}
		c := kids.findString(topic[start:end])
		if c == nil {
			break
		}
		n = &c.node
		if end == len(topic) {
			if v := n.val.Load(); v != nil {
				return v.v, true
			}
			break
		}
		start = end + 1
	}
	var zero V
	return zero, false
}

// Match calls fn for every retained topic that filter matches, in no
// particular order, until fn returns false. It walks only the parts of the
// trie the filter can reach: a literal level follows one child, '+' every
// child, '#' the whole subtree. Safe without a lock; fn may itself call Set
// or Delete, and the rest of the walk sees either the old or the new state.
func (r *Retained[V]) Match(filter string, fn func(topic string, v V) bool) {
	r.match(&r.root, filter, 0, fn)
}

// match matches filter[start:] below n. At the root (start == 0) wildcards
// skip topics that start with '$' [MQTT-4.7.2-1].
func (r *Retained[V]) match(n *rnode[V], filter string, start int, fn func(string, V) bool) bool {
	end := len(filter)
	if i := strings.IndexByte(filter[start:], '/'); i >= 0 {
		end = start + i
	}
	level := filter[start:end]
	last := end == len(filter)
	if level == "#" && last {
		// '#' matches the parent level too [MQTT-4.7.1-2]; the root is
		// no topic, so it holds no value.
		if !emit(n, fn) {
			return false
		}
		return r.walk(n, start == 0, fn)
	}
	kids := n.kids.Load()
	if kids == nil {
		return true
	}
	if level != "+" {
		c := kids.findString(level)
		if c == nil {
			return true
		}
		if last {
			return emit(&c.node, fn)
		}
		return r.match(&c.node, filter, end+1, fn)
	}
	for i := range kids.slots {
		c := kids.at(i, r.tomb)
		if c == nil || (start == 0 && c.dollar()) {
			continue
		}
		if last {
			if !emit(&c.node, fn) {
				return false
			}
		} else if !r.match(&c.node, filter, end+1, fn) {
			return false
		}
	}
	return true
}

func emit[V any](n *rnode[V], fn func(string, V) bool) bool {
	if v := n.val.Load(); v != nil {
		return fn(v.topic, v.v)
	}
	return true
}

// walk calls fn for every value strictly below n; noDollar skips children
// whose name starts with '$'.
func (r *Retained[V]) walk(n *rnode[V], noDollar bool, fn func(string, V) bool) bool {
	kids := n.kids.Load()
	if kids == nil {
		return true
	}
	for i := range kids.slots {
		c := kids.at(i, r.tomb)
		if c == nil || (noDollar && c.dollar()) {
			continue
		}
		if !emit(&c.node, fn) || !r.walk(&c.node, false, fn) {
			return false
		}
	}
	return true
}

// Range calls fn for every retained topic, in no particular order, until fn
// returns false. Safe without a lock.
func (r *Retained[V]) Range(fn func(topic string, v V) bool) {
	r.walk(&r.root, false, fn)
}
