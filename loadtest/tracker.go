package loadtest

import "math/bits"

// maxSeqGap bounds how far above the lowest missing sequence number a
// received one may be. A larger gap means a corrupted or foreign payload,
// and tracking it would cost gap/8 bytes of bitmap (here at most 128 MiB).
const maxSeqGap = 1 << 30

// seqTracker accounts for one publisher -> subscriber stream: which
// sequence numbers arrived, how many twice, how many after a later one.
// It is owned by the subscriber's reader goroutine.
//
// Memory is one bit per sequence number between the lowest one not yet
// received and the highest one received: a stream without loss keeps a
// few words, a lossy one grows by one bit per message after the first gap.
type seqTracker struct {
	base  uint64   // every seq < base has been received; a multiple of 64
	words []uint64 // bit i of words[k]: seq base+64k+i received
	next  uint64   // highest seq received + 1; 0 before the first

	Received   uint64 // deliveries, duplicates included
	Distinct   uint64 // distinct sequence numbers received
	Dups       uint64 // deliveries of a sequence number already received
	OutOfOrder uint64 // first deliveries of a seq lower than one already received
}

// Add records one delivery of seq. It reports false, recording nothing, if
// seq is implausibly far ahead (see maxSeqGap).
func (t *seqTracker) Add(seq uint64) bool {
	if seq < t.base {
		t.Received++
		t.Dups++
		return true
	}
	off := seq - t.base
	if off >= maxSeqGap {
		return false
	}
	t.Received++
	w, bit := int(off/64), uint64(1)<<(off%64)
	if w >= len(t.words) {
		t.words = append(t.words, make([]uint64, w+1-len(t.words))...)
	}
	if t.words[w]&bit != 0 {
		t.Dups++
		return true
	}
	t.words[w] |= bit
	t.Distinct++
	if seq+1 < t.next {
		t.OutOfOrder++
	} else {
		t.next = seq + 1
	}
	// Drop leading words that are complete; in a stream without loss this
	// keeps the bitmap at a word or two.
	n := 0
	for n < len(t.words) && t.words[n] == ^uint64(0) {
		n++
	}
	if n > 0 {
		t.base += uint64(n) * 64
		t.words = t.words[:copy(t.words, t.words[n:])]
	}
	return true
}

// Next reports the highest sequence number received plus one (0 before
// the first delivery).
func (t *seqTracker) Next() uint64 { return t.next }

// Lost reports how many of the sequence numbers 0..expected-1 never
// arrived.
func (t *seqTracker) Lost(expected uint64) uint64 {
	if expected <= t.base {
		return 0
	}
	missing := expected - t.base // candidates not covered by base
	have := uint64(0)
	for k, w := range t.words {
		lo := uint64(k) * 64
		if lo >= missing {
			break
		}
		if hi := lo + 64; hi > missing {
			w &= (uint64(1) << (missing - lo)) - 1
		}
		have += uint64(bits.OnesCount64(w))
	}
	return missing - have
}
