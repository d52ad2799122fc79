package wal

import (
	"bytes"
	"testing"
)

// FuzzDecoder runs a program of Decoder calls (ops) over arbitrary input
// (body): it must never panic, never return bytes outside the input, and
// keep its first error.
func FuzzDecoder(f *testing.F) {
	var e Encoder
	e.AppendUvarint(300)
	e.AppendUint16(7)
	e.AppendByte(1)
	e.AppendString("a/b/c")
	e.AppendBytes([]byte{0, 1, 2})
	f.Add([]byte{0, 1, 2, 4, 3, 5}, e.B)
	f.Add([]byte{3, 3, 3}, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f})
	f.Add([]byte{0}, bytes.Repeat([]byte{0x80}, 12))
	f.Add([]byte{4}, []byte{5, 'a'})
	f.Fuzz(func(t *testing.T, ops, body []byte) {
		d := NewDecoder(body)
		var firstErr error
		for _, op := range ops {
			switch op % 6 {
			case 0:
				d.Uvarint()
			case 1:
				d.Uint16()
			case 2:
				d.Byte()
			case 3:
				b := d.Bytes()
				if len(b) > len(body) {
					t.Fatalf("Bytes returned %d bytes from a %d-byte input", len(b), len(body))
				}
			case 4:
				if s := d.String(); len(s) > len(body) {
					t.Fatalf("String returned %d bytes from a %d-byte input", len(s), len(body))
				}
			case 5:
				if n := d.Len(); n < 0 || n > len(body) {
					t.Fatalf("Len = %d for a %d-byte input", n, len(body))
				}
			}
			if firstErr == nil {
				firstErr = d.Err()
			} else if d.Err() != firstErr {
				t.Fatalf("error changed from %v to %v", firstErr, d.Err())
			}
		}
	})
}

// FuzzEncoderRoundTrip: what an Encoder writes, a Decoder reads back, and
// every strict prefix of it fails to decode.
func FuzzEncoderRoundTrip(f *testing.F) {
	f.Add(uint64(0), uint16(0), byte(0), []byte(nil), "")
	f.Add(uint64(1<<63), uint16(0xffff), byte(0xff), []byte("payload"), "topic/#")
	f.Fuzz(func(t *testing.T, u uint64, w uint16, c byte, p []byte, s string) {
		var e Encoder
		e.AppendUvarint(u)
		e.AppendUint16(w)
		e.AppendByte(c)
		e.AppendBytes(p)
		e.AppendString(s)
		d := NewDecoder(e.B)
		if d.Uvarint() != u || d.Uint16() != w || d.Byte() != c || !bytes.Equal(d.Bytes(), p) || d.String() != s {
			t.Fatal("round trip changed a value")
		}
		if d.Err() != nil || d.Len() != 0 {
			t.Fatalf("Err %v, Len %d", d.Err(), d.Len())
		}
		for cut := 0; cut < len(e.B); cut += 1 + cut/8 {
			d := NewDecoder(e.B[:cut])
			d.Uvarint()
			d.Uint16()
			d.Byte()
			d.Bytes()
			_ = d.String()
			if d.Err() == nil {
				t.Fatalf("prefix of %d/%d bytes decoded without error", cut, len(e.B))
			}
		}
	})
}

// FuzzRepair appends arbitrary bytes to a valid segment and scans it: the
// scan never panics, never cuts into the valid records, and whatever it
// keeps or reports is consistent.
func FuzzRepair(f *testing.F) {
	var valid []byte
	for i := uint64(1); i <= 5; i++ {
		rec := appendRecord(nil, typeFor(i), payloadFor(i))
		valid = append(binaryAppendUvarint(valid, len(rec)), rec...)
	}
	f.Add([]byte{})
	f.Add(make([]byte, 64))
	f.Add(valid[:len(valid)-3])
	f.Add(append(bytes.Clone(valid[:7]), valid...))
	f.Fuzz(func(t *testing.T, tail []byte) {
		data := append(bytes.Clone(valid), tail...)
		sc := scanSegment(data)
		if sc.good < len(valid) || sc.good > len(data) || sc.records < 5 {
			t.Fatalf("scan kept %d bytes / %d records of %d valid bytes", sc.good, sc.records, len(valid))
		}
		// The kept prefix is exactly sc.records valid records.
		n := 0
		for pos := 0; pos < sc.good; n++ {
			rec, next, err := nextEntry(data[:sc.good], pos)
			if err == nil {
				_, _, err = parseRecord(rec)
			}
			if err != nil {
				t.Fatalf("kept prefix has a bad record at %d: %v", pos, err)
			}
			pos = next
		}
		if n != sc.records {
			t.Fatalf("kept prefix holds %d records, scan says %d", n, sc.records)
		}
		if (sc.damage == nil) != (sc.good == len(data)) {
			t.Fatalf("damage %v with %d of %d bytes good", sc.damage, sc.good, len(data))
		}
		if sc.next >= 0 {
			if sc.damage == nil || sc.next <= sc.good {
				t.Fatalf("next %d with good %d, damage %v", sc.next, sc.good, sc.damage)
			}
			rec, _, err := nextEntry(data, sc.next)
			if err == nil {
				_, _, err = parseRecord(rec)
			}
			if err != nil {
				t.Fatalf("reported record at %d is not valid: %v", sc.next, err)
			}
		}
	})
}
