package wire_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"iotd/wire"
)

var long65535 = strings.Repeat("a", wire.MaxTopicLength)

func TestValidTopicName(t *testing.T) {
	for _, tc := range []struct {
		topic string
		err   error
	}{
		{"a", nil},
		{"/", nil}, // two empty levels
		{"a/b", nil},
		{"a/", nil}, // leading and trailing '/' make distinct topics
		{"/a", nil},
		{"sport/tennis/player1", nil},
		{"$SYS/broker/uptime", nil}, // '$' is an ordinary character in a name
		{"a b", nil},                // spaces are allowed
		{"\uFEFFa", nil},            // [MQTT-1.5.3-3] U+FEFF kept
		{"ACCOUNTS", nil},
		{"caf\u00e9", nil},                        // NFC
		{"cafe\u0301", nil},                       // NFD
		{"日本/😀", nil},                             // 3- and 4-byte sequences
		{long65535, nil},                          // [MQTT-4.7.3-3] exactly the limit
		{"", wire.ErrTopicEmpty},                  // [MQTT-4.7.3-1]
		{long65535 + "a", wire.ErrTopicTooLong},   // [MQTT-4.7.3-3]
		{"+", wire.ErrTopicWildcard},              // [MQTT-4.7.1-1]
		{"#", wire.ErrTopicWildcard},              // [MQTT-4.7.1-1]
		{"a/+", wire.ErrTopicWildcard},            // [MQTT-3.3.2-2]
		{"a/#", wire.ErrTopicWildcard},            // [MQTT-3.3.2-2]
		{"a#b", wire.ErrTopicWildcard},            // [MQTT-4.7.1-1] even inside a level
		{"a\x00b", wire.ErrNullChar},              // [MQTT-4.7.3-2]
		{"\x00", wire.ErrNullChar},                // [MQTT-1.5.3-2]
		{"\xed\xa0\x80", wire.ErrInvalidUTF8},     // [MQTT-1.5.3-1] surrogate U+D800
		{"a/\xed\xbf\xbf", wire.ErrInvalidUTF8},   // [MQTT-1.5.3-1] surrogate U+DFFF
		{"\xc0\x80", wire.ErrInvalidUTF8},         // [MQTT-1.5.3-1] overlong U+0000
		{"\xe0\x80\xaf", wire.ErrInvalidUTF8},     // overlong '/'
		{"\xf0\x80\x80\xaf", wire.ErrInvalidUTF8}, // overlong '/'
		{"\xf4\x90\x80\x80", wire.ErrInvalidUTF8}, // above U+10FFFF
		{"\xff", wire.ErrInvalidUTF8},
		{"a\xe2\x82", wire.ErrInvalidUTF8}, // truncated sequence
		{"\x80", wire.ErrInvalidUTF8},      // lone continuation byte
	} {
		if err := wire.ValidTopicName(tc.topic); !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("ValidTopicName(%q) = %v, want %v", trunc(tc.topic), err, tc.err)
		}
		if err := wire.ValidTopicName([]byte(tc.topic)); !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("ValidTopicName([]byte %q) = %v, want %v", trunc(tc.topic), err, tc.err)
		}
	}
}

