package auth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"iotd/wire"
)

// aclFixture exercises every kind of line. A real mosquitto loads it too
// (TestMosquittoLoadsOurACLFixture).
const aclFixture = `# iotd ACL test fixture

# Anonymous clients: topic lines before any user line.
topic read public/#
topic write public/anon/in
topic deny public/secret

user alice
topic readwrite home/alice/#
topic read sensors/+/temp
topic deny home/alice/locked
topic read $SYS/#
topic write shared/log

user bob
topic home/bob/#
topic write sensors/bob/+
topic deny shared/#
topic readwrite devices/#

# Every client.
pattern readwrite devices/%c/#
pattern read users/%u/inbox
pattern write users/%u/outbox/%c
pattern deny devices/%c/firmware
pattern read broadcast/#
pattern read %c/inbox

# A second block for alice adds to the first.
user alice
topic read extra/alice
`

type aclCase struct {
	id, user string
	anon     bool
	access   Access
	topic    string
	want     bool
	why      string
}

func runACLCases(t *testing.T, a *ACL, cases []aclCase) {
	t.Helper()
	for _, c := range cases {
		if got := a.Allowed(c.id, c.user, c.anon, c.access, c.topic); got != c.want {
			who := "user " + c.user
			if c.anon {
				who = "anonymous"
			}
			t.Errorf("Allowed(client %q, %s, %v, %q) = %v, want %v (%s)", c.id, who, c.access, c.topic, got, c.want, c.why)
		}
	}
}

func mustLoadACL(t *testing.T, content string) *ACL {
	t.Helper()
	a, err := LoadACL(writeFile(t, "acl", content))
	if err != nil {
		t.Fatalf("LoadACL: %v", err)
	}
	return a
}

