package auth

import (
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Known-good lines written by Debian's mosquitto_passwd 2.0.11, so the
// format tests never depend on the tool being installed:
//
//	mosquitto_passwd -c -b pw alice 'correct horse battery staple'
//	mosquitto_passwd -H sha512 -b pw bob 'Tr0ub4dor&3'
const (
	knownPBKDF2Line = `alice:$7$101$IXb5aQHs5LzAv8TE$tNZP12k3dfukU3u4Djd6J2+r9C5hY8GM2nPlK5rUyuE7I+sGXcsu7FZdmMF4RcpVhmoYlOO1bESW8ZTHVeGBuA==`
	knownPBKDF2User = "alice"
	knownPBKDF2Pass = "correct horse battery staple"

	knownSHA512Line = `bob:$6$8683+ca+Vk1Xrs35$2vsWZN4DYb2jMwgZ1NxYgnQqdnosmpFFJpGDj2W3n4zK/SyhT15zf/MY+yFNCU6pMgJNgjuXXbhGWJN8QJS52g==`
	knownSHA512User = "bob"
	knownSHA512Pass = "Tr0ub4dor&3"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func mustLoadPasswords(t *testing.T, content string) *Passwords {
	t.Helper()
	p, err := LoadPasswordFile(writeFile(t, "passwd", content))
	if err != nil {
		t.Fatalf("LoadPasswordFile: %v", err)
	}
	return p
}

func TestCheckKnownGoodHashes(t *testing.T) {
	p := mustLoadPasswords(t, "# written by mosquitto_passwd\n\n"+knownPBKDF2Line+"\r\n  "+knownSHA512Line)
	if p.Len() != 2 {
		t.Fatalf("Len = %d, want 2", p.Len())
	}
	cases := []struct {
		user, pass string
		want       bool
	}{
		{knownPBKDF2User, knownPBKDF2Pass, true},
		{knownSHA512User, knownSHA512Pass, true},
		{knownPBKDF2User, knownPBKDF2Pass + " ", false},
		{knownPBKDF2User, "", false},
		{knownSHA512User, knownPBKDF2Pass, false},
		{knownPBKDF2User, knownSHA512Pass, false},
		{"ALICE", knownPBKDF2Pass, false}, // user names are case-sensitive
		{"carol", knownPBKDF2Pass, false},
		{"", "", false},
	}
	for _, c := range cases {
		if got := p.Check(c.user, []byte(c.pass)); got != c.want {
			t.Errorf("Check(%q, %q) = %v, want %v", c.user, c.pass, got, c.want)
		}
	}
	var nilP *Passwords
	if nilP.Check(knownPBKDF2User, []byte(knownPBKDF2Pass)) {
		t.Error("nil *Passwords accepted a login")
	}
}

// TestMosquittoPasswdWritesWeRead generates fixtures with Debian's
// mosquitto_passwd, in both formats, and checks them with Check.
func TestMosquittoPasswdWritesWeRead(t *testing.T) {
	bin, err := exec.LookPath("mosquitto_passwd")
	if err != nil {
		t.Skip("mosquitto_passwd not installed (apt-get install mosquitto); the embedded known-good lines still cover both formats")
	}
	users := map[string]string{
		"plain":   "secret",
		"spaces":  "pass word with spaces",
		"unicode": "pässwörd-日本語",
		"symbols": `$7$:#!"'\`,
		"long":    strings.Repeat("x", 1000),
	}
	for _, hashType := range []string{"sha512-pbkdf2", "sha512"} {
		t.Run(hashType, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "passwd")
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			for u, pw := range users {
				out, err := exec.Command(bin, "-H", hashType, "-b", path, u, pw).CombinedOutput()
				if err != nil {
					t.Fatalf("mosquitto_passwd: %v: %s", err, out)
				}
			}
			raw, _ := os.ReadFile(path)
			prefix := map[string]string{"sha512-pbkdf2": ":$7$101$", "sha512": ":$6$"}[hashType]
			if strings.Count(string(raw), prefix) != len(users) {
				t.Fatalf("file does not hold %d %q hashes:\n%s", len(users), prefix, raw)
			}
			p, err := LoadPasswordFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for u, pw := range users {
				if !p.Check(u, []byte(pw)) {
					t.Errorf("Check(%q, right password) = false", u)
				}
				if p.Check(u, []byte(pw+"x")) {
					t.Errorf("Check(%q, wrong password) = true", u)
				}
			}
		})
	}
}

var pbkdf2HashRE = regexp.MustCompile(`^\$7\$101\$([A-Za-z0-9+/]{16})\$([A-Za-z0-9+/]{86}==)$`)

func TestHashPasswordFormat(t *testing.T) {
	h1, err := HashPassword([]byte("hunter2"))
	if err != nil {
		t.Fatal(err)
	}
	m := pbkdf2HashRE.FindStringSubmatch(h1)
	if m == nil {
		t.Fatalf("HashPassword = %q, want $7$101$<16 base64 chars>$<88 base64 chars>", h1)
	}
	salt, _ := base64.StdEncoding.DecodeString(m[1])
	hash, _ := base64.StdEncoding.DecodeString(m[2])
	if len(salt) != 12 || len(hash) != 64 {
		t.Fatalf("salt %d bytes, hash %d bytes; want 12 and 64", len(salt), len(hash))
	}
	h2, _ := HashPassword([]byte("hunter2"))
	if h1 == h2 {
		t.Fatal("two hashes of one password are equal: salt is not random")
	}
	p := mustLoadPasswords(t, "u1:"+h1+"\nu2:"+h2+"\n")
	if !p.Check("u1", []byte("hunter2")) || !p.Check("u2", []byte("hunter2")) {
		t.Fatal("our own hash does not verify")
	}
	if p.Check("u1", []byte("hunter3")) {
		t.Fatal("wrong password verified")
	}
	// Binary passwords are hashed whole (MQTT passwords are binary data).
	hb, _ := HashPassword([]byte("a\x00b"))
	pb := mustLoadPasswords(t, "b:"+hb+"\n")
	if !pb.Check("b", []byte("a\x00b")) || pb.Check("b", []byte("a")) {
		t.Fatal("password with a NUL byte is not hashed whole")
	}
}

func TestLoadPasswordFileErrors(t *testing.T) {
	good := knownPBKDF2Line + "\n"
	hash7 := strings.TrimPrefix(knownPBKDF2Line, "alice:")
	hash6 := strings.TrimPrefix(knownSHA512Line, "bob:")
	parts7 := strings.Split(hash7, "$") // "", "7", "101", salt, hash
	cases := []struct {
		name, content string
		line          int
		reason        string
	}{
		{"no colon", good + "# ok\n\njustauser\n", 4, "no ':'"},
		{"empty user", good + " :" + hash7 + "\n", 2, "empty user name"},
		{"empty hash", good + "carol:\n", 2, "empty password hash"},
		{"plaintext", good + "carol:secret\n", 2, "not hashed"},
		{"argon2", good + "carol:$argon2id$v=19$m=47104,t=1,p=1$c2FsdA$aGFzaA\n", 2, "unsupported hash type $argon2id$"},
		{"unknown type", good + "carol:$5$abc$def\n", 2, "unsupported hash type $5$"},
		{"extra colon", good + "carol:" + hash7 + ":x\n", 2, "more than one ':'"},
		{"duplicate", good + "# again\n" + good, 3, `"alice" is already defined on line 1`},
		{"7 missing field", "carol:$7$101$" + parts7[3] + "\n", 1, "malformed $7$"},
		{"6 extra field", "carol:" + hash6 + "$x\n", 1, "malformed $6$"},
		{"iterations zero", "carol:$7$0$" + parts7[3] + "$" + parts7[4] + "\n", 1, "at least 1"},
		{"iterations text", "carol:$7$1e3$" + parts7[3] + "$" + parts7[4] + "\n", 1, "not a decimal number"},
		{"iterations signed", "carol:$7$+101$" + parts7[3] + "$" + parts7[4] + "\n", 1, "not a decimal number"},
		{"iterations huge", "carol:$7$99999999999$" + parts7[3] + "$" + parts7[4] + "\n", 1, "above the maximum"},
		{"salt base64", "carol:$7$101$!!!!$" + parts7[4] + "\n", 1, "salt is not valid base64"},
		{"salt length", "carol:$7$101$c2FsdA==$" + parts7[4] + "\n", 1, "salt is 4 bytes"},
		{"hash base64", "carol:$7$101$" + parts7[3] + "$%%%\n", 1, "hash is not valid base64"},
		{"hash length", "carol:$7$101$" + parts7[3] + "$aGFzaA==\n", 1, "hash is 4 bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeFile(t, "passwd", c.content)
			p, err := LoadPasswordFile(path)
			if err == nil {
				t.Fatalf("loaded %d users, want an error", p.Len())
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T %v is not a *ParseError", err, err)
			}
			if pe.File != path || pe.Line != c.line || !strings.Contains(pe.Reason, c.reason) {
				t.Fatalf("got %q, want %s:%d: ...%s...", err, path, c.line, c.reason)
			}
			if !strings.HasPrefix(err.Error(), path+":") {
				t.Fatalf("error %q does not start with the file name", err)
			}
			// The hash must never be echoed into logs.
			if strings.Contains(err.Error(), parts7[4][:20]) {
				t.Fatalf("error %q quotes the hash", err)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nope")
		_, err := LoadPasswordFile(path)
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
			t.Fatalf("got %v, want a not-exist error naming %s", err, path)
		}
	})
	t.Run("salt of 64 bytes", func(t *testing.T) {
		// Mosquitto also accepts a 64-byte salt (its HASH_LEN).
		c := credential{kind: kindSHA512PBKDF2, iterations: 5, salt: make([]byte, 64)}
		h, _ := c.derive([]byte("pw"))
		p := mustLoadPasswords(t, "u:"+formatHash(5, c.salt, h)+"\n")
		if !p.Check("u", []byte("pw")) {
			t.Fatal("64-byte salt not accepted")
		}
	})
}

// TestCheckUsesConstantTimeCompare is a review aid more than a test: the
// comparison itself is crypto/subtle.ConstantTimeCompare in
// credential.verify, and an unknown user is verified against the decoy so
// it costs the same PBKDF2 work. Here we check the decoy is a real $7$
// credential with the default parameters, so that stays true.
func TestCheckUsesConstantTimeCompare(t *testing.T) {
	if decoy.kind != kindSHA512PBKDF2 || decoy.iterations != DefaultIterations ||
		len(decoy.salt) != SaltLen || len(decoy.hash) != hashLen {
		t.Fatalf("decoy credential %+v does not match the default $7$ parameters", decoy)
	}
	if decoy.verify([]byte("")) {
		t.Fatal("the decoy accepts the empty password")
	}
}

func BenchmarkCheck(b *testing.B) {
	dir := b.TempDir()
	path := filepath.Join(dir, "passwd")
	os.WriteFile(path, []byte(knownPBKDF2Line+"\n"+knownSHA512Line+"\n"), 0o600)
	p, err := LoadPasswordFile(path)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ name, user, pass string }{
		{"pbkdf2/right", knownPBKDF2User, knownPBKDF2Pass},
		{"pbkdf2/wrong", knownPBKDF2User, "wrong"},
		{"unknown-user", "mallory", "wrong"},
		{"sha512/right", knownSHA512User, knownSHA512Pass},
	} {
		b.Run(c.name, func(b *testing.B) {
			pw := []byte(c.pass)
			for b.Loop() {
				p.Check(c.user, pw)
			}
		})
	}
}
