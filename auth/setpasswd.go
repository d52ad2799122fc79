package auth

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ValidUsername reports whether user can be written to a password file and
// read back unchanged, by iotd and by Mosquitto: 1 to 65535 bytes of UTF-8
// (an MQTT user name is a UTF-8 string [MQTT-3.1.3-11]), no control
// characters and no ':' (mosquitto_passwd's rules), no leading or trailing
// blank (readers trim them) and no leading '#' (readers take the line for a
// comment).
func ValidUsername(user string) error {
	switch {
	case user == "":
		return errors.New("user name is empty")
	case len(user) > 65535:
		return errors.New("user name is longer than 65535 bytes")
	case !utf8.ValidString(user):
		return errors.New("user name is not valid UTF-8")
	case strings.ContainsRune(user, ':'):
		return errors.New("user name must not contain ':'")
	case strings.IndexFunc(user, unicode.IsControl) >= 0:
		return errors.New("user name must not contain control characters")
	case strings.Trim(user, blanks) != user:
		return errors.New("user name must not start or end with a blank")
	case user[0] == '#':
		return errors.New("user name must not start with '#'")
	}
	return nil
}

// SetPassword sets user's password in the password file at path, creating
// the file if it does not exist: the user's line is replaced in place (a
// second line for the same user is dropped) or, for a new user, appended.
// Every other line, comments and blank lines included, is kept byte for
// byte. The password is hashed with HashPassword ($7$, as mosquitto_passwd).
//
// The new file is written to a temporary file in the same directory, synced,
// and renamed over the old one, so a reader (the broker reloading) sees the
// old file or the new one, never a partial one. The result has mode 0600;
// when run with the privilege to, SetPassword keeps the old file's owner. If
// path is a symlink, its target is replaced. SetPassword refuses, with a
// *ParseError, to rewrite a file whose other lines would not load, so it
// cannot hide a broken file behind a successful update. Two concurrent
// SetPassword calls on one file may lose one update: serialise them.
func SetPassword(path, user string, password []byte) error {
	if err := ValidUsername(user); err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	if len(password) == 0 {
		return errors.New("auth: empty password")
	}
	target, err := filepath.EvalSymlinks(path)
	if errors.Is(err, fs.ErrNotExist) {
		target, err = path, nil
	}
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	old, err := os.ReadFile(target)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("auth: reading password file: %w", err)
	}
	hash, err := HashPassword(password)
	if err != nil {
		return err
	}
	data, err := replaceUserLine(target, old, user, user+":"+hash)
	if err != nil {
		return err
	}
	var owner *fileOwner
	if exists {
		if fi, err := os.Stat(target); err == nil {
			owner = ownerOf(fi)
		}
	}
	return writeFileAtomic(target, data, owner)
}

// replaceUserLine returns old with user's line replaced by newLine, or with
// newLine appended. Lines keep their own endings.
func replaceUserLine(path string, old []byte, user, newLine string) ([]byte, error) {
	var b strings.Builder
	b.Grow(len(old) + len(newLine) + 1)
	replaced := false
	lines := strings.SplitAfter(string(old), "\n")
	for i, raw := range lines {
		if raw == "" {
			continue // SplitAfter yields "" after a final '\n'
		}
		body := strings.TrimSuffix(strings.TrimSuffix(raw, "\n"), "\r")
		ending := raw[len(body):]
		u, hash, skip, reason := splitPasswordLine(body)
		if !skip && reason == "" && u == user {
			if !replaced {
				replaced = true
				if ending == "" {
					ending = "\n"
				}
				b.WriteString(newLine)
				b.WriteString(ending)
			}
			continue
		}
		if !skip {
			if reason == "" {
				_, reason = parseHash(hash)
				if reason != "" {
					reason = fmt.Sprintf("user %q: %s", u, reason)
				}
			}
			if reason != "" {
				return nil, lineErr(path, i+1, "%s; fix or remove this line before setting a password", reason)
			}
		}
		b.WriteString(raw)
	}
	if !replaced {
		if s := b.String(); s != "" && !strings.HasSuffix(s, "\n") {
			b.WriteByte('\n')
		}
		b.WriteString(newLine)
		b.WriteByte('\n')
	}
	return []byte(b.String()), nil
}

// writeFileAtomic writes data to a temporary file next to path, syncs it,
// and renames it over path, then syncs the directory.
func writeFileAtomic(path string, data []byte, owner *fileOwner) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("auth: creating temporary file: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	owner.apply(tmp) // best effort: keep the broker's user able to read it
	if _, err = tmp.Write(data); err != nil {
		return fmt.Errorf("auth: writing %s: %w", tmp.Name(), err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("auth: syncing %s: %w", tmp.Name(), err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("auth: closing %s: %w", tmp.Name(), err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("auth: replacing password file: %w", err)
	}
	syncDir(dir)
	return nil
}

// syncDir makes a rename in dir durable. Errors are ignored: the rename has
// happened, and some platforms cannot sync a directory.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
