package wal

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	twal "github.com/tidwall/wal"

	"iotd/internal/syncbuf"
)

func TestEmptyLog(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b") // missing parents are created
	l, rep := openLog(t, dir, Options{})
	if rep.Truncated {
		t.Fatalf("new log repaired: %+v", rep)
	}
	if l.FirstIndex() != 1 || l.LastIndex() != 0 || l.Pending() != 0 || l.Size() != 0 {
		t.Fatalf("new log: first %d last %d pending %d size %d", l.FirstIndex(), l.LastIndex(), l.Pending(), l.Size())
	}
	if err := l.Commit(); err != nil {
		t.Fatalf("Commit with nothing pending: %v", err)
	}
	checkRecords(t, replayAll(t, l, 0), 1, 0)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, rep = openLog(t, dir, Options{})
	defer l.Close()
	if rep.Truncated || l.FirstIndex() != 1 || l.LastIndex() != 0 {
		t.Fatalf("reopened empty log: %+v first %d last %d", rep, l.FirstIndex(), l.LastIndex())
	}
}

func TestAppendCommitReplayAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	l, _ := openLog(t, dir, Options{})
	l.Append(typeFor(1), payloadFor(1))
	l.Append(typeFor(2), payloadFor(2))
	if l.Pending() != 2 || l.LastIndex() != 0 {
		t.Fatalf("pending %d last %d", l.Pending(), l.LastIndex())
	}
	checkRecords(t, replayAll(t, l, 0), 1, 0) // pending records are not replayed
	if err := l.Commit(); err != nil {
		t.Fatal(err)
	}
	if l.Pending() != 0 || l.LastIndex() != 2 || l.FirstIndex() != 1 {
		t.Fatalf("after commit: pending %d first %d last %d", l.Pending(), l.FirstIndex(), l.LastIndex())
	}
	appendN(t, l, 98, 7)
	checkRecords(t, replayAll(t, l, 0), 1, 100)
	checkRecords(t, replayAll(t, l, 57), 58, 100)
	checkRecords(t, replayAll(t, l, 100), 101, 100)

	// Append copies the payload.
	p := []byte("mutable")
	l.Append(3, p)
	copy(p, "XXXXXXX")
	if err := l.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l, rep := openLog(t, dir, Options{})
	defer l.Close()
	if rep.Truncated {
		t.Fatalf("clean log repaired: %+v", rep)
	}
	if l.LastIndex() != 101 {
		t.Fatalf("LastIndex after reopen = %d", l.LastIndex())
	}
	recs := replayAll(t, l, 0)
	checkRecords(t, recs[:100], 1, 100)
	if r := recs[100]; r.index != 101 || r.typ != 3 || r.payload != "mutable" {
		t.Fatalf("record 101 = %+v", r)
	}
	checkTailPrediction(t, l)
	l.Append(typeFor(102), payloadFor(102))
	if err := l.Commit(); err != nil {
		t.Fatal(err)
	}
	if l.LastIndex() != 102 {
		t.Fatalf("LastIndex = %d", l.LastIndex())
	}
}

func TestReplayStopsOnCallbackError(t *testing.T) {
	l, _ := openLog(t, t.TempDir(), Options{})
	defer l.Close()
	appendN(t, l, 10, 10)
	stop := errors.New("stop")
	n := 0
	err := l.Replay(0, func(uint64, byte, []byte) error {
		n++
		if n == 4 {
			return stop
		}
		return nil
	})
	if err != stop || n != 4 {
		t.Fatalf("Replay = %v after %d records, want the callback's error after 4", err, n)
	}
}

// Many small segments: cycling, Size, and the model of tidwall's cycling
// rule (checked after every commit by appendN) for batches of every shape.
func TestSegmentsAndSize(t *testing.T) {
	for _, segSize := range []int{150, 1000} {
		for _, batch := range []int{1, 5, 100} {
			dir := t.TempDir()
			// NoSync: the cycling model does not depend on fsync, and 4000
			// fsyncs would make the test slow.
			l, _ := openLog(t, dir, Options{SegmentSize: segSize, NoSync: true})
			appendN(t, l, 80, batch)
			segs := segments(t, dir)
			if len(segs) < 3 {
				t.Fatalf("segment size %d: %d segments", segSize, len(segs))
			}
			for i, s := range segs {
				if i+1 < len(segs) && uint64(len(s.offsets)) != segs[i+1].index-s.index {
					t.Fatalf("segment %s holds %d records, next starts at %d", s.path, len(s.offsets), segs[i+1].index)
				}
			}
			checkRecords(t, replayAll(t, l, 0), 1, 80)
			checkRecords(t, replayAll(t, l, 50), 51, 80)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l, rep := openLog(t, dir, Options{SegmentSize: segSize, NoSync: true})
			if rep.Truncated {
				t.Fatalf("clean log repaired: %+v", rep)
			}
			checkTailPrediction(t, l)
			appendN(t, l, 20, batch)
			checkRecords(t, replayAll(t, l, 0), 1, 100)
			l.Close()
		}
	}
}

