package wire_test

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"iotd/wire"
	"iotd/wire/wiretest"
)

// Seeds come from the byte tables here and from the committed files under
// testdata/fuzz/<FuzzName>/ (run `make fuzz` to extend them).

func addTableSeeds(f *testing.F) {
	for _, tables := range [][]wiretest.Case{wiretest.Valid, wiretest.Malformed} {
		for _, c := range tables {
			f.Add(c.Raw)
		}
	}
}

// FuzzDecode: decoding never panics, every error matches exactly one
// sentinel, and every decoded packet re-encodes to bytes that decode to an
// equal packet. The decoded packet is never bigger than its input.
func FuzzDecode(f *testing.F) {
	addTableSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		p, n, err := wire.DecodePacket(data)
		if err != nil {
			if m := matchingSentinels(err); len(m) != 1 {
				t.Fatalf("error %v matches %d sentinels", err, len(m))
			}
			if n != 0 || p != nil {
				t.Fatalf("error with n=%d p=%v", n, p)
			}
			return
		}
		if n > len(data) || n < 2 {
			t.Fatalf("used %d of %d bytes", n, len(data))
		}
		checkBounded(t, p, n)
		enc := p.Append(nil)
		if len(enc) > n {
			t.Fatalf("re-encoding grew from %d to %d bytes", n, len(enc))
		}
		p2, n2, err := wire.DecodePacket(enc)
		if err != nil || n2 != len(enc) {
			t.Fatalf("re-encoded % x does not decode: %v", enc, err)
		}
		if !reflect.DeepEqual(p, p2) {
			t.Fatalf("round trip changed the packet:\n%#v\n%#v", p, p2)
		}
		// The zero-copy PUBLISH path agrees with the copying one.
		if pub, ok := p.(*wire.Publish); ok {
			fh, hl, _ := wire.DecodeHeader(data)
			var q wire.Publish
			if err := q.Decode(fh, data[hl:n]); err != nil {
				t.Fatalf("(*Publish).Decode rejects what Decode accepts: %v", err)
			}
			if q.Dup != pub.Dup || q.QoS != pub.QoS || q.Retain != pub.Retain || q.PacketID != pub.PacketID ||
				!bytes.Equal(q.Topic, pub.Topic) || !bytes.Equal(q.Payload, pub.Payload) {
				t.Fatalf("in-place decode %+v differs from %+v", q, pub)
			}
		}
	})
}

// checkBounded asserts that a packet decoded from n bytes holds no more
// than n bytes of fields and slices sized exactly, so a hostile packet
// cannot make the decoder allocate beyond its input.
func checkBounded(t *testing.T, p wire.Packet, n int) {
	t.Helper()
	size := 0
	switch p := p.(type) {
	case *wire.Connect:
		size = len(p.ClientID) + len(p.WillTopic) + len(p.WillMessage) + len(p.Username) + len(p.Password)
	case *wire.Publish:
		size = len(p.Topic) + len(p.Payload)
		if cap(p.Topic)+cap(p.Payload) > n {
			t.Fatalf("PUBLISH capacity %d beyond input %d", cap(p.Topic)+cap(p.Payload), n)
		}
	case *wire.Subscribe:
		if cap(p.Subscriptions) != len(p.Subscriptions) || 3*len(p.Subscriptions) > n {
			t.Fatalf("%d subscriptions (cap %d) from %d bytes", len(p.Subscriptions), cap(p.Subscriptions), n)
		}
		for _, s := range p.Subscriptions {
			size += len(s.Filter)
		}
	case *wire.Unsubscribe:
		if cap(p.Filters) != len(p.Filters) || 2*len(p.Filters) > n {
			t.Fatalf("%d filters (cap %d) from %d bytes", len(p.Filters), cap(p.Filters), n)
		}
		for _, f := range p.Filters {
			size += len(f)
		}
	case *wire.Suback:
		size = cap(p.ReturnCodes)
	}
	if size > n {
		t.Fatalf("%v holds %d bytes decoded from %d", p.Type(), size, n)
	}
}

// FuzzRoundTrip: decode -> encode -> decode -> encode reaches a fixed point
// after one step (the only non-canonical input is a padded remaining
// length), and encoding is deterministic.
func FuzzRoundTrip(f *testing.F) {
	addTableSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		p1, _, err := wire.DecodePacket(data)
		if err != nil {
			return
		}
		enc1 := p1.Append(nil)
		p2, _, err := wire.DecodePacket(enc1)
		if err != nil {
			t.Fatalf("re-encoded % x does not decode: %v", enc1, err)
		}
		enc2 := p2.Append(nil)
		if !bytes.Equal(enc1, enc2) {
			t.Fatalf("encoding not stable:\n% x\n% x", enc1, enc2)
		}
		if !reflect.DeepEqual(p1, p2) {
			t.Fatalf("packet not stable:\n%#v\n%#v", p1, p2)
		}
		// Appending onto a dirty buffer gives the same bytes.
		dirty := append(make([]byte, 0, len(enc1)+8), "garbage"...)
		if got := p2.Append(dirty); !bytes.Equal(got[7:], enc1) {
			t.Fatalf("Append onto a prefix differs")
		}
	})
}

// splitReader hands out data in up to three chunks at the given cut points
// (each chunk possibly further shortened by the caller's buffer size).
type splitReader struct {
	data []byte
	cuts []int
	off  int
}

func (s *splitReader) Read(p []byte) (int, error) {
	if s.off >= len(s.data) {
		return 0, io.EOF
	}
	end := len(s.data)
	for _, c := range s.cuts {
		if c > s.off && c < end {
			end = c
		}
	}
	n := copy(p, s.data[s.off:end])
	s.off += n
	return n, nil
}

