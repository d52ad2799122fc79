package wire

// The functions here are generic over string and []byte so that the decoder
// can validate topics that alias a read buffer, and topictree and shard can
// validate or match stored strings, all without converting (and therefore
// without allocating).

// MaxTopicLength is the longest topic name or filter: it must fit a UTF-8
// string field's 16-bit length [MQTT-4.7.3-3].
const MaxTopicLength = 65535

// scanUTF8 checks that s is well-formed UTF-8 without surrogates
// [MQTT-1.5.3-1] and without U+0000 [MQTT-1.5.3-2]. It also reports whether
// s holds a '+' or '#', so topic checks need one pass over the bytes.
// U+FEFF (EF BB BF) is an ordinary character and passes [MQTT-1.5.3-3].
func scanUTF8[T ~string | ~[]byte](s T) (wildcard bool, err error) {
	n := len(s)
	i := 0
	// Fast path: 8 ASCII bytes at a time while none is 0x00, '+' or '#'
	// (topics are mostly ASCII); any other word falls to the byte loop.
	for ; i+8 <= n; i += 8 {
		v := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		if v&hi8 != 0 || hasZeroByte(v) || hasZeroByte(v^(lo8*'+')) || hasZeroByte(v^(lo8*'#')) {
			break
		}
	}
	for i < n {
		c := s[i]
		if c < 0x80 {
			switch c {
			case 0:
				return wildcard, ErrNullChar
			case '+', '#':
				wildcard = true
			}
			i++
			continue
		}
		// Accepted ranges follow Table 3-7 of the Unicode standard; the
		// narrowed second-byte ranges exclude overlong forms, surrogates
		// (ED A0..BF) and code points above U+10FFFF.
		var size int
		lo, hi := byte(0x80), byte(0xBF)
		switch {
		case c >= 0xC2 && c <= 0xDF:
			size = 2
		case c == 0xE0:
			size, lo = 3, 0xA0
		case c == 0xED:
			size, hi = 3, 0x9F
		case c >= 0xE1 && c <= 0xEF:
			size = 3
		case c == 0xF0:
			size, lo = 4, 0x90
		case c >= 0xF1 && c <= 0xF3:
			size = 4
		case c == 0xF4:
			size, hi = 4, 0x8F
		default:
			return wildcard, ErrInvalidUTF8
		}
		if i+size > n {
			return wildcard, ErrInvalidUTF8
		}
		if b := s[i+1]; b < lo || b > hi {
			return wildcard, ErrInvalidUTF8
		}
		for j := i + 2; j < i+size; j++ {
			if b := s[j]; b < 0x80 || b > 0xBF {
				return wildcard, ErrInvalidUTF8
			}
		}
		i += size
	}
	return wildcard, nil
}

const (
	lo8 = 0x0101010101010101
	hi8 = 0x8080808080808080
)

// hasZeroByte reports whether any byte of v is 0 (for bytes below 0x80,
// which the callers ensure).
func hasZeroByte(v uint64) bool { return (v-lo8)&^v&hi8 != 0 }

// ValidUTF8String reports whether s may appear in an MQTT UTF-8 string field:
// well-formed UTF-8, no surrogate code points [MQTT-1.5.3-1] and no U+0000
// [MQTT-1.5.3-2]. It returns ErrInvalidUTF8 or ErrNullChar.
func ValidUTF8String[T ~string | ~[]byte](s T) error {
	_, err := scanUTF8(s)
	return err
}

// ValidTopicName reports whether t may be used as a PUBLISH or will topic:
// 1 to 65535 bytes [MQTT-4.7.3-1], [MQTT-4.7.3-3], valid UTF-8 without
// U+0000 [MQTT-4.7.3-2], and no wildcard characters [MQTT-4.7.1-1],
// [MQTT-3.3.2-2].
func ValidTopicName[T ~string | ~[]byte](t T) error {
	if len(t) == 0 {
		return ErrTopicEmpty
	}
	if len(t) > MaxTopicLength {
		return ErrTopicTooLong
	}
	wildcard, err := scanUTF8(t)
	if err != nil {
		return err
	}
	if wildcard {
		return ErrTopicWildcard
	}
	return nil
}

// ValidTopicFilter reports whether f may be subscribed to: the length and
// character rules of topic names, '#' only as a whole last level
// [MQTT-4.7.1-2] and '+' only as a whole level [MQTT-4.7.1-3].
func ValidTopicFilter[T ~string | ~[]byte](f T) error {
	if len(f) == 0 {
		return ErrTopicEmpty
	}
	if len(f) > MaxTopicLength {
		return ErrTopicTooLong
	}
	wildcard, err := scanUTF8(f)
	if err != nil || !wildcard {
		return err
	}
	n := len(f)
	for i := 0; i < n; i++ {
		switch f[i] {
		case '#':
			// Alone or right after '/', and the last character.
			if (i > 0 && f[i-1] != '/') || i != n-1 {
				return ErrTopicFilter
			}
		case '+':
			// The whole level: preceded by start or '/', followed by end or '/'.
			if (i > 0 && f[i-1] != '/') || (i < n-1 && f[i+1] != '/') {
				return ErrTopicFilter
			}
		}
	}
	return nil
}

// MatchTopic reports whether topic matches the valid filter (section 4.7).
// Matching compares bytes exactly: no case folding or Unicode normalisation
// [MQTT-4.7.3-4]. "a/#" also matches "a", "a/+" matches "a/" but not "a",
// and a filter starting with '+' or '#' never matches a topic starting with
// '$' [MQTT-4.7.2-1]. It does not allocate.
func MatchTopic[T ~string | ~[]byte](filter string, topic T) bool {
	tn, fn := len(topic), len(filter)
	if tn > 0 && topic[0] == '$' && fn > 0 && (filter[0] == '+' || filter[0] == '#') {
		return false
	}
	// fi and ti index the start of the current level. ti == tn+1 means the
	// topic has no levels left, which differs from an empty last level
	// ("a/" has the two levels "a" and "").
	fi, ti := 0, 0
	for {
		fe := fi
		for fe < fn && filter[fe] != '/' {
			fe++
		}
		if fe-fi == 1 && filter[fi] == '#' {
			return true // matches the parent level and everything below
		}
		if ti > tn {
			return false
		}
		te := ti
		for te < tn && topic[te] != '/' {
			te++
		}
		if !(fe-fi == 1 && filter[fi] == '+') {
			if fe-fi != te-ti {
				return false
			}
			for k := 0; k < fe-fi; k++ {
				if filter[fi+k] != topic[ti+k] {
					return false
				}
			}
		}
		if fe == fn {
			return te == tn
		}
		fi = fe + 1
		ti = te + 1 // tn+1 when the topic's last level was just consumed
	}
}
