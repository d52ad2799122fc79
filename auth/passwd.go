package auth

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Hash parameters, as Mosquitto 2 writes and reads them.
const (
	// DefaultIterations is the PBKDF2 iteration count HashPassword uses:
	// mosquitto_passwd's default (PW_DEFAULT_ITERATIONS).
	DefaultIterations = 101
	// SaltLen is the salt length HashPassword uses: mosquitto_passwd's.
	SaltLen = 12
	// hashLen is the SHA-512 output length; both formats store 64 bytes.
	hashLen = sha512.Size
	// altSaltLen is the other salt length Mosquitto accepts (its HASH_LEN).
	altSaltLen = 64
	// MaxIterations bounds the iteration count of a $7$ line, so that a
	// mistyped count cannot turn every CONNECT into seconds of CPU.
	MaxIterations = 10_000_000
)

// blanks are the characters Mosquitto trims around a user name and hash.
const blanks = " \t\r\n\v\f"

type hashKind uint8

const (
	kindSHA512       hashKind = 6 // $6$salt$hash: SHA-512(password || salt)
	kindSHA512PBKDF2 hashKind = 7 // $7$iter$salt$hash: PBKDF2-HMAC-SHA512
)

// credential is one decoded hash. It is immutable once parsed.
type credential struct {
	kind       hashKind
	iterations int
	salt       []byte
	hash       []byte // hashLen bytes
}

// derive computes what the stored hash would be for password. Mosquitto
// hashes the password as a C string, so a password with a NUL byte is cut
// there; iotd hashes every byte, which only differs for passwords that
// mosquitto_passwd cannot write.
func (c *credential) derive(password []byte) ([]byte, error) {
	switch c.kind {
	case kindSHA512:
		h := sha512.New()
		h.Write(password)
		h.Write(c.salt)
		return h.Sum(nil), nil
	case kindSHA512PBKDF2:
		return pbkdf2.Key(sha512.New, string(password), c.salt, c.iterations, hashLen)
	}
	return nil, fmt.Errorf("unknown hash kind %d", c.kind)
}

// verify reports whether password hashes to c.hash. The comparison is
// constant-time (crypto/subtle); the derivation's cost depends only on the
// stored parameters, never on how much of the password is right.
func (c *credential) verify(password []byte) bool {
	got, err := c.derive(password)
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare(got, c.hash) == 1
}

// decoy is verified in place of a user that is not in the file, so that an
// unknown user costs the same PBKDF2 work as a known one with the default
// iteration count, and the reply time does not reveal which users exist.
var decoy = credential{
	kind:       kindSHA512PBKDF2,
	iterations: DefaultIterations,
	salt:       make([]byte, SaltLen),
	hash:       make([]byte, hashLen),
}

// Passwords is a parsed password file. It is immutable, so one value may be
// shared by any number of goroutines.
type Passwords struct {
	users map[string]*credential
}

// LoadPasswordFile reads a Mosquitto password file: one "user:hash" per
// line, where hash is "$7$<iterations>$<base64 salt>$<base64 hash>"
// (PBKDF2-HMAC-SHA512, Mosquitto 2's default) or "$6$<base64 salt>$<base64
// hash>" (salted SHA-512, Mosquitto 1.x). Blank lines and lines starting
// with '#' are skipped; blanks around the user and the hash are trimmed, as
// Mosquitto does. Unlike Mosquitto, which skips lines it cannot use, any
// such line (no ':', empty user, unhashed or unknown hash, bad base64 or
// lengths, a user listed twice) fails the whole load with a *ParseError
// naming the file, line and reason: a broker should not start, or reload,
// with some users silently missing.
func LoadPasswordFile(path string) (*Passwords, error) {
	return openAndParse(path, parsePasswords)
}

