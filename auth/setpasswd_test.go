package auth

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func checkMode0600(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %v, want 0600", path, fi.Mode().Perm())
	}
}

func checkNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Fatalf("temporary file %s left behind", e.Name())
		}
	}
}

func TestSetPasswordCreatesFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "passwd")
	if err := SetPassword(path, "alice", []byte("pw-a")); err != nil {
		t.Fatal(err)
	}
	checkMode0600(t, path)
	got := readString(t, path)
	if !strings.HasPrefix(got, "alice:$7$101$") || strings.Count(got, "\n") != 1 || !strings.HasSuffix(got, "\n") {
		t.Fatalf("new file = %q, want one alice:$7$101$... line", got)
	}
	if err := SetPassword(path, "bob", []byte("pw-b")); err != nil {
		t.Fatal(err)
	}
	p, err := LoadPasswordFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Check("alice", []byte("pw-a")) || !p.Check("bob", []byte("pw-b")) || p.Len() != 2 {
		t.Fatalf("after adding bob: file %q does not check both users", readString(t, path))
	}
	checkNoTempFiles(t, dir)
}

func TestSetPasswordUpdatesInPlaceKeepingOtherLines(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "passwd")
	before := "# iotd users\r\n" +
		knownPBKDF2Line + "\r\n" +
		"\n" +
		"  # indented comment: keep me\n" +
		"carol:$7$101$OLDOLDOLDOLDOLDO$" + strings.Repeat("A", 86) + "==\n" +
		knownSHA512Line // no final newline
	if err := os.WriteFile(path, []byte(before), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := SetPassword(path, "carol", []byte("new carol")); err != nil {
		t.Fatal(err)
	}
	after := readString(t, path)
	bl, al := strings.SplitAfter(before, "\n"), strings.SplitAfter(after, "\n")
	if len(al) != len(bl) {
		t.Fatalf("line count changed:\n%q\n->\n%q", before, after)
	}
	for i := range bl {
		if i == 4 {
			if !strings.HasPrefix(al[i], "carol:$7$101$") || al[i] == bl[i] || !strings.HasSuffix(al[i], "\n") {
				t.Fatalf("carol's line not replaced in place: %q", al[i])
			}
			continue
		}
		if al[i] != bl[i] {
			t.Fatalf("line %d changed: %q -> %q", i+1, bl[i], al[i])
		}
	}
	checkMode0600(t, path)
	p, err := LoadPasswordFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Check("carol", []byte("new carol")) || !p.Check(knownPBKDF2User, []byte(knownPBKDF2Pass)) ||
		!p.Check(knownSHA512User, []byte(knownSHA512Pass)) {
		t.Fatal("users do not check after the update")
	}

	// Appending after a last line without newline adds one first.
	if err := SetPassword(path, "dave", []byte("d")); err != nil {
		t.Fatal(err)
	}
	got := readString(t, path)
	if !strings.Contains(got, knownSHA512Line+"\ndave:$7$") || !strings.HasSuffix(got, "\n") {
		t.Fatalf("append after unterminated line: %q", got)
	}
	checkNoTempFiles(t, dir)
}

func TestSetPasswordReplacesDuplicatesAndUnhashedLines(t *testing.T) {
	path := writeFile(t, "passwd", "erin:plaintext\n"+knownPBKDF2Line+"\nerin:$6$bad\n")
	if err := SetPassword(path, "erin", []byte("hashed now")); err != nil {
		t.Fatal(err)
	}
	got := readString(t, path)
	if strings.Count(got, "erin:") != 1 || !strings.HasPrefix(got, "erin:$7$") {
		t.Fatalf("erin's lines not collapsed into one hashed line: %q", got)
	}
	p, err := LoadPasswordFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Check("erin", []byte("hashed now")) {
		t.Fatal("erin does not check")
	}
}

func TestSetPasswordRefusesBrokenFile(t *testing.T) {
	before := knownPBKDF2Line + "\n# c\nmallory:notahash\n"
	path := writeFile(t, "passwd", before)
	err := SetPassword(path, "bob", []byte("x"))
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Line != 3 || pe.File != path || !strings.Contains(pe.Reason, "not hashed") {
		t.Fatalf("got %v, want a ParseError for %s:3", err, path)
	}
	if readString(t, path) != before {
		t.Fatal("file changed despite the error")
	}
}

func TestSetPasswordRejectsBadInput(t *testing.T) {
	path := filepath.Join(t.TempDir(), "passwd")
	for _, user := range []string{"", "a:b", "tab\there", "nl\n", " lead", "trail ", "#hash", "\xff", "nul\x00"} {
		if err := SetPassword(path, user, []byte("pw")); err == nil {
			t.Errorf("SetPassword(user %q) succeeded", user)
		}
	}
	if err := SetPassword(path, "ok", nil); err == nil {
		t.Error("empty password accepted")
	}
	if _, err := os.Stat(path); err == nil {
		t.Error("file created despite errors")
	}
	for _, user := range []string{"alice", "user name with spaces", "日本", "a#b", "x/y+z"} {
		if err := ValidUsername(user); err != nil {
			t.Errorf("ValidUsername(%q) = %v", user, err)
		}
	}
}

func TestSetPasswordFollowsSymlink(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	link := filepath.Join(dir, "link")
	os.WriteFile(real, []byte(knownPBKDF2Line+"\n"), 0o600)
	if err := os.Symlink(real, link); err != nil {
		t.Skip("symlinks unavailable:", err)
	}
	if err := SetPassword(link, "bob", []byte("b")); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatal("symlink replaced by a regular file")
	}
	if !strings.Contains(readString(t, real), "bob:$7$") {
		t.Fatal("target not updated")
	}
}

// TestSetPasswordThenMosquittoPasswd checks the file stays Mosquitto's: the
// tool can update a file we wrote, and we can update one it wrote.
func TestSetPasswordThenMosquittoPasswd(t *testing.T) {
	bin, err := exec.LookPath("mosquitto_passwd")
	if err != nil {
		t.Skip("mosquitto_passwd not installed")
	}
	path := filepath.Join(t.TempDir(), "passwd")
	if out, err := exec.Command(bin, "-c", "-b", path, "tool", "tool pw").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v %s", err, out)
	}
	if err := SetPassword(path, "ours", []byte("our pw")); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-b", path, "tool2", "tool pw 2").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd on our file: %v %s", err, out)
	}
	p, err := LoadPasswordFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Check("tool", []byte("tool pw")) || !p.Check("ours", []byte("our pw")) || !p.Check("tool2", []byte("tool pw 2")) {
		t.Fatalf("mixed file does not check:\n%s", readString(t, path))
	}
}
