package auth

import (
	"fmt"
	"io"
	"strings"

	"iotd/wire"
)

// Access is the kind of access a client asks for on a topic.
type Access uint8

const (
	// Read is checked for each SUBSCRIBE filter and for each message
	// (including retained messages) about to be delivered to a client.
	Read Access = 1 << iota
	// Write is checked for each PUBLISH topic and for the will topic.
	Write
)

func (a Access) String() string {
	switch a {
	case Read:
		return "read"
	case Write:
		return "write"
	case Read | Write:
		return "readwrite"
	}
	return fmt.Sprintf("Access(%d)", uint8(a))
}

// unsafeIDChars may not appear in a client ID or user name that a pattern
// would substitute: with them, a client could name itself into a wildcard
// or another client's subtree.
const unsafeIDChars = "+#/"

// rule is one "topic" or "pattern" line.
type rule struct {
	filter aclFilter
	access Access // Read, Write or both; zero for deny
	deny   bool
	line   int
}

// ACL is a parsed Mosquitto ACL file. It is immutable, so one value may be
// shared by any number of goroutines. See the package documentation for the
// rules Allowed applies.
type ACL struct {
	anonymous []rule            // "topic" lines before any "user" line
	users     map[string][]rule // "topic" lines in each "user" block
	patterns  []rule            // "pattern" lines, for every client
}

// LoadACL reads an ACL file in Mosquitto's format:
//
//	# comment
//	topic [read|write|readwrite|deny] FILTER     (anonymous clients)
//	user NAME
//	topic [read|write|readwrite|deny] FILTER     (client logged in as NAME)
//	pattern [read|write|readwrite|deny] FILTER   (every client; %c, %u)
//
// Keywords and the access word are separated by spaces or tabs; the filter
// is the rest of the line with surrounding blanks trimmed, so it may contain
// inner spaces (as in Mosquitto). Without an access word the access is
// readwrite; note that, as in Mosquitto, "topic read" therefore grants
// readwrite on the topic "read". Each filter must be a valid MQTT topic
// filter. Any other line is an error: a *ParseError with the file, line
// and reason.
func LoadACL(path string) (*ACL, error) {
	return openAndParse(path, parseACL)
}

// parseACL parses an ACL file's content; path is used in errors.
func parseACL(path string, r io.Reader) (*ACL, error) {
	a := &ACL{users: make(map[string][]rule)}
	var user string
	inUser := false
	err := scanLines(path, r, func(n int, line string) *ParseError {
		t := strings.Trim(line, blanks)
		if t == "" || t[0] == '#' {
			return nil
		}
		kw, rest := cutBlank(t)
		switch kw {
		case "user":
			if rest == "" {
				return lineErr(path, n, "\"user\" without a user name")
			}
			user, inUser = rest, true
			return nil
		case "topic", "pattern":
		default:
			return lineErr(path, n, "unknown keyword %q (want user, topic or pattern)", kw)
		}
		if rest == "" {
			return lineErr(path, n, "%q without a topic filter", kw)
		}
		r := rule{line: n, access: Read | Write}
		filter := rest
		if word, tail := cutBlank(rest); tail != "" {
			filter = tail
			switch word {
			case "read":
				r.access = Read
			case "write":
				r.access = Write
			case "readwrite":
				r.access = Read | Write
			case "deny":
				r.access, r.deny = 0, true
			default:
				return lineErr(path, n, "unknown access %q (want read, write, readwrite or deny)", word)
			}
		}
		if err := wire.ValidTopicFilter(filter); err != nil {
			return lineErr(path, n, "invalid topic filter %q: %v", filter, err)
		}
		r.filter = newACLFilter(filter, kw == "pattern")
		switch {
		case kw == "pattern":
			a.patterns = append(a.patterns, r)
		case inUser:
			a.users[user] = append(a.users[user], r)
		default:
			a.anonymous = append(a.anonymous, r)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// cutBlank splits s at its first run of spaces or tabs; tail has its
// surrounding blanks trimmed.
func cutBlank(s string) (head, tail string) {
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.Trim(s[i:], blanks)
}

// Allowed reports whether the client may have access to topic. topic is a
// topic name (PUBLISH, will, delivery) or, for Read only, a SUBSCRIBE
// filter, which must be covered as a whole by one rule. anonymous is true
// for a client that connected without a user name; username is then
// ignored. A nil *ACL allows nothing. The rules are in the package
// documentation. Allowed does not allocate.
func (a *ACL) Allowed(clientID, username string, anonymous bool, access Access, topic string) bool {
	if a == nil || (access != Read && access != Write) {
		return false
	}
	if access == Write {
		if wire.ValidTopicName(topic) != nil {
			return false
		}
	} else if wire.ValidTopicFilter(topic) != nil {
		return false
	}
	if anonymous {
		username = ""
	}
	if len(a.patterns) > 0 &&
		(strings.ContainsAny(clientID, unsafeIDChars) || strings.ContainsAny(username, unsafeIDChars)) {
		return false
	}
	var own []rule
	if anonymous {
		own = a.anonymous
	} else {
		own = a.users[username]
	}
	// Denials first, across every set, so that a deny beats any allow
	// whatever the order or the set of the lines.
	for i := range own {
		if r := &own[i]; r.deny && r.filter.covers(topic, "", "") {
			return false
		}
	}
	for i := range a.patterns {
		if r := &a.patterns[i]; r.deny && r.filter.coversFor(topic, clientID, username) {
			return false
		}
	}
	for i := range own {
		if r := &own[i]; r.access&access != 0 && r.filter.covers(topic, "", "") {
			return true
		}
	}
	for i := range a.patterns {
		if r := &a.patterns[i]; r.access&access != 0 && r.filter.coversFor(topic, clientID, username) {
			return true
		}
	}
	return false
}
