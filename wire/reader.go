package wire

import (
	"errors"
	"io"

	"github.com/valyala/bytebufferpool"
)

// Buffer sizes of the Reader. The broker keeps one Reader per connection,
// most of them idle, so the resting footprint is the inline array alone;
// bigger buffers are borrowed from readPool only while bytes are waiting in
// them.
const (
	// inlineSize bytes live inside the Reader: enough for a PINGREQ, an ack
	// or a small PUBLISH, read without touching the pool.
	inlineSize = 128
	// readBatch is what the Reader asks for once the peer has shown it has
	// more to send (a Read filled all the space offered): one Read then
	// brings many packets.
	readBatch = 32 << 10
	// minPooled is the smallest buffer taken from the pool, so that a packet
	// slightly over inlineSize does not seed the pool with tiny buffers.
	minPooled = 4 << 10
	// maxEmptyReads bounds Reads returning 0, nil in a row (as bufio does).
	maxEmptyReads = 100
)

// readPool holds the Reader's batch buffers. It is separate from any write
// buffer pool so that bytebufferpool calibrates it on read sizes only.
var readPool bytebufferpool.Pool

// Reader frames MQTT packets from a byte stream. It reads in batches, checks
// each packet's size against its maximum before buffering the body, and
// keeps a pooled buffer only while unconsumed bytes or the last returned
// body are in it. A Reader is used by one goroutine and must not be copied.
type Reader struct {
	r   io.Reader
	max int

	// Unconsumed bytes are buf[start:end]. buf is inline[:], bb.B when a
	// pooled buffer is held (bb != nil), or a plain heap slice left by
	// Release when the pending bytes did not fit inline.
	buf        []byte
	bb         *bytebufferpool.ByteBuffer
	start, end int

	hot  bool  // the last Read filled all the space it was offered
	rerr error // read error that came with data, returned once the data is used
	perr error // protocol error: the stream cannot be framed any further

	inline [inlineSize]byte
}

// NewReader returns a Reader of r that refuses packets whose total size
// (fixed header plus remaining length) exceeds maxPacketSize. A
// maxPacketSize <= 0 means the protocol limit.
func NewReader(r io.Reader, maxPacketSize int) *Reader {
	if maxPacketSize <= 0 || maxPacketSize > MaxRemainingLength+5 {
		maxPacketSize = MaxRemainingLength + 5
	}
	rd := &Reader{r: r, max: maxPacketSize}
	rd.buf = rd.inline[:]
	return rd
}

// ReadPacket returns the next packet's fixed header and body. The body
// aliases the Reader's buffer and is valid only until the next call to
// ReadPacket or Release: decode or copy it before then.
//
// io.EOF at a packet boundary is returned as io.EOF and in the middle of a
// packet as io.ErrUnexpectedEOF. Other read errors are returned as they are,
// once the complete packets read before them have been returned. Protocol
// errors (DecodeHeader's, ErrPacketTooLarge) are sticky: the stream cannot
// be resynchronised, so every later call returns the same error.
func (r *Reader) ReadPacket() (FixedHeader, []byte, error) {
	if r.perr != nil {
		return FixedHeader{}, nil, r.perr
	}
	if r.start == r.end {
		// The previous body is dead now: give the pool its buffer back
		// before blocking in Read.
		r.restInline()
	}
	for {
		fh, hl, err := DecodeHeader(r.buf[r.start:r.end])
		var need int
		switch {
		case err == nil:
			total := hl + fh.RemainingLength
			if total > r.max {
				// Refused on the header alone, before any buffer grows.
				r.perr = wrap(fh.Type.String(), ErrPacketTooLarge)
				return FixedHeader{}, nil, r.perr
			}
			if r.end-r.start >= total {
				body := r.buf[r.start+hl : r.start+total : r.start+total]
				r.start += total
				return fh, body, nil
			}
			need = total
		case err == ErrIncomplete:
			need = r.end - r.start + 1
		default:
			r.perr = err
			return FixedHeader{}, nil, err
		}
		if err := r.fill(need); err != nil {
			return FixedHeader{}, nil, err
		}
	}
}

// Release returns the pooled buffer, if any, and invalidates the last body.
// Bytes not yet consumed are kept, so the Reader still works afterwards.
func (r *Reader) Release() {
	if r.bb == nil {
		return
	}
	pending := r.buf[r.start:r.end]
	if len(pending) <= len(r.inline) {
		copy(r.inline[:], pending)
		r.buf = r.inline[:]
	} else {
		r.buf = append([]byte(nil), pending...)
	}
	r.start, r.end = 0, len(pending)
	readPool.Put(r.bb)
	r.bb = nil
}

// Buffered reports how many bytes have been read but not yet returned.
func (r *Reader) Buffered() int { return r.end - r.start }

// restInline drops every buffer but the inline one; only valid when no
// bytes are pending.
func (r *Reader) restInline() {
	if r.bb != nil {
		readPool.Put(r.bb)
		r.bb = nil
	}
	r.buf = r.inline[:]
	r.start, r.end = 0, 0
}

func (r *Reader) isInline() bool { return &r.buf[0] == &r.inline[0] }

// fill reads at least one more byte, after making room for need bytes from
// r.start (the packet being assembled).
func (r *Reader) fill(need int) error {
	if r.rerr != nil {
		err := r.rerr
		r.rerr = nil
		return r.eof(err)
	}
	r.makeRoom(need)
	for range maxEmptyReads {
		space := r.buf[r.end:]
		n, err := r.r.Read(space)
		if n < 0 || n > len(space) {
			return errors.New("wire: reader returned an invalid count")
		}
		if n > 0 {
			r.end += n
			r.hot = n == len(space)
			r.rerr = err
			return nil
		}
		if err != nil {
			return r.eof(err)
		}
	}
	return io.ErrNoProgress
}

// eof maps io.EOF in the middle of a packet to io.ErrUnexpectedEOF.
func (r *Reader) eof(err error) error {
	if err == io.EOF && r.end > r.start {
		return io.ErrUnexpectedEOF
	}
	return err
}

// makeRoom picks the buffer for the next Read so that need bytes fit from
// the front, moving the pending bytes there.
func (r *Reader) makeRoom(need int) {
	pending := r.end - r.start
	if pending == 0 {
		// Nothing buffered: wait in the inline array, so an idle
		// connection holds no pooled memory.
		r.restInline()
		return
	}
	want := need
	if r.hot && want < readBatch {
		want = readBatch // the peer is sending faster than we read
	}
	if want <= len(r.inline) {
		// A small partial packet from a quiet peer: keep it inline.
		if !r.isInline() {
			copy(r.inline[:], r.buf[r.start:r.end])
			if r.bb != nil {
				readPool.Put(r.bb)
				r.bb = nil
			}
			r.buf = r.inline[:]
		} else if r.start > 0 {
			copy(r.buf, r.buf[r.start:r.end])
		}
		r.start, r.end = 0, pending
		return
	}
	if r.bb != nil && len(r.buf) >= want {
		if r.start > 0 {
			copy(r.buf, r.buf[r.start:r.end])
			r.start, r.end = 0, pending
		}
		return
	}
	bb := readPool.Get()
	size := max(want, minPooled)
	if cap(bb.B) < size {
		bb.B = make([]byte, size)
	} else {
		bb.B = bb.B[:cap(bb.B)]
	}
	copy(bb.B, r.buf[r.start:r.end])
	if r.bb != nil {
		readPool.Put(r.bb)
	}
	r.bb, r.buf = bb, bb.B
	r.start, r.end = 0, pending
}
