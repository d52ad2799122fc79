package topictree

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
)

// Match is one (filter, shard) pair whose filter matches a topic.
type Match struct {
	Filter string
	Shard  int
}

// Tree maps topic filters to the shards that subscribe to them, with a count
// per shard. Add and Remove may be called from any goroutine and serialize
// on one mutex; Match and Filters take no lock and may run at any time, on
// any number of goroutines, alongside them. See the package documentation.
type Tree struct {
	mu      sync.Mutex   // serializes Add and Remove
	root    node         // the level before the first; never pruned
	tomb    *item[node]  // marks deleted slots in every table of this tree
	filters atomic.Int64 // filters with a positive count
}

// node is one level of the trie. Every field is an atomic pointer that the
// writer replaces and readers load.
type node struct {
	kids  atomic.Pointer[table[node]] // literal next levels; nil when none
	plus  atomic.Pointer[item[node]]  // the "+" next level
	subs  atomic.Pointer[subs]        // the filter that ends at this level
	multi atomic.Pointer[subs]        // the filter "<this level>/#" ("#" at the root)
}

func (n *node) empty() bool {
	return n.kids.Load() == nil && n.plus.Load() == nil && n.subs.Load() == nil && n.multi.Load() == nil
}

// subs is the set of shards subscribed to one filter. The filter and the
// shard of each entry are immutable once published; a change of membership
// publishes a new subs. The counts are written and read only by the writer
// under Tree.mu (readers never read them), so counting one more or one less
// subscription of a shard that is already present publishes nothing.
type subs struct {
	filter string
	list   []shardCount
	one    [1]shardCount // backing array of list for the common single-shard case
}

type shardCount struct {
	shard int32
	count int32
}

func newSubs(filter string, list []shardCount) *subs {
	s := &subs{filter: filter}
	if len(list) == 1 {
		s.one[0] = list[0]
		s.list = s.one[:]
	} else {
		s.list = list
	}
	return s
}

// appendTo appends one Match per shard. Readers touch only filter and the
// shard field of each entry.
func (s *subs) appendTo(dst []Match) []Match {
	for i := range s.list {
		dst = append(dst, Match{Filter: s.filter, Shard: int(s.list[i].shard)})
	}
	return dst
}

// New returns an empty Tree.
func New() *Tree {
	return &Tree{tomb: newTomb[node]()}
}

// Filters reports how many distinct filters have a positive count on some
// shard. Safe without a lock.
func (t *Tree) Filters() int { return int(t.filters.Load()) }

// Match appends one Match per (filter, shard) with a positive count whose
// filter matches topic, and returns dst. It takes no lock and allocates only
// when dst runs out of capacity. Matches come in no particular order; each
// (filter, shard) pair appears at most once.
//
// A filter that starts with a wildcard never matches a topic that starts
// with '$' [MQTT-4.7.2-1].
func (t *Tree) Match(topic []byte, dst []Match) []Match {
	wild := len(topic) == 0 || topic[0] != '$'
	return t.matchLevels(&t.root, topic, dst, wild)
}

// matchLevels matches the levels in rest, of which there is at least one,
// below n. wild is false only at the root of a topic that starts with '$'.
func (t *Tree) matchLevels(n *node, rest []byte, dst []Match, wild bool) []Match {
	for {
		if wild {
			// "<n>/#" matches every topic that continues below n.
			if s := n.multi.Load(); s != nil {
				dst = s.appendTo(dst)
			}
		}
		level, tail, more := rest, rest[:0], false
		if i := bytes.IndexByte(rest, '/'); i >= 0 {
			level, tail, more = rest[:i], rest[i+1:], true
		}
		if wild {
			if p := n.plus.Load(); p != nil {
				if more {
					dst = t.matchLevels(&p.node, tail, dst, true)
				} else {
					dst = p.node.appendEnd(dst)
				}
			}
		}
		kids := n.kids.Load()
		if kids == nil {
			return dst
		}
		c := kids.find(level)
		if c == nil {
			return dst
		}
		if !more {
			return c.node.appendEnd(dst)
		}
		n, rest, wild = &c.node, tail, true
	}
}

// appendEnd appends the filters matched by a topic whose last level is n:
// the filter ending at n and "<n>/#", since '#' also matches its parent
// level [MQTT-4.7.1-2].
func (n *node) appendEnd(dst []Match) []Match {
	if s := n.subs.Load(); s != nil {
		dst = s.appendTo(dst)
	}
	if s := n.multi.Load(); s != nil {
		dst = s.appendTo(dst)
	}
	return dst
}

