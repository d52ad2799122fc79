package loadtest

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// feed adds seqs to a new tracker and checks its counters against a map
// based reference.
func feed(t *testing.T, expected uint64, seqs ...uint64) *seqTracker {
	t.Helper()
	var tr seqTracker
	seen := map[uint64]bool{}
	var dups, ooo, hi uint64
	for _, s := range seqs {
		require.True(t, tr.Add(s))
		switch {
		case seen[s]:
			dups++
		case len(seen) > 0 && s < hi:
			ooo++
		}
		if !seen[s] && s >= hi {
			hi = s + 1
		}
		seen[s] = true
	}
	lost := uint64(0)
	for s := uint64(0); s < expected; s++ {
		if !seen[s] {
			lost++
		}
	}
	require.Equal(t, uint64(len(seqs)), tr.Received, "received")
	require.Equal(t, uint64(len(seen)), tr.Distinct, "distinct")
	require.Equal(t, dups, tr.Dups, "dups")
	require.Equal(t, ooo, tr.OutOfOrder, "out of order")
	require.Equal(t, lost, tr.Lost(expected), "lost")
	require.Equal(t, hi, tr.Next(), "next")
	return &tr
}

func seqRange(from, to uint64) []uint64 {
	var s []uint64
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

func TestTrackerInOrder(t *testing.T) {
	tr := feed(t, 1000, seqRange(0, 1000)...)
	require.Zero(t, tr.Lost(1000))
	require.LessOrEqual(t, len(tr.words), 1, "a lossless stream keeps at most one word")
	require.Equal(t, uint64(960), tr.base)
}

func TestTrackerEmpty(t *testing.T) {
	var tr seqTracker
	require.Equal(t, uint64(10), tr.Lost(10))
	require.Zero(t, tr.Lost(0))
	require.Zero(t, tr.Next())
}

func TestTrackerLoss(t *testing.T) {
	// 5, 70 and 200-299 missing; the tail 990-999 never sent as far as the
	// receiver knows, but expected.
	seqs := append(seqRange(0, 5), seqRange(6, 70)...)
	seqs = append(seqs, seqRange(71, 200)...)
	seqs = append(seqs, seqRange(300, 990)...)
	tr := feed(t, 1000, seqs...)
	require.Equal(t, uint64(1+1+100+10), tr.Lost(1000))
	require.Zero(t, tr.OutOfOrder, "gaps are loss, not reordering")
	require.Zero(t, tr.Dups)
}

func TestTrackerDuplicates(t *testing.T) {
	// A QoS 1 redelivery of a window, both below and above the compacted base.
	seqs := append(seqRange(0, 300), seqRange(250, 310)...)
	seqs = append(seqs, 0, 63, 64, 309)
	tr := feed(t, 310, seqs...)
	require.Equal(t, uint64(50+4), tr.Dups)
	require.Zero(t, tr.OutOfOrder, "a duplicate is not also out of order")
	require.Zero(t, tr.Lost(310))
}

func TestTrackerOutOfOrder(t *testing.T) {
	tr := feed(t, 6, 0, 2, 1, 5, 3, 4)
	require.Equal(t, uint64(3), tr.OutOfOrder) // 1, 3 and 4 came after a later one
	require.Zero(t, tr.Lost(6))
	tr = feed(t, 3, 2, 1, 0)
	require.Equal(t, uint64(2), tr.OutOfOrder)
}

func TestTrackerLateGapFill(t *testing.T) {
	// The gap at 0 holds the base back until it is filled, then the whole
	// bitmap compacts.
	seqs := append(seqRange(1, 5000), 0)
	tr := feed(t, 5000, seqs...)
	require.Zero(t, tr.Lost(5000))
	require.LessOrEqual(t, len(tr.words), 1)
	require.Equal(t, uint64(1), tr.OutOfOrder)
}

func TestTrackerLostBeyondReceived(t *testing.T) {
	// Expected below what arrived: only 0..expected-1 count.
	tr := feed(t, 10, 0, 1, 2, 20, 21)
	require.Equal(t, uint64(7), tr.Lost(10))
	require.Equal(t, uint64(19), tr.Lost(24))
}

func TestTrackerRejectsImplausibleGap(t *testing.T) {
	var tr seqTracker
	require.False(t, tr.Add(maxSeqGap))
	require.False(t, tr.Add(1<<64-1))
	require.Zero(t, tr.Received)
	require.True(t, tr.Add(1<<20), "a gap of a million is plausible (loss)")
	require.Equal(t, uint64(1<<20), tr.Lost(1<<20))
}

func TestTrackerRandomized(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		n := uint64(rng.IntN(3000) + 1)
		var seqs []uint64
		for s := uint64(0); s < n; s++ {
			switch rng.IntN(20) {
			case 0: // lost
			case 1: // duplicated now
				seqs = append(seqs, s, s)
			case 2: // delivered late
				seqs = append(seqs, s+uint64(rng.IntN(5)))
			default:
				seqs = append(seqs, s)
			}
		}
		feed(t, n+5, seqs...)
	}
}