func TestValidTopicFilter(t *testing.T) {
	for _, tc := range []struct {
		filter string
		err    error
	}{
		{"#", nil},   // [MQTT-4.7.1-2] alone
		{"a/#", nil}, // [MQTT-4.7.1-2] after '/'
		{"/#", nil},
		{"sport/tennis/player1/#", nil},
		{"+", nil}, // [MQTT-4.7.1-3]
		{"+/+", nil},
		{"/+", nil},
		{"+/", nil},
		{"+/+/#", nil}, // [MQTT-4.7.1-3] with '#'
		{"+/tennis/#", nil},
		{"sport/+/player1", nil},
		{"a//b", nil},
		{"$SYS/#", nil},
		{"\uFEFFa/+", nil},                      // [MQTT-1.5.3-3]
		{long65535, nil},                        // [MQTT-4.7.3-3]
		{long65535[:65533] + "/#", nil},         // [MQTT-4.7.3-3]
		{"", wire.ErrTopicEmpty},                // [MQTT-4.7.3-1]
		{long65535 + "#", wire.ErrTopicTooLong}, // [MQTT-4.7.3-3]
		{"a#", wire.ErrTopicFilter},             // [MQTT-4.7.1-2]
		{"sport/tennis#", wire.ErrTopicFilter},  // [MQTT-4.7.1-2]
		{"a/#/b", wire.ErrTopicFilter},          // [MQTT-4.7.1-2] not last
		{"#/", wire.ErrTopicFilter},             // [MQTT-4.7.1-2]
		{"##", wire.ErrTopicFilter},             // [MQTT-4.7.1-2]
		{"#a", wire.ErrTopicFilter},             // [MQTT-4.7.1-2]
		{"a+", wire.ErrTopicFilter},             // [MQTT-4.7.1-3]
		{"+a", wire.ErrTopicFilter},             // [MQTT-4.7.1-3]
		{"a/+b", wire.ErrTopicFilter},           // [MQTT-4.7.1-3]
		{"a+/b", wire.ErrTopicFilter},           // [MQTT-4.7.1-3]
		{"sport+", wire.ErrTopicFilter},         // [MQTT-4.7.1-3]
		{"++", wire.ErrTopicFilter},             // [MQTT-4.7.1-3]
		{"+#", wire.ErrTopicFilter},             // [MQTT-4.7.1-2]
		{"a/\x00", wire.ErrNullChar},            // [MQTT-4.7.3-2]
		{"\xed\xa0\x80/#", wire.ErrInvalidUTF8}, // [MQTT-1.5.3-1]
		{"\xff", wire.ErrInvalidUTF8},           // [MQTT-1.5.3-1]
	} {
		if err := wire.ValidTopicFilter(tc.filter); !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("ValidTopicFilter(%q) = %v, want %v", trunc(tc.filter), err, tc.err)
		}
		if err := wire.ValidTopicFilter([]byte(tc.filter)); !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("ValidTopicFilter([]byte %q) = %v, want %v", trunc(tc.filter), err, tc.err)
		}
	}
}

func trunc(s string) string {
	if len(s) > 20 {
		return s[:20] + "..."
	}
	return s
}