// A log reopened with a smaller SegmentSize than its tail segment already
// has starts a new segment before the next batch, as tidwall does.
func TestSegmentSizeShrinksBetweenRuns(t *testing.T) {
	dir := t.TempDir()
	l, _ := openLog(t, dir, Options{SegmentSize: 1 << 20})
	appendN(t, l, 50, 50)
	l.Close()
	l, _ = openLog(t, dir, Options{SegmentSize: 256})
	defer l.Close()
	appendN(t, l, 20, 4)
	if n := len(segments(t, dir)); n < 2 {
		t.Fatalf("%d segments", n)
	}
	checkRecords(t, replayAll(t, l, 0), 1, 70)
}

func TestTruncateFront(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 1000}
	l, _ := openLog(t, dir, opts)
	appendN(t, l, 100, 5)
	nsegs := len(segments(t, dir))

	if err := l.TruncateFront(1); err != nil { // nothing before index 1
		t.Fatal(err)
	}
	if err := l.TruncateFront(37); err != nil {
		t.Fatal(err)
	}
	if l.FirstIndex() != 37 || l.LastIndex() != 100 {
		t.Fatalf("first %d last %d", l.FirstIndex(), l.LastIndex())
	}
	if n := len(segments(t, dir)); n >= nsegs {
		t.Fatalf("%d segments before, %d after", nsegs, n)
	}
	checkTailPrediction(t, l)
	checkRecords(t, replayAll(t, l, 36), 37, 100)
	checkRecords(t, replayAll(t, l, 80), 81, 100)
	if err := l.Replay(10, func(uint64, byte, []byte) error { return nil }); err == nil ||
		!strings.Contains(err.Error(), "records 11..36 are missing") {
		t.Fatalf("Replay before the first index: %v", err)
	}
	if err := l.TruncateFront(20); err != nil { // already gone: no-op
		t.Fatal(err)
	}
	l.Close()

	l, _ = openLog(t, dir, opts)
	if l.FirstIndex() != 37 || l.LastIndex() != 100 {
		t.Fatalf("reopened: first %d last %d", l.FirstIndex(), l.LastIndex())
	}
	checkRecords(t, replayAll(t, l, 36), 37, 100)

	// Into the tail segment.
	if err := l.TruncateFront(99); err != nil {
		t.Fatal(err)
	}
	checkTailPrediction(t, l)
	checkRecords(t, replayAll(t, l, 98), 99, 100)
	appendN(t, l, 5, 2)
	checkRecords(t, replayAll(t, l, 98), 99, 105)

	// Every record: the log is empty and indexes continue.
	if err := l.TruncateFront(106); err != nil {
		t.Fatal(err)
	}
	if l.FirstIndex() != 106 || l.LastIndex() != 105 || l.Size() != 0 {
		t.Fatalf("emptied: first %d last %d size %d", l.FirstIndex(), l.LastIndex(), l.Size())
	}
	checkRecords(t, replayAll(t, l, 105), 106, 105)
	l.Close()

	l, rep := openLog(t, dir, opts)
	defer l.Close()
	if rep.Truncated || l.FirstIndex() != 106 || l.LastIndex() != 105 {
		t.Fatalf("reopened empty: %+v first %d last %d", rep, l.FirstIndex(), l.LastIndex())
	}
	appendN(t, l, 3, 3)
	checkRecords(t, replayAll(t, l, 105), 106, 108)
}

