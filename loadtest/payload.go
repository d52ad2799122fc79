package loadtest

import "encoding/binary"

// HeaderSize is the smallest payload the load generator sends: every
// message starts with this header and is padded to the payload size.
//
//	bytes  0-3   run tag: random per run, so messages left on the same
//	             topics by another run are told apart instead of being
//	             counted as duplicates
//	bytes  4-7   publisher index within the run
//	bytes  8-15  sequence number, from 0 per publisher
//	bytes 16-23  send time: nanoseconds since the run's start on the
//	             monotonic clock (sender and receiver share the process)
//
// All fields are big-endian.
const HeaderSize = 24

// header is the decoded start of a load-test payload.
type header struct {
	Tag uint32
	Pub uint32
	Seq uint64
	TS  int64
}

// putHeader writes h into the first HeaderSize bytes of b, which must be
// at least that long. It does not touch the padding after it.
func putHeader(b []byte, h header) {
	_ = b[HeaderSize-1]
	binary.BigEndian.PutUint32(b[0:], h.Tag)
	binary.BigEndian.PutUint32(b[4:], h.Pub)
	binary.BigEndian.PutUint64(b[8:], h.Seq)
	binary.BigEndian.PutUint64(b[16:], uint64(h.TS))
}

// parseHeader reads the header from a received payload; ok is false if the
// payload is too short to be one of ours.
func parseHeader(b []byte) (h header, ok bool) {
	if len(b) < HeaderSize {
		return h, false
	}
	h.Tag = binary.BigEndian.Uint32(b[0:])
	h.Pub = binary.BigEndian.Uint32(b[4:])
	h.Seq = binary.BigEndian.Uint64(b[8:])
	h.TS = int64(binary.BigEndian.Uint64(b[16:]))
	return h, true
}

// newPayload returns a payload buffer of size bytes whose padding is a
// fixed, non-zero pattern (so a broker that compresses or truncates zeros
// gets no easy win); the header is written per message with putHeader.
func newPayload(size int) []byte {
	b := make([]byte, max(size, HeaderSize))
	for i := HeaderSize; i < len(b); i++ {
		b[i] = byte('a' + i%26)
	}
	return b
}
