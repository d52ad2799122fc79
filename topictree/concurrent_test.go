package topictree

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrentMatch runs readers that Match continuously while writers on
// other goroutines Add and Remove, growing and shrinking big tables and
// pruning levels next to permanent ones. Readers check that every match is a
// filter that was added at some point on the shard that added it, that no
// (filter, shard) pair appears twice, and that every permanent filter that
// matches the topic is always there. Run it with -race.
func TestConcurrentMatch(t *testing.T) {
	tr := New()
	// Permanent filters, on shard 0, never removed.
	permanent := []string{"#", "big/+", "big/keep", "big/keep/#", "+/keep", "big/+/x", "$SYS/#"}
	for _, f := range permanent {
		tr.Add(f, 0)
	}
	// Churned filters: writer w uses shard w+1 only.
	const writers, churn = 2, 3000
	churned := func(w, i int) string {
		switch i % 3 {
		case 0:
			return fmt.Sprintf("big/%d", i) // many siblings of big/keep: growth and shrink
		case 1:
			return fmt.Sprintf("big/keep/%d/x", i) // below a permanent level: pruning next to it
		default:
			return fmt.Sprintf("+/%d/#", i%50)
		}
	}
	// valid holds every (filter, shard) pair that is ever added.
	valid := map[Match]bool{}
	for _, f := range permanent {
		valid[Match{f, 0}] = true
	}
	for w := range writers {
		for i := range churn {
			valid[Match{churned(w, i), w + 1}] = true
		}
	}

	topics := []string{"big/keep", "big/keep/7/x", "big/12", "big/13/x", "a/keep", "$SYS/x", "big/keep/1/x/y"}
	wantPermanent := make([][]string, len(topics))
	for i, tp := range topics {
		for _, f := range permanent {
			if oracleMatch(f, tp) {
				wantPermanent[i] = append(wantPermanent[i], f)
			}
		}
	}

	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan string, 16)
	for w := range writers {
		wg.Go(func() {
			for round := 0; !stop.Load(); round++ {
				for i := range churn {
					tr.Add(churned(w, i), w+1)
					if i%5 == 0 {
						// Counts that change in place, under readers:
						// a second subscription on a churned filter,
						// and one more and one less on a permanent one.
						tr.Add(churned(w, i), w+1)
						tr.Add(permanent[i%len(permanent)], 0)
					}
				}
				for i := range churn {
					tr.Remove(churned(w, i), w+1)
					if i%5 == 0 {
						tr.Remove(churned(w, i), w+1)
						tr.Remove(permanent[i%len(permanent)], 0)
					}
				}
			}
		})
	}
	var reads atomic.Int64
	for r := range 2 {
		wg.Go(func() {
			dst := make([]Match, 0, 256)
			for k := 0; !stop.Load(); k++ {
				i := (k + r) % len(topics)
				dst = tr.Match([]byte(topics[i]), dst[:0])
				if msg := checkMatches(topics[i], dst, valid, wantPermanent[i]); msg != "" {
					select {
					case errs <- msg:
					default:
					}
					return
				}
				reads.Add(1)
			}
		})
	}
	time.Sleep(time.Second)
	stop.Store(true)
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Error(msg)
	}
	if reads.Load() == 0 {
		t.Fatal("readers made no progress")
	}
	// The writers undid all their Adds.
	if tr.Filters() != len(permanent) {
		t.Fatalf("Filters() = %d, want %d", tr.Filters(), len(permanent))
	}
	t.Logf("%d matches checked", reads.Load())
}

func checkMatches(topic string, got []Match, valid map[Match]bool, permanent []string) string {
	seen := map[Match]bool{}
	for _, m := range got {
		if seen[m] {
			return fmt.Sprintf("topic %q: %v matched twice", topic, m)
		}
		seen[m] = true
		if !valid[m] {
			return fmt.Sprintf("topic %q: matched %v, which was never added", topic, m)
		}
		if !oracleMatch(m.Filter, topic) {
			return fmt.Sprintf("topic %q: matched %v, which does not match it", topic, m)
		}
	}
	for _, f := range permanent {
		if !seen[Match{f, 0}] {
			return fmt.Sprintf("topic %q: permanent filter %q missing from %v", topic, f, got)
		}
	}
	return ""
}

// TestConcurrentRetained runs Get, Match and Range against Set and Delete on
// other goroutines. Permanent topics must always be found with their value;
// churned topics may or may not be, but never with a value that was not set.
func TestConcurrentRetained(t *testing.T) {
	r := NewRetained[string]()
	permanent := []string{"big/keep", "big/keep/a", "$SYS/up", "x"}
	for _, tp := range permanent {
		r.Set(tp, "p:"+tp)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan string, 16)
	report := func(msg string) {
		select {
		case errs <- msg:
		default:
		}
	}
	for w := range 2 {
		wg.Go(func() {
			for round := 0; !stop.Load(); round++ {
				for i := range 2000 {
					tp := fmt.Sprintf("big/%d/%d", w, i)
					if i%2 == 0 {
						tp = fmt.Sprintf("big/keep/%d-%d", w, i)
					}
					r.Set(tp, "c:"+tp)
					if i%100 == 0 {
						// Replace a permanent value with an equal one.
						p := permanent[i/100%len(permanent)]
						r.Set(p, "p:"+p)
					}
				}
				for i := range 2000 {
					tp := fmt.Sprintf("big/%d/%d", w, i)
					if i%2 == 0 {
						tp = fmt.Sprintf("big/keep/%d-%d", w, i)
					}
					r.Delete(tp)
				}
			}
		})
	}
	var reads atomic.Int64
	for range 2 {
		wg.Go(func() {
			for !stop.Load() {
				for _, tp := range permanent {
					if v, ok := r.Get(tp); !ok || v != "p:"+tp {
						report(fmt.Sprintf("Get(%q) = %q, %v", tp, v, ok))
						return
					}
				}
				for _, filter := range []string{"big/#", "big/+", "#", "big/keep/+"} {
					var found []string
					r.Match(filter, func(tp, v string) bool {
						if v != "p:"+tp && v != "c:"+tp || !oracleMatch(filter, tp) {
							report(fmt.Sprintf("Match(%q) gave %q = %q", filter, tp, v))
						}
						if strings.HasPrefix(v, "p:") {
							found = append(found, tp)
						}
						return true
					})
					for _, tp := range permanent {
						if oracleMatch(filter, tp) && !slices.Contains(found, tp) {
							report(fmt.Sprintf("Match(%q) missed permanent %q", filter, tp))
							return
						}
					}
				}
				reads.Add(1)
			}
		})
	}
	time.Sleep(time.Second)
	stop.Store(true)
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Error(msg)
	}
	if reads.Load() == 0 {
		t.Fatal("readers made no progress")
	}
	if r.Len() != len(permanent) {
		t.Fatalf("Len() = %d, want %d", r.Len(), len(permanent))
	}
}
