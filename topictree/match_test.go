package topictree

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"iotd/wire"
)

// oracleMatch is the reference the tests hold Tree and Retained to: the wire
// package's matcher, so that the broker matches one way everywhere.
func oracleMatch(filter, topic string) bool { return wire.MatchTopic(filter, topic) }

// splitMatch is an independent brute-force reading of MQTT 3.1.1 section
// 4.7: split both on '/', compare level by level. TestOraclesAgree holds
// wire.MatchTopic to it.
func splitMatch(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	f := strings.Split(filter, "/")
	tl := strings.Split(topic, "/")
	for i, fl := range f {
		if fl == "#" {
			return true
		}
		if i >= len(tl) || (fl != "+" && fl != tl[i]) {
			return false
		}
	}
	return len(f) == len(tl)
}

type ruleCase struct {
	filter, topic string
	want          bool
	rule          string // the spec statement the row checks
}

// ruleCases covers every matching rule; each row names the statement it
// checks.
var ruleCases = []ruleCase{
	// '#' matches the parent and any number of child levels [MQTT-4.7.1-2].
	{"sport/tennis/player1/#", "sport/tennis/player1", true, "MQTT-4.7.1-2"},
	{"sport/tennis/player1/#", "sport/tennis/player1/ranking", true, "MQTT-4.7.1-2"},
	{"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true, "MQTT-4.7.1-2"},
	{"sport/tennis/player1/#", "sport/tennis/player2", false, "MQTT-4.7.1-2"},
	{"sport/tennis/player1/#", "sport/tennis", false, "MQTT-4.7.1-2"},
	{"sport/#", "sport", true, "MQTT-4.7.1-2"},
	{"sport/#", "sport/", true, "MQTT-4.7.1-2"},
	{"sport/#", "sport/a/b", true, "MQTT-4.7.1-2"},
	{"sport/#", "sports", false, "MQTT-4.7.1-2"},
	{"#", "sport", true, "MQTT-4.7.1-2"},
	{"#", "/", true, "MQTT-4.7.1-2"},
	{"#", "a/b/c/d/e/f", true, "MQTT-4.7.1-2"},
	{"/#", "/x", true, "MQTT-4.7.1-2"},
	{"/#", "x", false, "MQTT-4.7.1-2"},
	// '+' matches exactly one level, empty levels included [MQTT-4.7.1-3].
	{"sport/tennis/+", "sport/tennis/player1", true, "MQTT-4.7.1-3"},
	{"sport/tennis/+", "sport/tennis/player2", true, "MQTT-4.7.1-3"},
	{"sport/tennis/+", "sport/tennis/player1/ranking", false, "MQTT-4.7.1-3"},
	{"sport/+", "sport", false, "MQTT-4.7.1-3"},
	{"sport/+", "sport/", true, "MQTT-4.7.1-3"},
	{"+", "sport", true, "MQTT-4.7.1-3"},
	{"+", "/finance", false, "MQTT-4.7.1-3"},
	{"+/+", "/finance", true, "MQTT-4.7.1-3"},
	{"/+", "/finance", true, "MQTT-4.7.1-3"},
	{"+/+", "a", false, "MQTT-4.7.1-3"},
	{"a/+/b", "a//b", true, "MQTT-4.7.1-3"},
	{"a/+/b", "a/b", false, "MQTT-4.7.1-3"},
	{"+/tennis/#", "sport/tennis", true, "MQTT-4.7.1-3"},
	{"+/tennis/#", "sport/tennis/x/y", true, "MQTT-4.7.1-3"},
	{"+/+/+", "//", true, "MQTT-4.7.1-3"},
	{"+/#", "a", true, "MQTT-4.7.1-3"},
	// Empty levels are levels: no collapsing of '/' (4.7.3 and [MQTT-4.7.3-4]).
	{"a//b", "a//b", true, "MQTT-4.7.3-4"},
	{"a//b", "a/b", false, "MQTT-4.7.3-4"},
	{"a/b", "a/b/", false, "MQTT-4.7.3-4"},
	{"a/b/", "a/b/", true, "MQTT-4.7.3-4"},
	{"/a", "a", false, "MQTT-4.7.3-4"},
	// Wildcards at the first level never match '$' topics [MQTT-4.7.2-1].
	{"#", "$SYS/broker/uptime", false, "MQTT-4.7.2-1"},
	{"#", "$SYS", false, "MQTT-4.7.2-1"},
	{"+", "$x", false, "MQTT-4.7.2-1"},
	{"+/monitor/Clients", "$SYS/monitor/Clients", false, "MQTT-4.7.2-1"},
	{"+/#", "$SYS/x", false, "MQTT-4.7.2-1"},
	{"$SYS/#", "$SYS/monitor/Clients", true, "MQTT-4.7.2-1"},
	{"$SYS/#", "$SYS", true, "MQTT-4.7.2-1"},
	{"$SYS/monitor/+", "$SYS/monitor/Clients", true, "MQTT-4.7.2-1"},
	{"$SYS/+/Clients", "$SYS/monitor/Clients", true, "MQTT-4.7.2-1"},
	{"a/+", "a/$b", true, "MQTT-4.7.2-1"},
	{"a/#", "a/$b/c", true, "MQTT-4.7.2-1"},
	{"+/$b", "a/$b", true, "MQTT-4.7.2-1"},
	{"#", "x$", true, "MQTT-4.7.2-1"},
	// Exact byte comparison, case-sensitive, no normalisation [MQTT-4.7.3-4].
	{"ACCOUNTS", "Accounts", false, "MQTT-4.7.3-4"},
	{"Accounts", "Accounts", true, "MQTT-4.7.3-4"},
	{"sport/Tennis/+", "sport/tennis/x", false, "MQTT-4.7.3-4"},
	{"caf\u00e9", "cafe\u0301", false, "MQTT-4.7.3-4"}, // NFC vs NFD
	{"caf\u00e9", "caf\u00e9", true, "MQTT-4.7.3-4"},
	{"a b", "a b", true, "MQTT-4.7.3-4"},
	{"a b", "a  b", false, "MQTT-4.7.3-4"},
}

// TestRuleCasesOracle keeps both oracles honest against the spec rows, so
// the randomized tests compare against something that is itself checked.
func TestRuleCasesOracle(t *testing.T) {
	for _, c := range ruleCases {
		if err := wire.ValidTopicFilter(c.filter); err != nil {
			t.Errorf("[%s] row filter %q is invalid: %v", c.rule, c.filter, err)
		}
		if err := wire.ValidTopicName(c.topic); err != nil {
			t.Errorf("[%s] row topic %q is invalid: %v", c.rule, c.topic, err)
		}
		if got := oracleMatch(c.filter, c.topic); got != c.want {
			t.Errorf("[%s] wire.MatchTopic(%q, %q) = %v, want %v", c.rule, c.filter, c.topic, got, c.want)
		}
		if got := splitMatch(c.filter, c.topic); got != c.want {
			t.Errorf("[%s] splitMatch(%q, %q) = %v, want %v", c.rule, c.filter, c.topic, got, c.want)
		}
	}
}

// TestOraclesAgree compares the two oracles on random valid pairs.
func TestOraclesAgree(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 20000 {
		f, tp := randFilter(rng), randTopic(rng)
		if a, b := oracleMatch(f, tp), splitMatch(f, tp); a != b {
			t.Fatalf("filter %q topic %q: wire.MatchTopic %v, splitMatch %v", f, tp, a, b)
		}
	}
}

// TestTreeMatchRules puts every filter of the table in one tree, so each
// topic is matched against the whole crowd, and checks each row.
func TestTreeMatchRules(t *testing.T) {
	tr := New()
	seen := map[string]bool{}
	for _, c := range ruleCases {
		if !seen[c.filter] {
			seen[c.filter] = true
			tr.Add(c.filter, 3)
		}
	}
	for _, c := range ruleCases {
		got := tr.Match([]byte(c.topic), nil)
		found := slices.Contains(got, Match{Filter: c.filter, Shard: 3})
		if found != c.want {
			t.Errorf("[%s] filter %q vs topic %q: matched %v, want %v (all: %v)", c.rule, c.filter, c.topic, found, c.want, got)
		}
		// Beyond the row: the whole result equals the oracle's.
		var want []Match
		for f := range seen {
			if oracleMatch(f, c.topic) {
				want = append(want, Match{Filter: f, Shard: 3})
			}
		}
		if !sameMatches(got, want) {
			t.Errorf("topic %q: Match = %v, want %v", c.topic, sortMatches(got), sortMatches(want))
		}
	}
}

// TestRetainedMatchRules stores every topic of the table and checks each
// row with Retained.Match.
func TestRetainedMatchRules(t *testing.T) {
	r := NewRetained[int]()
	for i, c := range ruleCases {
		r.Set(c.topic, i)
	}
	for _, c := range ruleCases {
		found := false
		r.Match(c.filter, func(topic string, _ int) bool {
			found = found || topic == c.topic
			return true
		})
		if found != c.want {
			t.Errorf("[%s] Retained: filter %q vs topic %q: matched %v, want %v", c.rule, c.filter, c.topic, found, c.want)
		}
	}
}

func TestMatchShards(t *testing.T) {
	tr := New()
	tr.Add("a/+", 0)
	tr.Add("a/+", 5)
	tr.Add("a/+", 5)
	tr.Add("a/b", 2)
	got := tr.Match([]byte("a/b"), nil)
	want := []Match{{"a/+", 0}, {"a/+", 5}, {"a/b", 2}}
	if !sameMatches(got, want) {
		t.Fatalf("Match = %v, want %v (one entry per filter and shard)", sortMatches(got), want)
	}
	// dst is appended to, not overwritten.
	dst := []Match{{"keep", 9}}
	got = tr.Match([]byte("a/c"), dst)
	if len(got) != 3 || got[0] != (Match{"keep", 9}) {
		t.Fatalf("Match appended wrong: %v", got)
	}
}

func sortMatches(m []Match) []Match {
	m = slices.Clone(m)
	slices.SortFunc(m, func(a, b Match) int {
		if c := strings.Compare(a.Filter, b.Filter); c != 0 {
			return c
		}
		return a.Shard - b.Shard
	})
	return m
}

func sameMatches(a, b []Match) bool {
	return slices.Equal(sortMatches(a), sortMatches(b))
}

// randLevels builds count levels from a small alphabet that includes '$'
// and the empty level, so collisions, '$' topics and empty levels are
// common.
func randLevels(rng *rand.Rand, alphabet []string, count int) []string {
	l := make([]string, count)
	for i := range l {
		l[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return l
}

// topicAlphabet includes names at the inline-name limit (15 bytes) and just
// past it, one of them starting with '$'.
var topicAlphabet = []string{"a", "b", "", "$", "$S", "a$", "fifteen-bytes-x", "sixteen-bytes-xy", "$seventeen-bytes-"}

// randTopic returns a valid topic name (the broker matches no other).
func randTopic(rng *rand.Rand) string {
	for {
		tp := strings.Join(randLevels(rng, topicAlphabet, 1+rng.IntN(4)), "/")
		if wire.ValidTopicName(tp) == nil {
			return tp
		}
	}
}

// randFilter returns a valid topic filter, often with '+' and '#'.
func randFilter(rng *rand.Rand) string {
	for {
		l := randLevels(rng, append(topicAlphabet, "+", "+"), 1+rng.IntN(4))
		if rng.IntN(3) == 0 {
			if rng.IntN(4) == 0 {
				l = l[:0]
			}
			l = append(l, "#")
		}
		f := strings.Join(l, "/")
		if wire.ValidTopicFilter(f) == nil {
			return f
		}
	}
}

type subKey struct {
	filter string
	shard  int
}

// TestTreeRandomOracle drives Add and Remove at random, keeps a model of the
// counts, and compares Match with the oracle over the model for many topics.
func TestTreeRandomOracle(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 42))
			tr := New()
			model := map[subKey]int{}
			var keys []subKey // every key ever added, for removals
			for step := range 3000 {
				switch op := rng.IntN(10); {
				case op < 6 || len(keys) == 0:
					k := subKey{randFilter(rng), rng.IntN(3)}
					tr.Add(k.filter, k.shard)
					model[k]++
					keys = append(keys, k)
				case op < 9:
					k := keys[rng.IntN(len(keys))]
					tr.Remove(k.filter, k.shard)
					if model[k] > 0 {
						model[k]--
					}
				default:
					// Removing what was never added is a no-op.
					k := subKey{randFilter(rng), rng.IntN(3)}
					if model[k] == 0 {
						tr.Remove(k.filter, k.shard)
					}
				}
				if step%10 != 0 {
					continue
				}
				filters := map[string]bool{}
				for k, c := range model {
					if c > 0 {
						filters[k.filter] = true
					}
				}
				if tr.Filters() != len(filters) {
					t.Fatalf("step %d: Filters() = %d, want %d", step, tr.Filters(), len(filters))
				}
				for range 5 {
					topic := randTopic(rng)
					var want []Match
					for k, c := range model {
						if c > 0 && oracleMatch(k.filter, topic) {
							want = append(want, Match{k.filter, k.shard})
						}
					}
					got := tr.Match([]byte(topic), nil)
					if !sameMatches(got, want) {
						t.Fatalf("step %d topic %q:\n got %v\nwant %v", step, topic, sortMatches(got), sortMatches(want))
					}
				}
			}
			for k, c := range model {
				for range c {
					tr.Remove(k.filter, k.shard)
				}
			}
			if tr.Filters() != 0 || !tr.root.empty() {
				t.Fatalf("after removing everything: Filters() = %d, root empty = %v", tr.Filters(), tr.root.empty())
			}
		})
	}
}