// A log behind its snapshot (records lost in NoSync mode) is moved forward by
// TruncateFront(S+1); until then Replay(S) refuses.
func TestTruncateFrontPastEnd(t *testing.T) {
	dir := t.TempDir()
	l, _ := openLog(t, dir, Options{SegmentSize: 500})
	appendN(t, l, 20, 4)
	const snap = 50
	if err := l.Replay(snap, func(uint64, byte, []byte) error { return nil }); err == nil ||
		!strings.Contains(err.Error(), "TruncateFront(51)") {
		t.Fatalf("Replay past the end: %v", err)
	}
	l.Append(1, []byte("pending"))
	if err := l.TruncateFront(snap + 1); err == nil {
		t.Fatal("TruncateFront past the end with records pending succeeded")
	}
	if err := l.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := l.TruncateFront(snap + 1); err != nil {
		t.Fatal(err)
	}
	if l.FirstIndex() != snap+1 || l.LastIndex() != snap {
		t.Fatalf("first %d last %d", l.FirstIndex(), l.LastIndex())
	}
	if segs := segments(t, dir); len(segs) != 1 || segs[0].index != snap+1 || segs[0].size != 0 {
		t.Fatalf("segments after restart: %+v", segs)
	}
	appendN(t, l, 4, 4)
	l.Close()
	l, _ = openLog(t, dir, Options{SegmentSize: 500})
	defer l.Close()
	checkRecords(t, replayAll(t, l, snap), snap+1, snap+4)
}

// A crash inside tidwall's TruncateFront leaves <index>.START next to the
// old segments; Open finishes the truncation. A leftover .TEMP is removed.
func TestInterruptedTruncateFront(t *testing.T) {
	dir := t.TempDir()
	l, _ := openLog(t, dir, Options{SegmentSize: 1000})
	appendN(t, l, 60, 3)
	l.Close()
	segs := segments(t, dir)
	s := segs[1]
	data, err := os.ReadFile(s.path)
	if err != nil {
		t.Fatal(err)
	}
	keep := s.index + 2
	start := filepath.Join(dir, segmentFileName(keep)+".START")
	if err := os.WriteFile(start, data[s.offsets[2]:], 0o640); err != nil {
		t.Fatal(err)
	}
	temp := filepath.Join(dir, segmentFileName(segs[2].index+1)+".START.TEMP")
	if err := os.WriteFile(temp, []byte("half-written"), 0o640); err != nil {
		t.Fatal(err)
	}
	var logs syncbuf.Buffer
	l, rep := openLog(t, dir, Options{SegmentSize: 1000, Logger: testLogger(t, &logs)})
	defer l.Close()
	if rep.Truncated || l.FirstIndex() != keep || l.LastIndex() != 60 {
		t.Fatalf("%+v first %d last %d", rep, l.FirstIndex(), l.LastIndex())
	}
	checkRecords(t, replayAll(t, l, keep-1), keep, 60)
	for _, p := range []string{start, temp, segs[0].path} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists", p)
		}
	}
	if !strings.Contains(logs.String(), "interrupted TruncateFront") {
		t.Errorf("not logged: %s", logs.String())
	}
}

func segmentFileName(index uint64) string {
	return strings.Repeat("0", 20-len(uitoa(index))) + uitoa(index)
}

func uitoa(v uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}