// FuzzReader feeds a stream through Reader in 2-3 pieces and compares what
// it frames with DecodeHeader applied to the whole stream: same packets,
// then the same protocol error, io.EOF at a boundary or
// io.ErrUnexpectedEOF mid-packet. The stream is finite and every Read
// makes progress, so a hang is a test timeout.
func FuzzReader(f *testing.F) {
	var stream []byte
	for _, c := range wiretest.Valid {
		stream = append(stream, c.Raw...)
	}
	f.Add(stream, uint16(1), uint16(300))
	f.Add(stream, uint16(255), uint16(257))
	f.Add(append(bytes.Clone(stream), 0x30, 0xff, 0xff, 0xff, 0x7f), uint16(100), uint16(2))
	for _, c := range wiretest.Malformed {
		f.Add(append(wiretest.Raw("pingreq"), c.Raw...), uint16(1), uint16(3))
	}
	const max = 64 << 10
	f.Fuzz(func(t *testing.T, data []byte, cut1, cut2 uint16) {
		rd := wire.NewReader(&splitReader{data: data, cuts: []int{int(cut1), int(cut2)}}, max)
		off := 0
		for {
			fh, hl, herr := wire.DecodeHeader(data[off:])
			var wantErr error
			switch {
			case herr == wire.ErrIncomplete && off == len(data):
				wantErr = io.EOF
			case herr == wire.ErrIncomplete:
				wantErr = io.ErrUnexpectedEOF
			case herr != nil:
				wantErr = herr
			case hl+fh.RemainingLength > max:
				wantErr = wire.ErrPacketTooLarge
			case off+hl+fh.RemainingLength > len(data):
				wantErr = io.ErrUnexpectedEOF
			}
			gfh, body, err := rd.ReadPacket()
			if wantErr != nil {
				if err == nil || !(errors.Is(err, wantErr) || sameSentinel(err, wantErr)) {
					t.Fatalf("at offset %d: err = %v, want %v", off, err, wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("at offset %d: %v, want a packet", off, err)
			}
			want := data[off+hl : off+hl+fh.RemainingLength]
			if gfh != fh || !bytes.Equal(body, want) {
				t.Fatalf("at offset %d: got %+v % x, want %+v % x", off, gfh, body, fh, want)
			}
			if off%3 == 0 {
				rd.Release() // exercise Release between packets
			}
			off += hl + fh.RemainingLength
		}
	})
}

func sameSentinel(a, b error) bool {
	ma, mb := matchingSentinels(a), matchingSentinels(b)
	return len(ma) == 1 && len(mb) == 1 && ma[0] == mb[0]
}

// FuzzTopic checks the topic functions against each other and against the
// level-splitting reference matcher.
func FuzzTopic(f *testing.F) {
	for _, s := range [][2]string{
		{"sport/#", "sport"}, {"sport/+", "sport/"}, {"+/+", "/finance"}, {"/+", "/finance"},
		{"+", "/finance"}, {"#", "$SYS/x"}, {"$SYS/#", "$SYS"}, {"\uFEFFa", "a"},
		{"ACCOUNTS", "Accounts"}, {"caf\u00e9", "cafe\u0301"}, {"a/+/c", "a//c"},
		{"a#", "a"}, {"a/\x00", "a/\x00"}, {"\xed\xa0\x80", "x"}, {"", ""}, {"+/+/#", "a/b/c/d"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, filter, topic string) {
		for _, s := range []string{filter, topic} {
			want := utf8.ValidString(s) && !strings.Contains(s, "\x00")
			if err := wire.ValidUTF8String(s); (err == nil) != want {
				t.Fatalf("ValidUTF8String(%q) = %v, want valid=%v", s, err, want)
			}
			if wire.ValidTopicName(s) == nil && wire.ValidTopicFilter(s) != nil {
				t.Fatalf("valid topic name %q is not a valid filter", s)
			}
		}
		fErr, tErr := wire.ValidTopicFilter(filter), wire.ValidTopicName(topic)
		if (fErr == nil) != (wire.ValidTopicFilter([]byte(filter)) == nil) || (tErr == nil) != (wire.ValidTopicName([]byte(topic)) == nil) {
			t.Fatal("string and []byte validation disagree")
		}
		if tErr == nil {
			if !wire.MatchTopic(topic, topic) {
				t.Fatalf("topic %q does not match itself", topic)
			}
			dollar := topic[0] == '$'
			if wire.MatchTopic("#", topic) == dollar {
				t.Fatalf("MatchTopic(#, %q) wrong for a $-topic=%v", topic, dollar)
			}
			// Replacing one level by '+' still matches (unless it is the
			// first level of a $-topic); '/#' after any prefix of levels too.
			levels := strings.Split(topic, "/")
			i := len(filter) % len(levels)
			plus := append([]string(nil), levels...)
			plus[i] = "+"
			pf := strings.Join(plus, "/")
			if wire.ValidTopicFilter(pf) != nil || wire.MatchTopic(pf, topic) != !(dollar && i == 0) {
				t.Fatalf("filter %q vs topic %q", pf, topic)
			}
			hf := strings.Join(append(levels[:i:i], "#"), "/")
			if wire.MatchTopic(hf, topic) != !(dollar && i == 0) {
				t.Fatalf("filter %q vs topic %q", hf, topic)
			}
		}
		if fErr == nil && tErr == nil {
			got := wire.MatchTopic(filter, topic)
			if got != refMatch(filter, topic) {
				t.Fatalf("MatchTopic(%q, %q) = %v, reference disagrees", filter, topic, got)
			}
			if got != wire.MatchTopic(filter, []byte(topic)) {
				t.Fatal("string and []byte matching disagree")
			}
		}
	})
}
