package auth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func TestStoreAuthenticateAndAuthorize(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "passwd")
	acl := filepath.Join(dir, "acl")
	os.WriteFile(pw, []byte(knownPBKDF2Line+"\n"+knownSHA512Line+"\n"), 0o600)
	os.WriteFile(acl, []byte(aclFixture), 0o600)
	s, err := NewStore(pw, acl)
	if err != nil {
		t.Fatal(err)
	}
	if !s.HasPasswordFile() || !s.HasACL() {
		t.Fatal("Has* = false with both files configured")
	}
	if !s.Authenticate(knownPBKDF2User, []byte(knownPBKDF2Pass), true) {
		t.Error("alice with her password refused")
	}
	if s.Authenticate(knownPBKDF2User, []byte("nope"), true) {
		t.Error("wrong password accepted")
	}
	if s.Authenticate(knownPBKDF2User, []byte(knownPBKDF2Pass), false) {
		t.Error("hasUser=false authenticated: anonymous is the caller's decision")
	}
	if !s.Authorize("c1", "alice", false, Read, "home/alice/x") || s.Authorize("c1", "alice", false, Read, "home/bob/x") {
		t.Error("Authorize does not follow the ACL")
	}
}

func TestStoreWithoutFiles(t *testing.T) {
	s, err := NewStore("", "")
	if err != nil {
		t.Fatal(err)
	}
	if s.HasPasswordFile() || s.HasACL() {
		t.Fatal("Has* = true with no files")
	}
	if s.Authenticate("alice", []byte("x"), true) {
		t.Error("no password file: Authenticate must be false")
	}
	if !s.Authorize("c", "", true, Write, "any/topic") || !s.Authorize("c", "u", false, Read, "$SYS/#") {
		t.Error("no ACL file: everything must be allowed")
	}
	if err := s.Reload(); err != nil {
		t.Errorf("Reload with no files: %v", err)
	}
}

func TestNewStoreErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "passwd")
	acl := filepath.Join(dir, "acl")
	os.WriteFile(pw, []byte(knownPBKDF2Line+"\n"), 0o600)
	os.WriteFile(acl, []byte("topic read a\nbogus line\n"), 0o600)
	_, err := NewStore(pw, acl)
	if err == nil || !strings.Contains(err.Error(), acl+":2: unknown keyword") {
		t.Fatalf("got %v, want %s:2: unknown keyword...", err, acl)
	}
	_, err = NewStore(filepath.Join(dir, "missing"), "")
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing password file: got %v", err)
	}
}

func TestStoreReload(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "passwd")
	acl := filepath.Join(dir, "acl")
	os.WriteFile(pw, []byte(knownPBKDF2Line+"\n"), 0o600)
	os.WriteFile(acl, []byte("user alice\ntopic read old/#\n"), 0o600)
	s, err := NewStore(pw, acl)
	if err != nil {
		t.Fatal(err)
	}
	check := func(when string, oldTopic, newTopic, bob bool) {
		t.Helper()
		if got := s.Authorize("c", "alice", false, Read, "old/x"); got != oldTopic {
			t.Errorf("%s: old/x allowed = %v, want %v", when, got, oldTopic)
		}
		if got := s.Authorize("c", "alice", false, Read, "new/x"); got != newTopic {
			t.Errorf("%s: new/x allowed = %v, want %v", when, got, newTopic)
		}
		if got := s.Authenticate("bob", []byte(knownSHA512Pass), true); got != bob {
			t.Errorf("%s: bob authenticates = %v, want %v", when, got, bob)
		}
		if !s.Authenticate(knownPBKDF2User, []byte(knownPBKDF2Pass), true) {
			t.Errorf("%s: alice no longer authenticates", when)
		}
	}
	check("initial", true, false, false)

	// A good reload swaps both files.
	os.WriteFile(acl, []byte("user alice\ntopic read new/#\n"), 0o600)
	if err := SetPassword(pw, "bob", []byte(knownSHA512Pass)); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	check("after good reload", false, true, true)

	// A bad ACL keeps the old rules, and the old passwords too, even though
	// the password file changed and is fine.
	os.WriteFile(acl, []byte("user alice\ntopic read other/#\ntopic reed x\n"), 0o600)
	if err := SetPassword(pw, "bob", []byte("changed")); err != nil {
		t.Fatal(err)
	}
	err = s.Reload()
	var pe *ParseError
	if !errors.As(err, &pe) || pe.File != acl || pe.Line != 3 || !strings.Contains(err.Error(), "keeping the previous rules") {
		t.Fatalf("bad ACL reload: got %v, want a ParseError for %s:3", err, acl)
	}
	check("after bad ACL", false, true, true)

	// A bad password file does the same.
	os.WriteFile(acl, []byte("user alice\ntopic read old/#\n"), 0o600)
	os.WriteFile(pw, []byte(knownPBKDF2Line+"\nbob:plaintext\n"), 0o600)
	err = s.Reload()
	if !errors.As(err, &pe) || pe.File != pw || pe.Line != 2 {
		t.Fatalf("bad password file reload: got %v, want a ParseError for %s:2", err, pw)
	}
	check("after bad password file", false, true, true)

	// A deleted file is an error too, not "no rules".
	os.WriteFile(pw, []byte(knownPBKDF2Line+"\n"+knownSHA512Line+"\n"), 0o600)
	os.Remove(acl)
	if err := s.Reload(); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("reload with the ACL file gone: got %v", err)
	}
	check("after ACL removed", false, true, true)
}

// TestStoreConcurrentReload runs readers against reloads under the race
// detector; every read must see a complete rule set (one of the two).
func TestStoreConcurrentReload(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "passwd")
	acl := filepath.Join(dir, "acl")
	os.WriteFile(pw, []byte(knownPBKDF2Line+"\n"), 0o600)
	aclA := "user alice\ntopic read a/#\n"
	aclB := "user alice\ntopic read b/#\n"
	os.WriteFile(acl, []byte(aclA), 0o600)
	s, err := NewStore(pw, acl)
	if err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var bad atomic.Int64
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				snap := s.cur.Load()
				a := snap.acl.Allowed("c", "alice", false, Read, "a/x")
				b := snap.acl.Allowed("c", "alice", false, Read, "b/x")
				if a == b { // one snapshot grants exactly one of them
					bad.Add(1)
				}
				if !s.Authenticate(knownPBKDF2User, []byte(knownPBKDF2Pass), true) {
					bad.Add(1)
				}
				s.Authorize("c", "alice", false, Read, "a/x")
			}
		})
	}
	for i := range 30 {
		content := aclA
		if i%2 == 0 {
			content = aclB
		}
		tmp := acl + ".new"
		if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, acl); err != nil {
			t.Fatal(err)
		}
		if err := s.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d reads saw an incomplete rule set", bad.Load())
	}
}