func TestNoSyncThenSync(t *testing.T) {
	dir := t.TempDir()
	l, _ := openLog(t, dir, Options{NoSync: true, SegmentSize: 500})
	appendN(t, l, 40, 8) // several segments: the directory needs an fsync too
	if !l.dirDirty {
		t.Fatal("new segments in NoSync mode did not mark the directory for Sync")
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if l.dirDirty {
		t.Fatal("Sync did not fsync the directory")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, _ = openLog(t, dir, Options{NoSync: true})
	defer l.Close()
	checkRecords(t, replayAll(t, l, 0), 1, 40)
}

// A write error fails the log for good: Commit, Sync and TruncateFront return
// the same error, Append does nothing, Close reports it.
func TestCommitAfterFailedCommit(t *testing.T) {
	l, _ := openLog(t, t.TempDir(), Options{})
	appendN(t, l, 3, 3)
	// Inject the failure underneath: tidwall's WriteBatch now fails.
	if err := l.tw.Close(); err != nil {
		t.Fatal(err)
	}
	l.Append(1, []byte("x"))
	err := l.Commit()
	if err == nil || !errors.Is(err, twal.ErrClosed) || !strings.Contains(err.Error(), "restart") {
		t.Fatalf("Commit = %v", err)
	}
	if l.Pending() != 0 || l.LastIndex() != 3 {
		t.Fatalf("pending %d last %d after failure", l.Pending(), l.LastIndex())
	}
	l.Append(1, []byte("y"))
	if l.Pending() != 0 {
		t.Fatal("Append on a failed log queued a record")
	}
	for name, got := range map[string]error{
		"Commit":        l.Commit(),
		"Sync":          l.Sync(),
		"TruncateFront": l.TruncateFront(2),
		"Replay":        l.Replay(0, func(uint64, byte, []byte) error { return nil }),
		"Err":           l.Err(),
	} {
		if got != err {
			t.Errorf("%s after failure = %v, want the commit error", name, got)
		}
	}
	if got := l.Close(); got != err {
		t.Errorf("Close after failure = %v", got)
	}
}

func TestClosedLog(t *testing.T) {
	l, _ := openLog(t, t.TempDir(), Options{})
	appendN(t, l, 2, 2)
	l.Append(1, []byte("dropped"))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l.Append(1, []byte("x"))
	for name, err := range map[string]error{
		"Close":         l.Close(),
		"Commit":        l.Commit(),
		"Sync":          l.Sync(),
		"TruncateFront": l.TruncateFront(2),
		"Replay":        l.Replay(0, func(uint64, byte, []byte) error { return nil }),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s on a closed log = %v", name, err)
		}
	}
}

func TestAppendTypeZeroPanics(t *testing.T) {
	l, _ := openLog(t, t.TempDir(), Options{})
	defer l.Close()
	defer func() {
		if recover() == nil {
			t.Fatal("Append(0, ...) did not panic")
		}
	}()
	l.Append(0, nil)
}

// Replay checks the segments Open does not read.
func TestReplayFindsDamageInOlderSegment(t *testing.T) {
	dir := t.TempDir()
	l, _ := openLog(t, dir, Options{SegmentSize: 1000})
	appendN(t, l, 60, 3)
	l.Close()
	segs := segments(t, dir)
	bad := segs[1]
	off := bad.offsets[1]
	flipByte(t, bad.path, int64(off)+5, 0x20)

	l, rep := openLog(t, dir, Options{SegmentSize: 1000})
	defer l.Close()
	if rep.Truncated {
		t.Fatalf("repaired: %+v", rep)
	}
	// Records before the damage are delivered, then the error names the spot.
	var got []uint64
	err := l.Replay(0, func(index uint64, _ byte, _ []byte) error {
		got = append(got, index)
		return nil
	})
	var ce *CorruptError
	if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) || ce.File != bad.path || ce.Offset != int64(off) {
		t.Fatalf("Replay = %v, want a CorruptError at %s:%d", err, bad.path, off)
	}
	if want := bad.index; uint64(len(got)) != want {
		t.Fatalf("delivered %d records before the damage, want %d", len(got), want)
	}
	// Past the damaged segment, Replay does not read it.
	checkRecords(t, replayAll(t, l, segs[2].index-1), segs[2].index, 60)
}

func TestReplayFindsMissingSegment(t *testing.T) {
	dir := t.TempDir()
	l, _ := openLog(t, dir, Options{SegmentSize: 1000})
	appendN(t, l, 60, 3)
	l.Close()
	segs := segments(t, dir)
	if err := os.Remove(segs[1].path); err != nil {
		t.Fatal(err)
	}
	l, _ = openLog(t, dir, Options{SegmentSize: 1000})
	defer l.Close()
	err := l.Replay(0, func(uint64, byte, []byte) error { return nil })
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.File != segs[0].path || !strings.Contains(err.Error(), "should hold records") {
		t.Fatalf("Replay = %v", err)
	}
}

// Records appended before a TruncateFront are committed after it with the
// right indexes, and the size model follows the rewritten tail segment.
func TestTruncateFrontWithPendingRecords(t *testing.T) {
	dir := t.TempDir()
	l, _ := openLog(t, dir, Options{SegmentSize: 2000})
	defer l.Close()
	appendN(t, l, 30, 30)
	for i := uint64(31); i <= 40; i++ {
		l.Append(typeFor(i), payloadFor(i))
	}
	if err := l.TruncateFront(29); err != nil {
		t.Fatal(err)
	}
	if err := l.Commit(); err != nil {
		t.Fatal(err)
	}
	checkTailPrediction(t, l)
	checkRecords(t, replayAll(t, l, 28), 29, 40)
}
