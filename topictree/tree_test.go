package topictree

import (
	"fmt"
	"testing"
	"unsafe"
)

func matchSet(tr *Tree, topic string) map[Match]int {
	got := map[Match]int{}
	for _, m := range tr.Match([]byte(topic), nil) {
		got[m]++
	}
	return got
}

func TestAddRemoveCounting(t *testing.T) {
	tr := New()
	tr.Add("a/b", 1)
	tr.Add("a/b", 1)
	tr.Add("a/b", 2)
	tr.Add("a/#", 1)
	if n := tr.Filters(); n != 2 {
		t.Fatalf("Filters() = %d, want 2", n)
	}
	if got := matchSet(tr, "a/b"); len(got) != 3 || got[Match{"a/b", 1}] != 1 {
		t.Fatalf("Match(a/b) = %v, want a/b on shards 1 and 2 once each, and a/# on 1", got)
	}

	// Never-added removals change nothing: another shard, a prefix of a
	// stored filter, a longer filter, a wildcard that is not stored.
	for _, f := range []struct {
		filter string
		shard  int
	}{{"a/b", 7}, {"a", 1}, {"a/b/c", 1}, {"a/+", 1}, {"#", 1}, {"x/y", 1}, {"a/b", -1}} {
		tr.Remove(f.filter, f.shard)
	}
	if n := tr.Filters(); n != 2 {
		t.Fatalf("after no-op removals: Filters() = %d, want 2", n)
	}
	if got := matchSet(tr, "a/b"); len(got) != 3 {
		t.Fatalf("after no-op removals: Match(a/b) = %v", got)
	}

	tr.Remove("a/b", 1) // shard 1 still holds one
	if got := matchSet(tr, "a/b"); got[Match{"a/b", 1}] != 1 {
		t.Fatalf("after one of two removals shard 1 must still match: %v", got)
	}
	tr.Remove("a/b", 1)
	if got := matchSet(tr, "a/b"); got[Match{"a/b", 1}] != 0 || got[Match{"a/b", 2}] != 1 {
		t.Fatalf("after both removals shard 1 must be gone, shard 2 kept: %v", got)
	}
	tr.Remove("a/b", 1) // one too many: no-op, shard 2 untouched
	if got := matchSet(tr, "a/b"); got[Match{"a/b", 2}] != 1 {
		t.Fatalf("extra removal touched shard 2: %v", got)
	}
	tr.Remove("a/b", 2)
	if n := tr.Filters(); n != 1 {
		t.Fatalf("Filters() = %d, want 1", n)
	}
	tr.Remove("a/#", 1)
	if n := tr.Filters(); n != 0 {
		t.Fatalf("Filters() = %d, want 0", n)
	}
	if !tr.root.empty() {
		t.Fatal("root still holds nodes after every filter was removed")
	}
}

// TestPrune checks that removal frees exactly the levels that lead nowhere,
// keeping the ones that still lead to a filter.
func TestPrune(t *testing.T) {
	tr := New()
	tr.Add("a/b/c", 0)
	tr.Add("a/+/c/#", 0)
	tr.Add("a", 0)
	tr.Remove("a/b/c", 0)
	a := tr.root.kids.Load().findString("a")
	if a == nil {
		t.Fatal("level a pruned while a and a/+/c/# remain")
	}
	if a.node.kids.Load() != nil {
		t.Fatal("level a/b kept after its only filter was removed")
	}
	plus := a.node.plus.Load()
	if plus == nil || plus.node.kids.Load().findString("c") == nil {
		t.Fatal("a/+/c pruned while a/+/c/# remains")
	}
	tr.Remove("a/+/c/#", 0)
	if a.node.plus.Load() != nil {
		t.Fatal("level a/+ kept after a/+/c/# was removed")
	}
	if tr.root.kids.Load().findString("a") == nil {
		t.Fatal("level a pruned while filter a remains")
	}
	tr.Remove("a", 0)
	if !tr.root.empty() {
		t.Fatal("root not empty")
	}
}