func TestACLRules(t *testing.T) {
	a := mustLoadACL(t, aclFixture)
	const R, W = Read, Write
	runACLCases(t, a, []aclCase{
		// Anonymous rules: topic lines before any user line.
		{"anon1", "", true, R, "public/news", true, "anonymous topic read public/#"},
		{"anon1", "", true, W, "public/news", false, "read only"},
		{"anon1", "", true, W, "public/anon/in", true, "anonymous topic write"},
		{"anon1", "", true, R, "public/anon/in", true, "read from public/#"},
		{"anon1", "", true, R, "public/secret", false, "anonymous deny beats public/#"},
		{"anon1", "", true, R, "home/alice/x", false, "user rules do not apply to anonymous"},
		{"anon1", "alice", true, R, "home/alice/x", false, "anonymous ignores the user name"},
		{"anon1", "", true, R, "$SYS/broker/uptime", false, "no $SYS rule for anonymous; public/# cannot reach it [MQTT-4.7.2-1]"},
		{"anon1", "", true, R, "users//inbox", false, "%u patterns skip anonymous clients"},
		// Patterns apply to anonymous clients too.
		{"anon1", "", true, W, "devices/anon1/status", true, "pattern devices/%c/#"},
		{"anon1", "", true, R, "devices/anon1", true, "devices/%c/# matches the parent level [MQTT-4.7.1-2]"},
		{"anon1", "", true, W, "devices/anon1/firmware", false, "deny pattern"},
		{"anon1", "", true, R, "broadcast/all", true, "pattern without substitution"},

		// alice: her blocks and the patterns, not the anonymous rules.
		{"c1", "alice", false, R, "home/alice/door", true, "readwrite"},
		{"c1", "alice", false, W, "home/alice/door", true, "readwrite"},
		{"c1", "alice", false, R, "home/alice/locked", false, "deny beats home/alice/#"},
		{"c1", "alice", false, W, "home/alice/locked", false, "deny covers write too"},
		{"c1", "alice", false, R, "home/alice/locked/sub", true, "deny is exact, home/alice/# allows below it"},
		{"c1", "alice", false, R, "sensors/kitchen/temp", true, "topic read sensors/+/temp"},
		{"c1", "alice", false, W, "sensors/kitchen/temp", false, "read only"},
		{"c1", "alice", false, R, "sensors/kitchen/humidity", false, "default deny"},
		{"c1", "alice", false, R, "$SYS/broker/load/1min", true, "topic read $SYS/#"},
		{"c1", "alice", false, W, "$SYS/broker/load/1min", false, "$SYS read only"},
		{"c1", "alice", false, W, "shared/log", true, "write"},
		{"c1", "alice", false, R, "shared/log", false, "write only"},
		{"c1", "alice", false, R, "public/news", false, "anonymous rules do not apply to users"},
		{"c1", "alice", false, R, "extra/alice", true, "second user block adds"},
		{"c1", "alice", false, R, "users/alice/inbox", true, "pattern %u"},
		{"c1", "alice", false, W, "users/alice/inbox", false, "pattern read only"},
		{"c1", "alice", false, R, "users/bob/inbox", false, "another user's %u"},
		{"c1", "alice", false, W, "users/alice/outbox/c1", true, "pattern %u and %c"},
		{"c1", "alice", false, W, "users/alice/outbox/c2", false, "another client id"},
		{"c1", "alice", false, W, "devices/c1/cmd", true, "pattern %c"},
		{"c1", "alice", false, R, "devices/c2/cmd", false, "another client's %c"},
		{"c1", "alice", false, R, "c1/inbox", true, "pattern %c/inbox"},
		{"c1", "alice", false, R, "unknown", false, "default deny"},

		// bob: access word omitted means readwrite; his deny and the deny
		// pattern beat his own allows.
		{"c2", "bob", false, R, "home/bob/x", true, "default readwrite"},
		{"c2", "bob", false, W, "home/bob/x", true, "default readwrite"},
		{"c2", "bob", false, W, "sensors/bob/t", true, "write"},
		{"c2", "bob", false, R, "sensors/bob/t", false, "write only"},
		{"c2", "bob", false, W, "shared/log", false, "bob's deny shared/#"},
		{"c2", "bob", false, W, "devices/other/cmd", true, "bob's topic readwrite devices/#"},
		{"c2", "bob", false, W, "devices/c2/firmware", false, "deny pattern beats bob's own allow"},
		{"c2", "bob", false, R, "devices/c2/firmware", false, "deny pattern denies read too"},

		// A user with no block gets only the patterns.
		{"c3", "carol", false, R, "devices/c3/x", true, "pattern"},
		{"c3", "carol", false, R, "home/carol", false, "default deny"},
		{"c3", "carol", false, R, "public/news", false, "anonymous rules do not apply"},

		// An empty user name (sent, but empty) is not anonymous and
		// matches no %u pattern.
		{"c4", "", false, R, "users//inbox", false, "%u needs a user name"},
		{"c4", "", false, R, "public/news", false, "not anonymous"},
		{"c4", "", false, R, "devices/c4/x", true, "%c still applies"},
		// An empty client id matches no %c pattern.
		{"", "alice", false, R, "devices//x", false, "%c needs a client id"},
		{"", "alice", false, R, "home/alice/x", true, "user rules still apply"},

		// Invalid requests.
		{"c1", "alice", false, W, "home/alice/+", false, "write to a wildcard: a topic name has none [MQTT-3.3.2-2], [MQTT-4.7.1-1]"},
		{"c1", "alice", false, R, "", false, "empty topic"},
		{"c1", "alice", false, R, "home/alice/#/x", false, "invalid filter: '#' must be last [MQTT-4.7.1-2]"},
		{"c1", "alice", false, R, "home/alice/\xff", false, "invalid UTF-8 [MQTT-1.5.3-1]"},
		{"c1", "alice", false, Read | Write, "home/alice/x", false, "combined access is not a request"},
		{"c1", "alice", false, 0, "home/alice/x", false, "no access"},
	})
	var nilACL *ACL
	if nilACL.Allowed("c", "u", false, Read, "a") {
		t.Error("nil ACL allowed access")
	}
}