// TestRetainedRandomOracle drives Set and Delete at random and compares Get,
// Len, Range and Match with a map and the oracle.
func TestRetainedRandomOracle(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			r := NewRetained[int]()
			model := map[string]int{}
			for step := range 3000 {
				topic := randTopic(rng)
				if rng.IntN(3) == 0 {
					r.Delete(topic)
					delete(model, topic)
				} else {
					r.Set(topic, step)
					model[topic] = step
				}
				if step%10 != 0 {
					continue
				}
				if r.Len() != len(model) {
					t.Fatalf("step %d: Len() = %d, want %d", step, r.Len(), len(model))
				}
				probe := randTopic(rng)
				v, ok := r.Get(probe)
				if mv, mok := model[probe]; v != mv || ok != mok {
					t.Fatalf("step %d: Get(%q) = %d, %v; want %d, %v", step, probe, v, ok, mv, mok)
				}
				ranged := map[string]int{}
				r.Range(func(topic string, v int) bool { ranged[topic] = v; return true })
				if !maps.Equal(ranged, model) {
					t.Fatalf("step %d: Range = %v, want %v", step, ranged, model)
				}
				for range 5 {
					filter := randFilter(rng)
					want := map[string]int{}
					for tp, v := range model {
						if oracleMatch(filter, tp) {
							want[tp] = v
						}
					}
					got := map[string]int{}
					calls := 0
					r.Match(filter, func(topic string, v int) bool { got[topic] = v; calls++; return true })
					if calls != len(got) || !maps.Equal(got, want) {
						t.Fatalf("step %d filter %q: Match = %v (%d calls), want %v", step, filter, got, calls, want)
					}
				}
			}
			for tp := range model {
				r.Delete(tp)
			}
			if r.Len() != 0 || r.root.kids.Load() != nil {
				t.Fatalf("after deleting everything: Len() = %d, root kids = %v", r.Len(), r.root.kids.Load())
			}
		})
	}
}