func TestMatchTopic(t *testing.T) {
	for _, tc := range []struct {
		filter, topic string
		want          bool
	}{
		// Section 4.7.1.2 examples.
		{"sport/tennis/player1/#", "sport/tennis/player1", true},
		{"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
		{"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
		{"sport/#", "sport", true}, // '#' also matches the parent level
		{"sport/tennis/#", "sport/tennis", true},
		// Section 4.7.1.3 examples.
		{"sport/tennis/+", "sport/tennis/player1", true},
		{"sport/tennis/+", "sport/tennis/player2", true},
		{"sport/tennis/+", "sport/tennis/player1/ranking", false},
		{"sport/+", "sport", false},
		{"sport/+", "sport/", true},
		{"+/+", "/finance", true},
		{"/+", "/finance", true},
		{"+", "/finance", false},
		{"+/tennis/#", "sport/tennis/player1", true},
		// [MQTT-4.7.2-1]: wildcards at the start never match '$' topics.
		{"#", "$SYS/monitor/Clients", false},
		{"#", "$SYS", false},
		{"#", "$", false},
		{"+/monitor/Clients", "$SYS/monitor/Clients", false},
		{"+", "$SYS", false},
		{"+/#", "$SYS/x", false},
		{"$SYS/#", "$SYS/monitor/Clients", true},
		{"$SYS/#", "$SYS", true},
		{"$SYS/monitor/+", "$SYS/monitor/Clients", true},
		{"$SYS/+/Clients", "$SYS/monitor/Clients", true},
		{"a/#", "a/$b", true}, // only the first character counts
		// [MQTT-4.7.3-4]: exact, case-sensitive, no normalisation.
		{"ACCOUNTS", "Accounts", false},
		{"Accounts", "Accounts", true},
		{"caf\u00e9", "cafe\u0301", false}, // NFC filter, NFD topic
		{"cafe\u0301", "caf\u00e9", false},
		{"caf\u00e9", "caf\u00e9", true},
		{"\uFEFFa", "a", false}, // [MQTT-1.5.3-3]
		{"\uFEFFa", "\uFEFFa", true},
		{"a", "\uFEFFa", false},
		{"a b", "a b", true},
		{"a b", "ab", false},
		// Levels and separators.
		{"#", "a", true},
		{"#", "/", true},
		{"#", "a/b/c", true},
		{"/#", "/", true},
		{"/#", "/a/b", true},
		{"a/#", "a", true},
		{"a/#", "a/", true},
		{"a/#", "ab", false},
		{"a/#", "b/a", false},
		{"a/b", "a/b", true},
		{"a/b", "a/b/", false},
		{"a/b/", "a/b", false},
		{"/a", "a", false},
		{"a/b/c", "a/b", false},
		{"a/b", "a/b/c", false},
		{"+", "a", true},
		{"+", "", true},
		{"+/+", "a", false},
		{"+/+", "a/b/c", false},
		{"a/+/c", "a//c", true},
		{"a/+/c", "a/c", false},
		{"+/+/+", "//", true},
		{"a//b", "a//b", true},
		{"a//b", "a/b", false},
		{"+/b", "$x/b", false},
		{"$x/b", "$x/b", true},
	} {
		if got := wire.MatchTopic(tc.filter, tc.topic); got != tc.want {
			t.Errorf("MatchTopic(%q, %q) = %v, want %v", tc.filter, tc.topic, got, tc.want)
		}
		if got := wire.MatchTopic(tc.filter, []byte(tc.topic)); got != tc.want {
			t.Errorf("MatchTopic(%q, []byte %q) = %v, want %v", tc.filter, tc.topic, got, tc.want)
		}
		if got := refMatch(tc.filter, tc.topic); got != tc.want {
			t.Errorf("reference matcher disagrees with the table on (%q, %q)", tc.filter, tc.topic)
		}
	}
}

// refMatch is a slow, obviously-correct matcher: split both on '/' and
// compare level by level.
func refMatch(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	f, tl := strings.Split(filter, "/"), strings.Split(topic, "/")
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

// allStrings returns every string over alphabet of length 1..n.
func allStrings(alphabet string, n int) []string {
	out, level := []string{}, []string{""}
	for range n {
		var next []string
		for _, p := range level {
			for _, c := range alphabet {
				next = append(next, p+string(c))
			}
		}
		out = append(out, next...)
		level = next
	}
	return out
}

// TestMatchTopicExhaustive compares MatchTopic with refMatch on every valid
// filter and topic name up to 5 characters over a/b/'/'/+/#/$, and checks
// the validators against a level-splitting reference.
func TestMatchTopicExhaustive(t *testing.T) {
	all := allStrings("ab/+#$", 5)
	var filters, topics []string
	for _, s := range all {
		levelsOK := true
		for i, l := range strings.Split(s, "/") {
			last := i == strings.Count(s, "/")
			if strings.ContainsAny(l, "+#") && l != "+" && !(l == "#" && last) {
				levelsOK = false
			}
		}
		if err := wire.ValidTopicFilter(s); (err == nil) != levelsOK {
			t.Fatalf("ValidTopicFilter(%q) = %v, reference says valid=%v", s, err, levelsOK)
		}
		if levelsOK {
			filters = append(filters, s)
		}
		nameOK := !strings.ContainsAny(s, "+#")
		if err := wire.ValidTopicName(s); (err == nil) != nameOK {
			t.Fatalf("ValidTopicName(%q) = %v, reference says valid=%v", s, err, nameOK)
		}
		if nameOK {
			topics = append(topics, s)
		}
	}
	for _, f := range filters {
		for _, tp := range topics {
			if got, want := wire.MatchTopic(f, tp), refMatch(f, tp); got != want {
				t.Fatalf("MatchTopic(%q, %q) = %v, reference %v", f, tp, got, want)
			}
		}
	}
}

// TestValidUTF8StringExhaustive compares the hand-written validator with
// unicode/utf8 (which also rejects surrogates) on every 1- and 2-byte input
// and every 3-byte input with a 3-byte lead. [MQTT-1.5.3-1] [MQTT-1.5.3-2]
func TestValidUTF8StringExhaustive(t *testing.T) {
	check := func(b []byte) {
		want := utf8.Valid(b) && !strings.ContainsRune(string(b), 0)
		if err := wire.ValidUTF8String(b); (err == nil) != want {
			t.Fatalf("ValidUTF8String(% x) = %v, want valid=%v", b, err, want)
		}
	}
	b := make([]byte, 3)
	for i := range 256 {
		check([]byte{byte(i)})
		for j := range 256 {
			check([]byte{byte(i), byte(j)})
		}
	}
	for lead := 0xE0; lead <= 0xEF; lead++ {
		for j := range 256 {
			for k := range 256 {
				b[0], b[1], b[2] = byte(lead), byte(j), byte(k)
				check(b)
			}
		}
	}
	for lead := 0xF0; lead <= 0xF5; lead++ {
		for j := 0x70; j < 0xC8; j++ {
			for k := 0x70; k < 0xC8; k += 7 {
				check([]byte{byte(lead), byte(j), byte(k), 0x80})
				check([]byte{byte(lead), byte(j), 0x80, byte(k)})
			}
		}
	}
	if err := wire.ValidUTF8String("a\x00"); !errors.Is(err, wire.ErrNullChar) {
		t.Errorf("U+0000: %v, want ErrNullChar", err) // [MQTT-1.5.3-2]
	}
	if err := wire.ValidUTF8String("\xed\xa0\x80"); !errors.Is(err, wire.ErrInvalidUTF8) {
		t.Errorf("surrogate: %v, want ErrInvalidUTF8", err) // [MQTT-1.5.3-1]
	}
}

type topicString string

func TestTopicFuncsGenericAndAllocFree(t *testing.T) {
	name := []byte("sport/tennis/player1")
	if n := testing.AllocsPerRun(100, func() {
		_ = wire.ValidTopicName(name)
		_ = wire.ValidTopicFilter(name)
		_ = wire.MatchTopic("sport/+/player1", name)
		_ = wire.MatchTopic("sport/#", topicString("sport"))
	}); n != 0 {
		t.Errorf("topic functions allocate %v times per run", n)
	}
	if !wire.MatchTopic("sport/#", topicString("sport")) || wire.ValidTopicName(topicString("a/+")) == nil {
		t.Error("named string type gives different results")
	}
}

// TestValidatorsWordBoundaries plants each special byte at every position
// of 8-byte-word-sized inputs, where the word-at-a-time fast path hands
// over to the byte loop.
func TestValidatorsWordBoundaries(t *testing.T) {
	for size := 7; size <= 25; size++ {
		for pos := 0; pos < size; pos++ {
			for _, special := range []string{"\x00", "+", "#", "\x80", "\xff", "é", "\xed\xa0\x80", "/"} {
				s := strings.Repeat("a", pos) + special + strings.Repeat("b", size-pos)
				wantUTF8 := utf8.ValidString(s) && !strings.Contains(s, "\x00")
				if err := wire.ValidUTF8String(s); (err == nil) != wantUTF8 {
					t.Fatalf("ValidUTF8String(%q) = %v", s, err)
				}
				wantName := wantUTF8 && !strings.ContainsAny(s, "+#")
				if err := wire.ValidTopicName([]byte(s)); (err == nil) != wantName {
					t.Fatalf("ValidTopicName(%q) = %v", s, err)
				}
			}
		}
	}
}