func TestACLUnsafeIdentities(t *testing.T) {
	a := mustLoadACL(t, aclFixture)
	const R = Read
	// With patterns in the file, an id or user name holding '+', '#' or
	// '/' gets nothing at all, not even its own topic lines.
	runACLCases(t, a, []aclCase{
		{"+", "alice", false, R, "home/alice/x", false, "client id '+'"},
		{"#", "alice", false, R, "home/alice/x", false, "client id '#'"},
		{"c1/x", "alice", false, R, "home/alice/x", false, "client id with '/'"},
		{"+", "alice", false, R, "devices/c1/x", false, "'+' must not widen devices/%c/#"},
		{"c2/..", "alice", false, R, "devices/c2/x", false, "'/' must not reach another subtree"},
		{"c1", "al/ice", false, R, "users/al/ice/inbox", false, "user name with '/'"},
		{"c1", "#", false, R, "users/x/inbox", false, "user name '#'"},
		{"x#", "", true, R, "public/news", false, "anonymous with unsafe id"},
		{"c1", "a+b", true, R, "public/news", true, "anonymous: the user name is ignored"},
		// '$' cannot be smuggled in through %c at the start of a pattern.
		{"$SYS", "carol", false, R, "$SYS/inbox", false, "%c/inbox must not become $SYS/inbox"},
		{"$SYS", "", true, R, "$SYS/inbox", false, "%c/inbox must not become $SYS/inbox"},
		{"$SYS", "", true, R, "devices/$SYS/x", true, "'$' inside a level is an ordinary character"},
	})
	// Without patterns, identities are never substituted, so no such rule.
	b := mustLoadACL(t, "topic read a/#\nuser u/1\ntopic read b/#\n")
	runACLCases(t, b, []aclCase{
		{"x/+#", "", true, R, "a/b", true, "no patterns: client id not used"},
		{"x/+#", "u/1", false, R, "b/c", true, "no patterns: user name used only as a key"},
	})
}

func TestACLPatternSubstitution(t *testing.T) {
	a := mustLoadACL(t, "pattern read pct/%%c\npattern read mix/%c-%u/x\npattern read lit/%x/%\npattern write %u/%c\n")
	runACLCases(t, a, []aclCase{
		{"c1", "u", false, Read, "pct/%c1", true, "%%c is '%' then the client id"},
		{"c1", "u", false, Read, "pct/%%c", false, "%%c is not literal"},
		{"c1", "u", false, Read, "mix/c1-u/x", true, "two substitutions in one level"},
		{"c1", "u", false, Read, "mix/c1-/x", false, ""},
		{"c1", "u", false, Read, "lit/%x/%", true, "other % sequences are literal"},
		{"c1", "u", false, Write, "u/c1", true, "pattern starting with %u"},
		{"c1", "u", false, Write, "u/c1/more", false, "exact length"},
		{"c1", "u", false, Write, "u/c", false, "prefix of the id"},
		{"c", "u", false, Write, "u/c1", false, "id is a prefix of the level"},
	})
	// topic lines never substitute.
	b := mustLoadACL(t, "user u\ntopic read lit/%c\n")
	runACLCases(t, b, []aclCase{
		{"c1", "u", false, Read, "lit/%c", true, "topic lines are literal"},
		{"c1", "u", false, Read, "lit/c1", false, "topic lines are literal"},
	})
}

func TestACLSubscriptionFilters(t *testing.T) {
	a := mustLoadACL(t, aclFixture)
	const R = Read
	runACLCases(t, a, []aclCase{
		{"anon1", "", true, R, "public/#", true, "same filter"},
		{"anon1", "", true, R, "public/+", true, "'+' under '#'"},
		{"anon1", "", true, R, "public/+/+/x", true, "deep filter under '#'"},
		{"anon1", "", true, R, "public/secret", false, "deny covers it"},
		{"anon1", "", true, R, "public/secret/#", true, "deny public/secret covers only part of it; delivery checks refuse public/secret itself"},
		{"anon1", "", true, R, "#", false, "'#' is wider than public/#"},
		{"anon1", "", true, R, "+/news", false, "'+' first level is wider"},
		{"c1", "alice", false, R, "sensors/+/temp", true, "same filter"},
		{"c1", "alice", false, R, "sensors/kitchen/+", false, "a literal level cannot cover '+'"},
		{"c1", "alice", false, R, "sensors/#", false, "'#' not covered by '+/temp'"},
		{"c1", "alice", false, R, "sensors/+/#", false, "'#' not covered by 'temp'"},
		{"c1", "alice", false, R, "home/alice/#", true, "partial deny does not refuse the subscription"},
		{"c1", "alice", false, R, "home/alice/+", true, "partial deny does not refuse the subscription"},
		{"c1", "alice", false, R, "home/+/door", false, "'+' over other users' homes"},
		{"c1", "alice", false, R, "$SYS/#", true, "$SYS/# grants $SYS subscriptions"},
		{"c1", "alice", false, R, "$SYS/broker/+", true, ""},
		{"c1", "alice", false, R, "+/broker/load", false, "a literal level cannot cover '+'"},
		{"c1", "alice", false, R, "devices/c1/#", true, "pattern devices/%c/#"},
		{"c1", "alice", false, R, "devices/+/#", false, "'+' over other clients"},
		{"c1", "alice", false, R, "devices/c1/firmware", false, "deny pattern covers it"},
		{"c1", "alice", false, R, "broadcast/#", true, ""},
		{"c2", "bob", false, R, "devices/#", true, "bob's devices/#; deny pattern covers only a part"},
	})
	// A rule "topic read #" does not reach $SYS; "$SYS/#" is needed.
	b := mustLoadACL(t, "topic read #\nuser admin\ntopic read #\ntopic read $SYS/#\n")
	runACLCases(t, b, []aclCase{
		{"c", "", true, R, "#", true, ""},
		{"c", "", true, R, "$SYS/broker/uptime", false, "# does not match $SYS topics [MQTT-4.7.2-1]"},
		{"c", "", true, R, "$SYS/#", false, "# does not cover $SYS/#"},
		{"c", "admin", false, R, "$SYS/#", true, ""},
		{"c", "admin", false, R, "$SYS/broker/uptime", true, ""},
	})
}

