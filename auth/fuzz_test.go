package auth

import (
	"strings"
	"testing"
)

// FuzzParsePasswords: any file content either loads or fails with a
// *ParseError; it never panics, and what loads can be checked.
func FuzzParsePasswords(f *testing.F) {
	f.Add(knownPBKDF2Line + "\n" + knownSHA512Line + "\n")
	f.Add("# c\n\nu:$7$1$AAAAAAAAAAAAAAAA$" + strings.Repeat("A", 86) + "==\r\n")
	f.Add("u:$6$$\nv:plain\n:x\n")
	f.Fuzz(func(t *testing.T, content string) {
		p, err := parsePasswords("fuzz", strings.NewReader(content))
		if err != nil {
			if _, ok := err.(*ParseError); !ok {
				t.Fatalf("error %T is not a *ParseError", err)
			}
			return
		}
		for u, c := range p.users {
			if len(c.hash) != hashLen || (c.kind == kindSHA512PBKDF2 && c.iterations > 1000) {
				// Keep the fuzzer fast: do not run huge iteration counts.
				continue
			}
			p.Check(u, []byte("x"))
		}
	})
}

// FuzzParseACL: any file content either loads or fails with a
// *ParseError, and Allowed never panics on what loads.
func FuzzParseACL(f *testing.F) {
	f.Add(aclFixture)
	f.Add("topic read\npattern %c%u%%/+/#\nuser \t\ntopic deny $SYS/#\n")
	f.Add("pattern write %u/%c/#\nuser a b\ntopic a//b\n")
	f.Fuzz(func(t *testing.T, content string) {
		a, err := parseACL("fuzz", strings.NewReader(content))
		if err != nil {
			if _, ok := err.(*ParseError); !ok {
				t.Fatalf("error %T is not a *ParseError", err)
			}
			return
		}
		for _, topic := range []string{"a", "a/b", "$SYS/x", "#", "+/+", "a//b", "%c"} {
			for _, anon := range []bool{true, false} {
				a.Allowed("c", "a b", anon, Read, topic)
				a.Allowed("c%u", "u", anon, Write, topic)
			}
		}
	})
}