// Add counts one more subscription on filter held by shard. The filter is
// assumed valid (wire.ValidTopicFilter). shard must be in [0, MaxInt32].
func (t *Tree) Add(filter string, shard int) {
	if shard < 0 || shard > math.MaxInt32 {
		panic(fmt.Sprintf("topictree: Add(%q): shard %d out of range", filter, shard))
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	// stable is filter copied once, lazily: long level names and the
	// filter published in subs are substrings of it, so the tree never pins
	// memory that the caller's string may share.
	var stable string
	n := &t.root
	for start := 0; ; {
		end := len(filter)
		if i := strings.IndexByte(filter[start:], '/'); i >= 0 {
			end = start + i
		}
		level := filter[start:end]
		if level == "#" && end == len(filter) {
			t.inc(&n.multi, filter, &stable, int32(shard))
			return
		}
		var c *item[node]
		if level == "+" {
			if c = n.plus.Load(); c == nil {
				c = newItem[node]("+")
				n.plus.Store(c)
			}
		} else {
			kids := n.kids.Load()
			if kids != nil {
				c = kids.findString(level)
			}
			if c == nil {
				name := level
				if len(name) > shortName {
					if stable == "" {
						stable = strings.Clone(filter)
					}
					name = stable[start:end]
				}
				if kids == nil {
					kids, c = firstChild[node](name)
					n.kids.Store(kids)
				} else {
					c = newItem[node](name)
					if nk := kids.insert(c, t.tomb); nk != kids {
						n.kids.Store(nk)
					}
				}
			}
		}
		n = &c.node
		if end == len(filter) {
			t.inc(&n.subs, filter, &stable, int32(shard))
			return
		}
		start = end + 1
	}
}

// inc counts one more subscription of shard in *p.
func (t *Tree) inc(p *atomic.Pointer[subs], filter string, stable *string, shard int32) {
	old := p.Load()
	if old == nil {
		if *stable == "" {
			*stable = strings.Clone(filter)
		}
		s := &subs{filter: *stable, one: [1]shardCount{{shard, 1}}}
		s.list = s.one[:]
		p.Store(s)
		t.filters.Add(1)
		return
	}
	for i := range old.list {
		if old.list[i].shard == shard {
			if old.list[i].count == math.MaxInt32 {
				panic(fmt.Sprintf("topictree: Add(%q): more than %d subscriptions on shard %d", filter, math.MaxInt32, shard))
			}
			old.list[i].count++
			return
		}
	}
	list := make([]shardCount, len(old.list), len(old.list)+1)
	copy(list, old.list)
	p.Store(newSubs(old.filter, append(list, shardCount{shard, 1})))
}

// Remove undoes one Add of filter by shard, and prunes the levels that no
// longer lead to a subscription. Removing what was never added is a no-op.
func (t *Tree) Remove(filter string, shard int) {
	if shard < 0 || shard > math.MaxInt32 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.remove(&t.root, filter, 0, int32(shard))
}

// remove removes one subscription of shard on filter[start:] below n, and
// reports whether a filter lost its last subscription, which is the only
// case in which levels may need pruning.
func (t *Tree) remove(n *node, filter string, start int, shard int32) bool {
	end := len(filter)
	if i := strings.IndexByte(filter[start:], '/'); i >= 0 {
		end = start + i
	}
	level := filter[start:end]
	if level == "#" && end == len(filter) {
		return t.dec(&n.multi, shard)
	}
	var c *item[node]
	if level == "+" {
		c = n.plus.Load()
	} else if kids := n.kids.Load(); kids != nil {
		c = kids.findString(level)
	}
	if c == nil {
		return false
	}
	var gone bool
	if end == len(filter) {
		gone = t.dec(&c.node.subs, shard)
	} else {
		gone = t.remove(&c.node, filter, end+1, shard)
	}
	if gone && c.node.empty() {
		// A reader that already holds c keeps walking a node whose
		// pointers are all nil: it finds nothing there.
		if level == "+" {
			n.plus.Store(nil)
		} else {
			kids := n.kids.Load()
			if nk := kids.remove(c, t.tomb); nk != kids {
				n.kids.Store(nk)
			}
		}
	}
	return gone
}

// dec counts one subscription of shard less in *p and reports whether the
// filter has no subscription left.
func (t *Tree) dec(p *atomic.Pointer[subs], shard int32) bool {
	old := p.Load()
	if old == nil {
		return false
	}
	for i := range old.list {
		if old.list[i].shard != shard {
			continue
		}
		if old.list[i].count > 1 {
			old.list[i].count--
			return false
		}
		if len(old.list) == 1 {
			p.Store(nil)
			t.filters.Add(-1)
			return true
		}
		list := make([]shardCount, 0, len(old.list)-1)
		list = append(list, old.list[:i]...)
		list = append(list, old.list[i+1:]...)
		p.Store(newSubs(old.filter, list))
		return false
	}
	return false
}