// TestCoversMatchesWireForTopics checks that, for topic names, ACL matching
// is exactly wire.MatchTopic, over every filter and topic of up to three
// levels built from a small alphabet.
func TestCoversMatchesWireForTopics(t *testing.T) {
	filters := enumerate([]string{"a", "b", "", "$x", "+", "#"}, 3)
	topics := enumerate([]string{"a", "b", "", "$x", "q"}, 4)
	n := 0
	for _, f := range filters {
		if wire.ValidTopicFilter(f) != nil {
			continue
		}
		af := newACLFilter(f, false)
		for _, tp := range topics {
			if wire.ValidTopicName(tp) != nil {
				continue
			}
			n++
			if got, want := af.covers(tp, "", ""), wire.MatchTopic(f, tp); got != want {
				t.Fatalf("covers(%q, topic %q) = %v, wire.MatchTopic = %v", f, tp, got, want)
			}
		}
	}
	t.Logf("%d filter/topic pairs agree", n)
}

// TestCoversSubscriptionsAgainstBruteForce checks subscription coverage
// against its definition: f covers s iff every topic s matches is matched
// by f, over a universe of topics deep enough for the filters used. It is
// sound in every case, and complete except where a subscription "#" or
// "/#" meets an ACL '+' followed by a final '#' ("+/#" covers "#", and
// "+/+/#" covers "/#", because the parent level '#' also matches is the
// empty topic, which no client can use). Like Mosquitto, covers says no
// there, which errs on the side of refusing.
func TestCoversSubscriptionsAgainstBruteForce(t *testing.T) {
	var filters []string
	for _, f := range enumerate([]string{"a", "", "$x", "+", "#"}, 3) {
		if wire.ValidTopicFilter(f) == nil {
			filters = append(filters, f)
		}
	}
	var topics []string
	for _, tp := range enumerate([]string{"a", "", "$x", "q"}, 4) {
		if wire.ValidTopicName(tp) == nil {
			topics = append(topics, tp)
		}
	}
	matches := make(map[string][]bool, len(filters))
	for _, f := range filters {
		m := make([]bool, len(topics))
		for i, tp := range topics {
			m[i] = wire.MatchTopic(f, tp)
		}
		matches[f] = m
	}
	for _, f := range filters {
		af := newACLFilter(f, false)
		for _, s := range filters {
			want := true
			for i := range topics {
				if matches[s][i] && !matches[f][i] {
					want = false
					break
				}
			}
			got := af.covers(s, "", "")
			if got && !want {
				t.Fatalf("UNSOUND: ACL %q covers subscription %q, but %q matches a topic the ACL does not", f, s, s)
			}
			if !got && want && !emptyParentCase(f, s) {
				t.Fatalf("ACL %q does not cover subscription %q, but every topic of %q matches", f, s, s)
			}
		}
	}
}

func emptyParentCase(f, s string) bool {
	return (s == "#" || s == "/#") && strings.HasSuffix(f, "+/#") &&
		strings.Count(f, "/") == strings.Count(s, "/")+1
}