// parsePasswords parses a password file's content; path is used in errors.
func parsePasswords(path string, r io.Reader) (*Passwords, error) {
	p := &Passwords{users: make(map[string]*credential)}
	firstLine := make(map[string]int)
	err := scanLines(path, r, func(n int, line string) *ParseError {
		user, hash, skip, reason := splitPasswordLine(line)
		if skip {
			return nil
		}
		if reason != "" {
			return lineErr(path, n, "%s", reason)
		}
		if first, dup := firstLine[user]; dup {
			return lineErr(path, n, "user %q is already defined on line %d", user, first)
		}
		cred, reason := parseHash(hash)
		if reason != "" {
			return lineErr(path, n, "user %q: %s", user, reason)
		}
		firstLine[user] = n
		p.users[user] = cred
		return nil
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// splitPasswordLine splits "user:hash". skip is true for blank and comment
// lines; reason is non-empty when the line is not of that form.
func splitPasswordLine(line string) (user, hash string, skip bool, reason string) {
	t := strings.TrimLeft(line, blanks)
	if t == "" || t[0] == '#' {
		return "", "", true, ""
	}
	user, hash, ok := strings.Cut(line, ":")
	if !ok {
		return "", "", false, "expected user:hash, found no ':'"
	}
	user = strings.Trim(user, blanks)
	hash = strings.Trim(hash, blanks)
	switch {
	case user == "":
		return "", "", false, "empty user name before ':'"
	case hash == "":
		return "", "", false, fmt.Sprintf("user %q has an empty password hash", user)
	case strings.Contains(hash, ":"):
		return "", "", false, fmt.Sprintf("user %q: more than one ':' on the line", user)
	}
	return user, hash, false, ""
}

// parseHash decodes a "$6$..." or "$7$..." hash. reason says what is wrong
// without quoting the hash itself.
func parseHash(s string) (*credential, string) {
	if !strings.HasPrefix(s, "$") {
		return nil, "password is not hashed (hash it with `iotd passwd` or `mosquitto_passwd -U`)"
	}
	f := strings.Split(s[1:], "$")
	c := &credential{}
	var saltB64, hashB64 string
	switch f[0] {
	case "6":
		if len(f) != 3 {
			return nil, "malformed $6$ hash: want $6$<salt>$<hash>"
		}
		c.kind = kindSHA512
		saltB64, hashB64 = f[1], f[2]
	case "7":
		if len(f) != 4 {
			return nil, "malformed $7$ hash: want $7$<iterations>$<salt>$<hash>"
		}
		c.kind = kindSHA512PBKDF2
		it, reason := parseIterations(f[1])
		if reason != "" {
			return nil, reason
		}
		c.iterations = it
		saltB64, hashB64 = f[2], f[3]
	default:
		return nil, fmt.Sprintf("unsupported hash type $%s$ (iotd reads $6$ and $7$)", f[0])
	}
	var err error
	if c.salt, err = decodeB64(saltB64); err != nil {
		return nil, "salt is not valid base64"
	}
	if len(c.salt) != SaltLen && len(c.salt) != altSaltLen {
		return nil, fmt.Sprintf("salt is %d bytes, want %d or %d", len(c.salt), SaltLen, altSaltLen)
	}
	if c.hash, err = decodeB64(hashB64); err != nil {
		return nil, "hash is not valid base64"
	}
	if len(c.hash) != hashLen {
		return nil, fmt.Sprintf("hash is %d bytes, want %d", len(c.hash), hashLen)
	}
	return c, ""
}

func parseIterations(s string) (int, string) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Sprintf("iteration count %q is not a decimal number", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > MaxIterations {
		return 0, fmt.Sprintf("iteration count %s is above the maximum %d", s, MaxIterations)
	}
	if n < 1 {
		return 0, "iteration count must be at least 1"
	}
	return n, ""
}

// decodeB64 reads standard base64 as OpenSSL writes it (padded), and also
// without padding.
func decodeB64(s string) ([]byte, error) {
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// Check reports whether user is in the file and password matches its hash.
// The hash comparison is constant-time, and an unknown user costs the same
// work as a known one with the default parameters, so neither the password
// nor the existence of the user leaks through timing. A nil *Passwords
// accepts nobody.
func (p *Passwords) Check(user string, password []byte) bool {
	if p == nil {
		return false
	}
	c, known := p.users[user]
	if !known {
		c = &decoy
	}
	ok := c.verify(password)
	return known && ok
}

// Len returns the number of users in the file.
func (p *Passwords) Len() int {
	if p == nil {
		return 0
	}
	return len(p.users)
}

// HashPassword hashes password the way mosquitto_passwd (Mosquitto 2) does
// by default: PBKDF2-HMAC-SHA512 with DefaultIterations (101) iterations
// and a random SaltLen (12) byte salt, written as
// "$7$101$<base64 salt>$<base64 hash>" with padded standard base64.
func HashPassword(password []byte) (string, error) {
	salt := make([]byte, SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("auth: reading random salt: %w", err)
	}
	c := credential{kind: kindSHA512PBKDF2, iterations: DefaultIterations, salt: salt}
	hash, err := c.derive(password)
	if err != nil {
		return "", fmt.Errorf("auth: hashing password: %w", err)
	}
	return formatHash(DefaultIterations, salt, hash), nil
}

func formatHash(iterations int, salt, hash []byte) string {
	return "$7$" + strconv.Itoa(iterations) + "$" +
		base64.StdEncoding.EncodeToString(salt) + "$" +
		base64.StdEncoding.EncodeToString(hash)
}
