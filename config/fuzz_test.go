package config

import (
	"os"
	"testing"
)

// FuzzParse: any file content parses or fails with an *Error that names
// the file and a line within it, never a panic; what parses has one entry
// per top-level key, each at a line of the file, in file order, with a
// value, found again by Lookup.
func FuzzParse(f *testing.F) {
	if doc, err := os.ReadFile("../iotd.example.toml"); err == nil {
		f.Add(string(doc))
	}
	for _, doc := range []string{
		"listen = [\"tcp://127.0.0.1:1883\",\n  \"ws://127.0.0.1:8083/mqtt\"]\n\"shards\" = 4\nratio = 0.5 # c\n",
		"a = { b = 1, c = [1, 2] }\nd = 1979-05-27T07:32:00Z\ne = '''\nx\n'''\n",
		"shards = 1\n[tls]\ncert = \"x\"\n", "tls.cert = 1\n", "a = 1\na = 2\n", "a =\n", "\xff = 1\n", "", "\"\\u0061\" = 1\n'a.b' = 2\n",
	} {
		f.Add(doc)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		lines := 1
		for _, c := range []byte(doc) {
			if c == '\n' {
				lines++
			}
		}
		file, err := Parse("fuzz.toml", []byte(doc))
		if err != nil {
			ce, ok := err.(*Error)
			if !ok {
				t.Fatalf("error %T is not an *Error", err)
			}
			if ce.File != "fuzz.toml" || ce.Line < 1 || ce.Line > lines {
				t.Fatalf("error at %s:%d of a %d-line file: %v", ce.File, ce.Line, lines, ce)
			}
			return
		}
		seen := make(map[string]bool)
		prev := 0
		for _, e := range file.Entries {
			if seen[e.Key] {
				t.Fatalf("key %q twice", e.Key)
			}
			seen[e.Key] = true
			if e.Line <= prev || e.Line > lines {
				t.Fatalf("key %q at line %d after line %d, file of %d lines", e.Key, e.Line, prev, lines)
			}
			prev = e.Line
			if e.Value == nil {
				// TOML has no null: the key walk and the decoder disagree.
				t.Fatalf("key %q has no value", e.Key)
			}
			if got, ok := file.Lookup(e.Key); !ok || got.Line != e.Line {
				t.Fatalf("Lookup(%q) = %v %v", e.Key, got, ok)
			}
		}
	})
}