// enumerate returns every string of 1..maxLevels levels from alphabet.
func enumerate(alphabet []string, maxLevels int) []string {
	out := []string{}
	cur := []string{""}
	for depth := 1; depth <= maxLevels; depth++ {
		var next []string
		for _, prefix := range cur {
			for _, l := range alphabet {
				s := l
				if depth > 1 {
					s = prefix + "/" + l
				}
				next = append(next, s)
			}
		}
		out = append(out, next...)
		cur = next
	}
	return out
}

func FuzzCoversTopic(f *testing.F) {
	for _, s := range [][2]string{{"a/#", "a"}, {"+/+", "a/"}, {"#", "$SYS/x"}, {"$SYS/#", "$SYS"}, {"a//b", "a//b"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, filter, topic string) {
		if wire.ValidTopicFilter(filter) != nil || wire.ValidTopicName(topic) != nil {
			return
		}
		af := newACLFilter(filter, false)
		if got, want := af.covers(topic, "", ""), wire.MatchTopic(filter, topic); got != want {
			t.Fatalf("covers(%q, %q) = %v, wire.MatchTopic = %v", filter, topic, got, want)
		}
	})
}

func TestLoadACLSyntax(t *testing.T) {
	a := mustLoadACL(t, "topic read\ntopic\twrite\tt/tab\r\ntopic read my topic/with  spaces \n  # indented comment\n\t\nuser  name with space \ntopic x\n")
	runACLCases(t, a, []aclCase{
		{"c", "", true, Read, "read", true, "\"topic read\" is readwrite on \"read\", as in Mosquitto"},
		{"c", "", true, Write, "read", true, "\"topic read\" is readwrite on \"read\", as in Mosquitto"},
		{"c", "", true, Write, "t/tab", true, "tabs separate words; CRLF ending"},
		{"c", "", true, Read, "t/tab", false, ""},
		{"c", "", true, Read, "my topic/with  spaces", true, "inner spaces are part of the filter"},
		{"c", "name with space", false, Write, "x", true, "user name with spaces"},
	})
}

func TestLoadACLErrors(t *testing.T) {
	cases := []struct {
		name, content string
		line          int
		reason        string
	}{
		{"topic without filter", "# c\ntopic\n", 2, `"topic" without a topic filter`},
		{"pattern without filter", "pattern   \n", 1, `"pattern" without a topic filter`},
		{"bad access", "topic read a\ntopic reed a/b\n", 2, `unknown access "reed"`},
		{"bad filter", "\n\ntopic read a/#/b\n", 3, `invalid topic filter "a/#/b"`},
		{"bad pattern filter", "pattern read dev/%c+\n", 1, "invalid topic filter"},
		{"bad utf8", "topic read a/\xff\n", 1, "invalid topic filter"},
		{"user without name", "user alice\ntopic a\nuser\n", 3, `"user" without a user name`},
		{"unknown keyword", "users alice\n", 1, `unknown keyword "users"`},
		{"capitalised keyword", "Topic read a\n", 1, `unknown keyword "Topic"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeFile(t, "acl", c.content)
			_, err := LoadACL(path)
			var pe *ParseError
			if !errors.As(err, &pe) || pe.File != path || pe.Line != c.line || !strings.Contains(pe.Reason, c.reason) {
				t.Fatalf("got %v, want %s:%d: ...%s...", err, path, c.line, c.reason)
			}
		})
	}
}

func TestAllowedDoesNotAllocate(t *testing.T) {
	a := mustLoadACL(t, aclFixture)
	allocs := testing.AllocsPerRun(200, func() {
		a.Allowed("c1", "alice", false, Write, "users/alice/outbox/c1")
		a.Allowed("c1", "alice", false, Read, "sensors/+/temp")
		a.Allowed("c9", "", true, Read, "devices/c9/firmware")
	})
	if allocs != 0 {
		t.Fatalf("Allowed allocates %v times per run", allocs)
	}
}

func BenchmarkAllowed(b *testing.B) {
	path := filepath.Join(b.TempDir(), "acl")
	if err := os.WriteFile(path, []byte(aclFixture), 0o600); err != nil {
		b.Fatal(err)
	}
	a, err := LoadACL(path)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ name, id, user, topic string }{
		{"user-rule", "c1", "alice", "sensors/kitchen/temp"},
		{"pattern", "c1", "alice", "users/alice/outbox/c1"},
		{"default-deny", "c1", "alice", "nothing/matches/this/topic"},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				a.Allowed(c.id, c.user, false, Write, c.topic)
			}
		})
	}
}
