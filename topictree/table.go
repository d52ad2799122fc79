package topictree

import (
	"hash/maphash"
	"sync/atomic"
)

// seed keys the hash of topic levels. It is random per process, so clients
// choosing topic names cannot aim for one probe sequence.
var seed = maphash.MakeSeed()

// item is one child of a node: the level name and the child node itself,
// stored by value so a child costs one allocation. A name of up to 15 bytes
// is stored in the item, so checking a candidate touches no other memory (a
// tree item is then exactly one 64-byte cache line); a longer one is in long.
// The name never changes after the item is published; the node's fields are
// atomics of their own.
type item[N any] struct {
	node  N
	long  string // the name, when it does not fit in short
	n     uint8  // length of the name in short, or longName
	short [shortName]byte
}

const (
	shortName = 15   // longest name stored in the item
	longName  = 0xff // item.n of a name that is in item.long
)

func newItem[N any](name string) *item[N] {
	it := &item[N]{}
	it.setName(name)
	return it
}

func (it *item[N]) setName(name string) {
	if len(name) <= len(it.short) {
		it.n = uint8(len(name))
		copy(it.short[:], name)
	} else {
		it.n = longName
		it.long = name
	}
}

// is reports whether the item is named name.
func (it *item[N]) is(name []byte) bool {
	if len(name) <= len(it.short) {
		return int(it.n) == len(name) && string(it.short[:len(name)]) == string(name)
	}
	return it.long == string(name)
}

// isString is is for a string name.
func (it *item[N]) isString(name string) bool {
	if len(name) <= len(it.short) {
		return int(it.n) == len(name) && string(it.short[:len(name)]) == name
	}
	return it.long == name
}

func (it *item[N]) hash() uint64 {
	if it.n == longName {
		return maphash.String(seed, it.long)
	}
	return maphash.Bytes(seed, it.short[:it.n])
}

// dollar reports whether the name starts with '$'.
func (it *item[N]) dollar() bool {
	if it.n == longName {
		return it.long[0] == '$'
	}
	return it.n > 0 && it.short[0] == '$'
}

// newTomb returns the item that marks deleted slots of one tree's tables.
// Its name holds '/', which no level name does, so it never matches.
func newTomb[N any]() *item[N] { return newItem[N]("/") }

// slot is one cell of a table. hash caches the hash of p's name so that
// probing and growing never touch the items themselves. The writer stores
// hash before p; a reader loads p before hash.
type slot[N any] struct {
	hash atomic.Uint64
	p    atomic.Pointer[item[N]]
}

// table holds the children of one node: an open-addressing hash table with
// linear probing, published through an atomic.Pointer in the node.
//
// Readers take no lock. The slice header never changes once the table is
// published, and in a published table a slot only ever goes nil -> item,
// item -> tombstone and tombstone -> item, never back to nil, so a probe that
// stops at nil cannot skip an item that was present for its whole duration.
// Inserting and deleting touch one slot; growing or shrinking builds a new
// table (copying slot pairs, not items) and the caller publishes it. A
// reader holding the old table still sees every item that was present when
// it loaded it.
//
// live and used are read and written only by the writer, under the owner's
// mutex.
type table[N any] struct {
	slots  []slot[N] // length is a power of two
	live   int32     // items
	used   int32     // items plus tombstones
	inline [2]slot[N]
}

// scanSlots is the largest table that is searched by comparing every name
// instead of by hash. Such tables fill completely before they grow.
const scanSlots = 4

func newTable[N any](size int) *table[N] {
	t := &table[N]{}
	if size <= len(t.inline) {
		t.slots = t.inline[:]
	} else {
		t.slots = make([]slot[N], size)
	}
	return t
}

// firstChild returns a new table holding a new child named name, and the
// child. Both come from one allocation: a level with a single child (the
// commonest kind, e.g. "temp" below each device) then costs one allocation,
// and the table and the child sit on adjacent cache lines.
func firstChild[N any](name string) (*table[N], *item[N]) {
	x := new(struct {
		t  table[N]
		it item[N]
	})
	x.it.setName(name)
	x.t.slots = x.t.inline[:]
	x.t.place(x.it.hash(), &x.it)
	return &x.t, &x.it
}

// limit is how many items plus tombstones a table of size slots may hold.
func limit(size int) int {
	if size <= scanSlots {
		return size
	}
	return size - size/4
}

// sizeFor is the smallest table size that holds n items.
func sizeFor(n int) int {
	size := 2
	for limit(size) < n {
		size *= 2
	}
	return size
}

