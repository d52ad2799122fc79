package auth

import "strings"

// aclFilter is an ACL topic filter split into levels once, at load time, so
// that matching neither splits nor, for patterns, builds the substituted
// filter: %c and %u are expanded while comparing.
type aclFilter struct {
	raw    string
	levels []string
	// dollar is true when the filter as written starts with '$'. Only such
	// a filter can match a topic starting with '$' [MQTT-4.7.2-1]; for a
	// pattern this is decided before substitution, so a client ID such as
	// "$SYS" cannot turn "%c/#" into "$SYS/#".
	dollar bool
	// needC and needU are set for a pattern that contains %c or %u. A
	// pattern applies only to clients that have the value it needs.
	needC, needU bool
}

func newACLFilter(raw string, pattern bool) aclFilter {
	f := aclFilter{raw: raw, levels: strings.Split(raw, "/"), dollar: raw[0] == '$'}
	if pattern {
		f.needC = strings.Contains(raw, "%c")
		f.needU = strings.Contains(raw, "%u")
	}
	return f
}

// coversFor is covers for a pattern: false when the pattern needs a client
// ID or user name the client does not have.
func (f *aclFilter) coversFor(sub, clientID, username string) bool {
	if (f.needC && clientID == "") || (f.needU && username == "") {
		return false
	}
	return f.covers(sub, clientID, username)
}

// covers reports whether every topic that sub matches is matched by f, with
// %c and %u in f replaced by id and user when f is a pattern. sub is a valid
// topic name or topic filter; for a topic name this is exactly MQTT topic
// matching (section 4.7): "a/#" matches "a", "a/+" matches "a/" but not
// "a", and only a filter written with a leading '$' matches a '$' topic.
// For a filter, each of sub's wildcards must sit under a wildcard of f that
// matches at least as much: '+' is covered by '+' or '#', '#' only by '#'.
// id and user must not contain '/', '+' or '#' (Allowed refuses them), so a
// substituted value stays inside its level and never acts as a wildcard.
func (f *aclFilter) covers(sub, id, user string) bool {
	n := len(sub)
	if n > 0 && sub[0] == '$' && !f.dollar {
		return false
	}
	subst := f.needC || f.needU
	// si indexes the start of sub's current level; si == n+1 means sub has
	// no levels left (which differs from an empty last level: "a/" has the
	// two levels "a" and "").
	si := 0
	last := len(f.levels) - 1
	for li, lv := range f.levels {
		if lv == "#" {
			return true // the parent level and everything below, '#' included
		}
		if si > n {
			return false
		}
		se := si
		for se < n && sub[se] != '/' {
			se++
		}
		sl := sub[si:se]
		switch {
		case sl == "#":
			return false // only '#' covers '#'
		case lv == "+":
			// any single level, '+' included
		case sl == "+":
			return false // a literal level cannot cover '+'
		case !levelEqual(lv, sl, subst, id, user):
			return false
		}
		si = se + 1
		if li == last {
			return si > n
		}
	}
	return false // not reached: a filter has at least one level
}

// levelEqual compares one level of an ACL filter with one of the subject,
// expanding %c to id and %u to user when subst is set (scanning left to
// right, as Mosquitto does: "%%c" is '%' then the client ID).
func levelEqual(tmpl, s string, subst bool, id, user string) bool {
	if !subst {
		return tmpl == s
	}
	j := 0
	for i := 0; i < len(tmpl); i++ {
		if c := tmpl[i]; c == '%' && i+1 < len(tmpl) && (tmpl[i+1] == 'c' || tmpl[i+1] == 'u') {
			v := id
			if tmpl[i+1] == 'u' {
				v = user
			}
			if !strings.HasPrefix(s[j:], v) {
				return false
			}
			j += len(v)
			i++
			continue
		}
		if j >= len(s) || s[j] != tmpl[i] {
			return false
		}
		j++
	}
	return j == len(s)
}