// TestBigNode fills one level with many children, which grows its table
// through every size, then removes them, which shrinks it back, checking
// lookups at each step.
func TestBigNode(t *testing.T) {
	const n = 20000
	tr := New()
	tr.Add("device/+/cmd", 9)
	for i := range n {
		tr.Add(fmt.Sprintf("device/%d/cmd", i), i%4)
	}
	dev := tr.root.kids.Load().findString("device")
	if size := len(dev.node.kids.Load().slots); size < n || size > 4*n {
		t.Fatalf("table of %d children has %d slots", n, size)
	}
	for i := 0; i < n; i += 97 {
		got := matchSet(tr, fmt.Sprintf("device/%d/cmd", i))
		if len(got) != 2 || got[Match{fmt.Sprintf("device/%d/cmd", i), i % 4}] != 1 {
			t.Fatalf("device/%d/cmd: %v", i, got)
		}
	}
	if got := matchSet(tr, fmt.Sprintf("device/%d/cmd", n)); len(got) != 1 {
		t.Fatalf("absent child matched more than device/+/cmd: %v", got)
	}
	// Remove all but every 1000th child.
	for i := range n {
		if i%1000 != 0 {
			tr.Remove(fmt.Sprintf("device/%d/cmd", i), i%4)
		}
	}
	if tr.Filters() != n/1000+1 {
		t.Fatalf("Filters() = %d, want %d", tr.Filters(), n/1000+1)
	}
	if size := len(dev.node.kids.Load().slots); size > 64 {
		t.Fatalf("table did not shrink: %d slots for %d children", size, n/1000)
	}
	for i := range n {
		got := matchSet(tr, fmt.Sprintf("device/%d/cmd", i))
		if want := 1 + b2i(i%1000 == 0); len(got) != want {
			t.Fatalf("device/%d/cmd after shrinking: %v, want %d matches", i, got, want)
		}
	}
	for i := 0; i < n; i += 1000 {
		tr.Remove(fmt.Sprintf("device/%d/cmd", i), i%4)
	}
	tr.Remove("device/+/cmd", 9)
	if tr.Filters() != 0 || !tr.root.empty() {
		t.Fatalf("Filters() = %d, root empty = %v", tr.Filters(), tr.root.empty())
	}
}

// TestTombstoneChurn adds and removes children of one level over and over
// so slots cycle through tombstones, and checks that the table neither
// grows without bound nor loses a child that stays.
func TestTombstoneChurn(t *testing.T) {
	tr := New()
	for i := range 40 {
		tr.Add(fmt.Sprintf("x/keep%d", i), 0)
	}
	for round := range 200 {
		for i := range 30 {
			tr.Add(fmt.Sprintf("x/c%d-%d", round, i), 1)
		}
		for i := range 30 {
			tr.Remove(fmt.Sprintf("x/c%d-%d", round, i), 1)
		}
		for i := range 40 {
			if got := matchSet(tr, fmt.Sprintf("x/keep%d", i)); len(got) != 1 {
				t.Fatalf("round %d: x/keep%d matched %v", round, i, got)
			}
		}
	}
	x := tr.root.kids.Load().findString("x")
	if size := len(x.node.kids.Load().slots); size > 256 {
		t.Fatalf("table grew to %d slots for 40 children", size)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestMatchAllocs(t *testing.T) {
	tr := New()
	for i := range 5000 {
		tr.Add(fmt.Sprintf("s/%d/t/%d", i%50, i), i%8)
	}
	for _, f := range []string{"#", "s/#", "s/+/t/+", "s/7/+/#", "+/7/t/7"} {
		tr.Add(f, 1)
	}
	topic := []byte("s/7/t/7")
	dst := make([]Match, 0, 64)
	if n := len(tr.Match(topic, dst)); n != 6 {
		t.Fatalf("Match(%s) found %d, want 6", topic, n)
	}
	if a := testing.AllocsPerRun(1000, func() { dst = tr.Match(topic, dst[:0]) }); a != 0 {
		t.Fatalf("Match allocates %.1f times per call, want 0", a)
	}
	r := NewRetained[int]()
	for i := range 5000 {
		r.Set(fmt.Sprintf("s/%d/t/%d", i%50, i), i)
	}
	if a := testing.AllocsPerRun(1000, func() { r.Get("s/7/t/7") }); a != 0 {
		t.Fatalf("Retained.Get allocates %.1f times per call, want 0", a)
	}
	count := 0
	fn := func(string, int) bool { count++; return true }
	if a := testing.AllocsPerRun(100, func() { r.Match("s/+/t/7", fn) }); a != 0 {
		t.Fatalf("Retained.Match allocates %.1f times per call, want 0", a)
	}
}

func TestAddShardRange(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Add with a negative shard did not panic")
		}
	}()
	New().Add("a", -1)
}

// TestItemSize pins the layout the lookup cost rests on: a tree child, its
// name included, fills exactly one 64-byte cache line.
func TestItemSize(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("the layout is tuned for 64-bit platforms")
	}
	if size := unsafe.Sizeof(item[node]{}); size != 64 {
		t.Fatalf("item[node] is %d bytes, want 64", size)
	}
}