// find returns the item named name, or nil. Safe without a lock.
func (t *table[N]) find(name []byte) *item[N] {
	s := t.slots
	if len(s) <= scanSlots {
		for i := range s {
			if it := s[i].p.Load(); it != nil && it.is(name) {
				return it
			}
		}
		return nil
	}
	h := maphash.Bytes(seed, name)
	mask := len(s) - 1
	i := int(h) & mask
	for range s {
		sl := &s[i]
		it := sl.p.Load()
		if it == nil {
			return nil
		}
		if sl.hash.Load() == h && it.is(name) {
			return it
		}
		i = (i + 1) & mask
	}
	return nil
}

// findString is find for a string name. Safe without a lock.
func (t *table[N]) findString(name string) *item[N] {
	s := t.slots
	if len(s) <= scanSlots {
		for i := range s {
			if it := s[i].p.Load(); it != nil && it.isString(name) {
				return it
			}
		}
		return nil
	}
	h := maphash.String(seed, name)
	mask := len(s) - 1
	i := int(h) & mask
	for range s {
		sl := &s[i]
		it := sl.p.Load()
		if it == nil {
			return nil
		}
		if sl.hash.Load() == h && it.isString(name) {
			return it
		}
		i = (i + 1) & mask
	}
	return nil
}

// insert adds it, whose name must not be in t, and returns the table that
// now holds it: t itself, or a bigger (or tombstone-free) copy that the
// caller must publish. Writer only.
func (t *table[N]) insert(it *item[N], tomb *item[N]) *table[N] {
	h := it.hash()
	mask := len(t.slots) - 1
	i := t.start(h)
	for range t.slots {
		sl := &t.slots[i]
		p := sl.p.Load()
		if p == tomb || (p == nil && int(t.used) < limit(len(t.slots))) {
			if p == nil {
				t.used++
			}
			// Reusing a tombstone keeps used unchanged.
			t.live++
			sl.hash.Store(h)
			sl.p.Store(it)
			return t
		}
		if p == nil {
			break
		}
		i = (i + 1) & mask
	}
	// No room: grow, or only drop the tombstones if they are most of it.
	size := len(t.slots)
	if int(t.live)+1 > limit(size)/2 {
		size *= 2
	}
	nt := t.rebuild(size, tomb)
	nt.place(h, it)
	return nt
}

// start is where a probe for h begins: slot 0 for scanned tables, which
// place items in the first free slot.
func (t *table[N]) start(h uint64) int {
	if len(t.slots) <= scanSlots {
		return 0
	}
	return int(h) & (len(t.slots) - 1)
}

// place puts it into an unpublished table that has room and no tombstones.
func (t *table[N]) place(h uint64, it *item[N]) {
	i := t.start(h)
	mask := len(t.slots) - 1
	for t.slots[i].p.Load() != nil {
		i = (i + 1) & mask
	}
	t.slots[i].hash.Store(h)
	t.slots[i].p.Store(it)
	t.live++
	t.used++
}

// rebuild copies the live items of t into a new table of the given size.
func (t *table[N]) rebuild(size int, tomb *item[N]) *table[N] {
	nt := newTable[N](size)
	for i := range t.slots {
		sl := &t.slots[i]
		if p := sl.p.Load(); p != nil && p != tomb {
			nt.place(sl.hash.Load(), p)
		}
	}
	return nt
}

// remove replaces it with a tombstone and returns the table that now
// represents the children: t, a smaller copy the caller must publish, or nil
// when no child is left. Writer only.
func (t *table[N]) remove(it *item[N], tomb *item[N]) *table[N] {
	mask := len(t.slots) - 1
	i := t.start(it.hash())
	for range t.slots {
		sl := &t.slots[i]
		p := sl.p.Load()
		if p == nil {
			break
		}
		if p != it {
			i = (i + 1) & mask
			continue
		}
		sl.p.Store(tomb)
		t.live--
		switch {
		case t.live == 0:
			return nil
		case len(t.slots) > scanSlots && int(t.live) < limit(len(t.slots))/4:
			return t.rebuild(sizeFor(2*int(t.live)), tomb)
		}
		return t
	}
	return t
}

// at returns the item in slot i, or nil when the slot is empty or a
// tombstone. Safe without a lock.
func (t *table[N]) at(i int, tomb *item[N]) *item[N] {
	if p := t.slots[i].p.Load(); p != tomb {
		return p
	}
	return nil
}
