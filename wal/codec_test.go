package wal

import (
	"bytes"
	"errors"
	"math"
	"runtime"
	"testing"
)

func TestRecordRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		typ     byte
		payload []byte
	}{
		{1, nil},
		{2, []byte{}},
		{255, []byte("hello")},
		{7, bytes.Repeat([]byte{0}, 300)},
		{9, bytes.Repeat([]byte{0xff, 1, 2}, 1000)},
	} {
		rec := appendRecord([]byte("prefix"), tc.typ, tc.payload)[len("prefix"):]
		if len(rec) != len(tc.payload)+recordOverhead {
			t.Fatalf("len(rec) = %d, want %d", len(rec), len(tc.payload)+recordOverhead)
		}
		typ, payload, err := parseRecord(rec)
		if err != nil || typ != tc.typ || !bytes.Equal(payload, tc.payload) {
			t.Fatalf("parseRecord = %d %x %v, want %d %x", typ, payload, err, tc.typ, tc.payload)
		}
		// Every single-bit flip is caught (CRC32C detects all 1-bit errors).
		for i := range min(len(rec), 400) {
			for bit := 0; bit < 8; bit++ {
				bad := bytes.Clone(rec)
				bad[i] ^= 1 << bit
				if _, _, err := parseRecord(bad); err == nil {
					t.Fatalf("flip of byte %d bit %d not detected", i, bit)
				}
			}
		}
	}
}

func TestParseRecordErrors(t *testing.T) {
	if _, _, err := parseRecord([]byte{1, 2, 3, 4}); !errors.Is(err, errRecordShort) {
		t.Errorf("short record: %v", err)
	}
	if _, _, err := parseRecord(make([]byte, 5)); !errors.Is(err, errRecordCRC) {
		t.Errorf("zero record: %v, want a CRC mismatch", err)
	}
	rec := appendRecord(nil, 0, []byte("x")) // type 0 with a valid CRC
	if _, _, err := parseRecord(rec); !errors.Is(err, errRecordType) {
		t.Errorf("type 0: %v", err)
	}
}

func TestNextEntry(t *testing.T) {
	var data []byte
	data = append(data, 3, 'a', 'b', 'c')
	data = append(data, 0x80, 0x01) // uvarint 128
	data = append(data, make([]byte, 128)...)
	rec, next, err := nextEntry(data, 0)
	if err != nil || string(rec) != "abc" || next != 4 {
		t.Fatalf("first entry: %q %d %v", rec, next, err)
	}
	rec, next, err = nextEntry(data, 4)
	if err != nil || len(rec) != 128 || next != len(data) {
		t.Fatalf("second entry: %d %d %v", len(rec), next, err)
	}
	if _, _, err := nextEntry(data[:5], 4); !errors.Is(err, errEntryTorn) {
		t.Errorf("cut length prefix: %v", err)
	}
	if _, _, err := nextEntry(data[:100], 4); !errors.Is(err, errEntryTorn) {
		t.Errorf("cut entry: %v", err)
	}
	over := bytes.Repeat([]byte{0xff}, 11)
	if _, _, err := nextEntry(over, 0); !errors.Is(err, errEntryLength) {
		t.Errorf("overlong uvarint: %v", err)
	}
	if got := entrySize(128); got != 130 {
		t.Errorf("entrySize(128) = %d", got)
	}
}

func TestEncoderDecoderRoundTrip(t *testing.T) {
	var e Encoder
	e.AppendUvarint(0)
	e.AppendUvarint(math.MaxUint64)
	e.AppendUint16(0xBEEF)
	e.AppendByte(7)
	e.AppendBytes([]byte("payload"))
	e.AppendBytes(nil)
	e.AppendString("topic/a/b")
	e.AppendString("")

	d := NewDecoder(e.B)
	if v := d.Uvarint(); v != 0 {
		t.Errorf("Uvarint = %d", v)
	}
	if v := d.Uvarint(); v != math.MaxUint64 {
		t.Errorf("Uvarint = %d", v)
	}
	if v := d.Uint16(); v != 0xBEEF {
		t.Errorf("Uint16 = %x", v)
	}
	if v := d.Byte(); v != 7 {
		t.Errorf("Byte = %d", v)
	}
	if v := d.Bytes(); string(v) != "payload" {
		t.Errorf("Bytes = %q", v)
	}
	if v := d.Bytes(); v == nil || len(v) != 0 {
		t.Errorf("empty Bytes = %#v, want non-nil empty", v)
	}
	if v := d.String(); v != "topic/a/b" {
		t.Errorf("String = %q", v)
	}
	if v := d.String(); v != "" {
		t.Errorf("String = %q", v)
	}
	if d.Err() != nil || d.Len() != 0 {
		t.Fatalf("Err = %v, Len = %d", d.Err(), d.Len())
	}
	// Uint16 is big-endian, like MQTT.
	var e2 Encoder
	e2.AppendUint16(0x0102)
	if !bytes.Equal(e2.B, []byte{1, 2}) {
		t.Errorf("AppendUint16 = %x", e2.B)
	}
}

func TestDecoderBytesAliasClipped(t *testing.T) {
	var e Encoder
	e.AppendBytes([]byte("ab"))
	e.AppendByte('z')
	d := NewDecoder(e.B)
	b := d.Bytes()
	_ = append(b, 'X') // must not overwrite the 'z' after it
	if d.Byte() != 'z' {
		t.Fatal("append to Bytes() result overwrote the input")
	}
}

// Every prefix of a valid body fails with a sticky ErrTruncated and zero
// values, never a panic.
func TestDecoderTruncatedSticky(t *testing.T) {
	var e Encoder
	e.AppendUvarint(300)
	e.AppendUint16(9)
	e.AppendByte(1)
	e.AppendString("hello world")
	e.AppendBytes([]byte{1, 2, 3})
	for cut := 0; cut < len(e.B); cut++ {
		d := NewDecoder(e.B[:cut])
		d.Uvarint()
		d.Uint16()
		d.Byte()
		_ = d.String()
		d.Bytes()
		if !errors.Is(d.Err(), ErrTruncated) {
			t.Fatalf("cut %d: Err = %v, want ErrTruncated", cut, d.Err())
		}
		first := d.Err()
		// After the error everything is zero and the error does not change.
		if d.Uvarint() != 0 || d.Uint16() != 0 || d.Byte() != 0 || d.Bytes() != nil || d.String() != "" || d.Len() != 0 {
			t.Fatalf("cut %d: non-zero value after error", cut)
		}
		if d.Err() != first {
			t.Fatalf("cut %d: error changed from %v to %v", cut, first, d.Err())
		}
	}
}

func TestDecoderHostileLength(t *testing.T) {
	var e Encoder
	e.AppendUvarint(math.MaxUint64) // a string length no input can hold
	e.AppendByte(1)
	d := NewDecoder(e.B)
	if b := d.Bytes(); b != nil || !errors.Is(d.Err(), ErrTruncated) {
		t.Fatalf("Bytes = %v, Err = %v", b, d.Err())
	}
	d = NewDecoder(bytes.Repeat([]byte{0x80}, 11))
	if d.Uvarint() != 0 || !errors.Is(d.Err(), ErrBadUvarint) {
		t.Fatalf("overlong uvarint: Err = %v", d.Err())
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 100 {
		d := NewDecoder(e.B)
		d.Bytes()
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 100*1024 {
		t.Errorf("100 decodes of a hostile length allocated %d bytes", n)
	}
}
