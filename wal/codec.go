package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Encoder appends the fields of a record or snapshot body to B. The zero
// value is ready to use; reuse one by setting B = B[:0]. Integers of fixed
// width are big-endian, like MQTT's; Bytes and String are a uvarint length
// followed by the bytes.
type Encoder struct{ B []byte }

// AppendUvarint appends v as an unsigned varint (1 to 10 bytes).
func (e *Encoder) AppendUvarint(v uint64) { e.B = binary.AppendUvarint(e.B, v) }

// AppendUint16 appends v as 2 big-endian bytes.
func (e *Encoder) AppendUint16(v uint16) { e.B = binary.BigEndian.AppendUint16(e.B, v) }

// AppendByte appends one byte.
func (e *Encoder) AppendByte(v byte) { e.B = append(e.B, v) }

// AppendBytes appends uvarint(len(p)) and p.
func (e *Encoder) AppendBytes(p []byte) {
	e.B = binary.AppendUvarint(e.B, uint64(len(p)))
	e.B = append(e.B, p...)
}

// AppendString appends uvarint(len(s)) and s; it decodes with Bytes or String.
func (e *Encoder) AppendString(s string) {
	e.B = binary.AppendUvarint(e.B, uint64(len(s)))
	e.B = append(e.B, s...)
}

// ErrTruncated is the sticky error of a Decoder that ran out of input.
var ErrTruncated = errors.New("wal: truncated body")

// ErrBadUvarint is the sticky error of a Decoder that met a uvarint longer
// than 10 bytes or overflowing 64 bits.
var ErrBadUvarint = errors.New("wal: malformed uvarint")

// Decoder reads the fields an Encoder wrote. Its error is sticky: after the
// first failure every method returns the zero value and Err reports the
// failure with its byte offset, so a caller decodes every field and checks
// Err once. A truncated or hostile input never panics and never makes the
// Decoder allocate more than the input's length.
//
// A Decoder is a small value; keep it in a local variable and call its
// methods on that (they take a pointer receiver).
type Decoder struct {
	b   []byte
	off int
	err error
}

// NewDecoder returns a Decoder reading b. Bytes returns slices of b.
func NewDecoder(b []byte) Decoder { return Decoder{b: b} }

// Err returns the first error met, or nil.
func (d *Decoder) Err() error { return d.err }

// Len returns the number of bytes not yet read (0 after an error). A caller
// that expects to have consumed the whole body checks Len() == 0.
func (d *Decoder) Len() int {
	if d.err != nil {
		return 0
	}
	return len(d.b) - d.off
}

func (d *Decoder) fail(err error, what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s at byte %d of %d", err, what, d.off, len(d.b))
	}
}

// take returns the next n bytes, or nil and a sticky error if fewer remain.
func (d *Decoder) take(n int, what string) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b)-d.off {
		d.fail(ErrTruncated, what)
		return nil
	}
	p := d.b[d.off : d.off+n : d.off+n]
	d.off += n
	return p
}

// Uvarint reads an unsigned varint.
func (d *Decoder) Uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	switch {
	case n == 0:
		d.fail(ErrTruncated, "uvarint")
		return 0
	case n < 0:
		d.fail(ErrBadUvarint, "uvarint")
		return 0
	}
	d.off += n
	return v
}

// Uint16 reads 2 big-endian bytes.
func (d *Decoder) Uint16() uint16 {
	p := d.take(2, "uint16")
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint16(p)
}

// Byte reads one byte.
func (d *Decoder) Byte() byte {
	p := d.take(1, "byte")
	if p == nil {
		return 0
	}
	return p[0]
}

// Bytes reads a length-prefixed byte string. The result aliases the input
// (capacity clipped, so appending to it never overwrites the input); copy it
// to keep it beyond the input's lifetime. An empty string reads as a non-nil
// empty slice; nil means an error.
func (d *Decoder) Bytes() []byte {
	n := d.Uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)-d.off) {
		d.fail(ErrTruncated, fmt.Sprintf("%d-byte string", n))
		return nil
	}
	return d.take(int(n), "bytes")
}

// String reads a length-prefixed string (a copy).
func (d *Decoder) String() string {
	return string(d.Bytes())
}
