package topictree

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The benchmark trees hold 1M distinct filters for topics shaped like
// bld/<a>/dev/<b>/temp, with a and b below 1000, spread over 8 shards.
// Topics are drawn at random from the same space, so the walk touches cold
// memory the way a broker with 1M subscriptions would.
const (
	benchSubs = 1_000_000
	benchSide = 1000
)

// treeShape makes the i-th filter of a benchmark tree.
type treeShape struct {
	name   string
	filter func(i int) string
}

func exactFilter(i int) string {
	return fmt.Sprintf("bld/%d/dev/%d/temp", i%benchSide, i/benchSide%benchSide)
}

// plusFilter puts one or two '+' in each filter. a%4 picks the pattern, so
// the filters are distinct and a topic matches exactly one of them, after
// following '+' branches at several levels.
func plusFilter(i int) string {
	a, b := i%benchSide, i/benchSide%benchSide
	switch a % 4 {
	case 0:
		return fmt.Sprintf("bld/%d/+/%d/temp", a, b)
	case 1:
		return fmt.Sprintf("bld/%d/dev/%d/+", a, b)
	case 2:
		return fmt.Sprintf("+/%d/dev/%d/temp", a, b)
	default:
		return fmt.Sprintf("bld/%d/+/%d/+", a, b)
	}
}

// hashFilter ends every filter in '#', at different depths.
func hashFilter(i int) string {
	a, b := i%benchSide, i/benchSide%benchSide
	switch a % 4 {
	case 0:
		return fmt.Sprintf("bld/%d/dev/%d/#", a, b)
	case 1:
		return fmt.Sprintf("bld/%d/dev/%d/temp/#", a, b)
	case 2:
		return fmt.Sprintf("bld/%d/+/%d/#", a, b)
	default:
		return fmt.Sprintf("+/%d/dev/%d/#", a, b)
	}
}

// broadFilters are the few catch-all subscriptions (monitoring, bridges)
// that the mixed tree carries besides its per-device filters.
var broadFilters = []string{"#", "bld/#", "+/+/dev/+/temp", "bld/+/+/+/+"}

var treeShapes = []treeShape{
	{"exact", exactFilter},
	{"plus", plusFilter},
	{"hash", hashFilter},
	// 70% exact, 15% '+', 15% '#', and the broad filters.
	{"mixed", func(i int) string {
		switch k := i % 20; {
		case i < len(broadFilters):
			return broadFilters[i]
		case k < 14:
			return exactFilter(i)
		case k < 17:
			return plusFilter(i)
		default:
			return hashFilter(i)
		}
	}},
}

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// buildTree adds n subscriptions of shape to a new tree and returns it with
// the heap it holds per subscription.
func buildTree(shape func(int) string, n int) (*Tree, float64) {
	before := heapInUse()
	tr := New()
	for i := range n {
		tr.Add(shape(i), i%8)
	}
	return tr, float64(heapInUse()-before) / float64(n)
}

func benchTopics(n int) [][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	topics := make([][]byte, n)
	for i := range topics {
		topics[i] = fmt.Appendf(nil, "bld/%d/dev/%d/temp", rng.IntN(benchSide), rng.IntN(benchSide))
	}
	return topics
}

// BenchmarkMatch matches topics against trees of 1M subscriptions. The tree
// is built once per shape, outside the timing; B/sub is the heap it holds
// per subscription. "cold" draws each topic from 4096 random ones, so most
// of the walk misses the CPU caches, as in a broker whose publishers are
// spread over 1M devices; "hot" cycles through 16 topics whose paths stay
// cached, which isolates the cost of the code itself.
func BenchmarkMatch(b *testing.B) {
	topics := benchTopics(4096)
	for _, shape := range treeShapes {
		b.Run(shape.name, func(b *testing.B) {
			tr, perSub := buildTree(shape.filter, benchSubs)
			for _, set := range []struct {
				name string
				mask int
			}{{"cold", 4095}, {"hot", 15}} {
				b.Run(set.name, func(b *testing.B) {
					dst := make([]Match, 0, 1024)
					matches := 0
					b.ReportAllocs()
					i := 0
					for b.Loop() {
						dst = tr.Match(topics[i&set.mask], dst[:0])
						matches += len(dst)
						i++
					}
					b.ReportMetric(float64(matches)/float64(b.N), "matches/op")
					b.ReportMetric(perSub, "B/sub")
				})
			}
		})
	}
}

// deviceFilter is the i-th child of the single level device/ holds.
func deviceFilter(i int) string { return "device/" + strconv.Itoa(i) + "/cmd" }

// BenchmarkAdd measures the subscribe rate: new filters spread over a tree,
// one more subscription on an existing filter, and new children of one level
// that already has 1M of them.
func BenchmarkAdd(b *testing.B) {
	b.Run("spread", func(b *testing.B) {
		filters := make([]string, b.N)
		for i := range filters {
			filters[i] = exactFilter(i)
		}
		tr := New()
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			tr.Add(filters[i], i%8)
		}
	})
	b.Run("existing", func(b *testing.B) {
		tr := New()
		tr.Add("bld/1/dev/2/temp", 3)
		b.ReportAllocs()
		for b.Loop() {
			tr.Add("bld/1/dev/2/temp", 3)
		}
	})
	tr, perSub := buildTree(deviceFilter, benchSubs)
	b.Run("node1M", func(b *testing.B) {
		filters := make([]string, b.N)
		for i := range filters {
			filters[i] = deviceFilter(benchSubs + i)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			tr.Add(filters[i], i%8)
		}
		b.StopTimer()
		b.ReportMetric(perSub, "B/sub")
		for i := range b.N {
			tr.Remove(filters[i], i%8)
		}
	})
}

// BenchmarkGrow1M measures the one Add in many that finds the children table
// of a level full: copying 786,432 (hash, pointer) pairs from a 2^20-slot
// table into a 2^21-slot one. Other writers wait for it; readers do not.
func BenchmarkGrow1M(b *testing.B) {
	tr := New()
	t := newTable[node](2)
	n := limit(1 << 20)
	for i := range n {
		t = t.insert(newItem[node](strconv.Itoa(i)), tr.tomb)
	}
	if len(t.slots) != 1<<20 || int(t.used) != n {
		b.Fatalf("table has %d slots, %d used; want %d, %d", len(t.slots), t.used, 1<<20, n)
	}
	b.ReportAllocs()
	for b.Loop() {
		t.rebuild(2*len(t.slots), tr.tomb)
	}
}

// BenchmarkRemove measures the unsubscribe rate, pruning included.
func BenchmarkRemove(b *testing.B) {
	b.Run("spread", func(b *testing.B) {
		filters := make([]string, b.N)
		tr := New()
		for i := range filters {
			filters[i] = exactFilter(i)
			tr.Add(filters[i], i%8)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			tr.Remove(filters[i], i%8)
		}
	})
	tr, _ := buildTree(deviceFilter, benchSubs)
	b.Run("node1M", func(b *testing.B) {
		filters := make([]string, b.N)
		for i := range filters {
			filters[i] = deviceFilter(benchSubs + i)
			tr.Add(filters[i], i%8)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			tr.Remove(filters[i], i%8)
		}
	})
}

// BenchmarkMatchWhileSubscribing runs parallel Match calls against the mixed
// 1M tree while one goroutine keeps adding and removing subscriptions that
// share levels with the topics matched. writes/s is that goroutine's rate.
func BenchmarkMatchWhileSubscribing(b *testing.B) {
	tr, _ := buildTree(treeShapes[3].filter, benchSubs)
	topics := benchTopics(4096)
	churn := make([]string, 20000)
	for i := range churn {
		if i%2 == 0 {
			churn[i] = fmt.Sprintf("bld/%d/dev/x%d/temp", i%benchSide, i)
		} else {
			churn[i] = fmt.Sprintf("bld/+/dev/%d/#", i)
		}
	}
	b.Run("mixed", func(b *testing.B) {
		var stop atomic.Bool
		var writes atomic.Int64
		var wg sync.WaitGroup
		wg.Go(func() {
			for !stop.Load() {
				for _, f := range churn {
					tr.Add(f, 1)
				}
				for _, f := range churn {
					tr.Remove(f, 1)
				}
				writes.Add(int64(2 * len(churn)))
			}
		})
		// No ReportAllocs: the count would be the writer's allocations
		// divided by the reads. BenchmarkMatch and TestMatchAllocs show
		// that Match itself allocates nothing.
		var next atomic.Int64
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			dst := make([]Match, 0, 1024)
			i := int(next.Add(1)) * 1000
			for pb.Next() {
				dst = tr.Match(topics[i&4095], dst[:0])
				i++
			}
		})
		elapsed := time.Since(start)
		stop.Store(true)
		wg.Wait()
		b.ReportMetric(float64(writes.Load())/elapsed.Seconds(), "writes/s")
	})
}

// BenchmarkRetainedMatch matches filters against 1M retained topics
// bld/<a>/dev/<b>/temp. B/topic is the heap held per retained topic.
func BenchmarkRetainedMatch(b *testing.B) {
	before := heapInUse()
	r := NewRetained[[]byte]()
	payload := []byte("21.5")
	for i := range benchSubs {
		r.Set(exactFilter(i), payload)
	}
	perTopic := float64(heapInUse()-before) / benchSubs
	rng := rand.New(rand.NewPCG(3, 4))
	for _, c := range []struct {
		name   string
		filter func() string
	}{
		{"exact", func() string { return fmt.Sprintf("bld/%d/dev/%d/temp", rng.IntN(benchSide), rng.IntN(benchSide)) }},
		{"plus-last", func() string { return fmt.Sprintf("bld/%d/dev/+/temp", rng.IntN(benchSide)) }},
		{"plus-first", func() string { return fmt.Sprintf("bld/+/dev/%d/temp", rng.IntN(benchSide)) }},
		{"hash", func() string { return fmt.Sprintf("bld/%d/#", rng.IntN(benchSide)) }},
		{"miss", func() string { return fmt.Sprintf("bld/%d/nodev/+", rng.IntN(benchSide)) }},
	} {
		filters := make([]string, 4096)
		for i := range filters {
			filters[i] = c.filter()
		}
		b.Run(c.name, func(b *testing.B) {
			found := 0
			fn := func(string, []byte) bool { found++; return true }
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r.Match(filters[i&4095], fn)
				i++
			}
			b.ReportMetric(float64(found)/float64(b.N), "topics/op")
			b.ReportMetric(perTopic, "B/topic")
		})
	}
}
