package wal

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// faults injects errors by operation; the zero value injects none.
type faults struct{ fail map[string]error }

func (f *faults) hook(dir, op string) error {
	if err := f.fail[op]; err != nil {
		return &os.PathError{Op: op, Path: dir, Err: err}
	}
	return nil
}

// reopenAfterSnapshot runs the startup sequence of doc.go ("Recovery") on
// dir with a snapshot at index and returns the records replayed after it.
func reopenAfterSnapshot(t *testing.T, dir string, index uint64) (*Log, []record) {
	t.Helper()
	l, _ := openLog(t, dir, Options{})
	if err := l.TruncateFront(index + 1); err != nil {
		t.Fatalf("TruncateFront(%d): %v", index+1, err)
	}
	return l, replayAll(t, l, index)
}

// A commit fails with ENOSPC: the log refuses everything (Append drops)
// until Recover; a failing snapshot leaves it failed;
// a good one restarts the log after every index the failed batch could have
// used, and a reopen replays only what came after.
func TestRecoverAfterFailedCommit(t *testing.T) {
	dir := t.TempDir()
	f := &faults{fail: map[string]error{}}
	l, _ := openLog(t, dir, Options{Fault: f.hook, SegmentSize: 512})
	appendN(t, l, 20, 4) // several segments
	f.fail["commit"] = syscall.ENOSPC
	for i := uint64(21); i <= 23; i++ {
		l.Append(typeFor(i), payloadFor(i))
	}
	err := l.Commit()
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("Commit = %v, want ENOSPC naming %s", err, dir)
	}
	l.Append(1, []byte("lost"))
	if l.Pending() != 0 {
		t.Fatalf("Append on a failed log: pending %d", l.Pending())
	}
	if l.Commit() != err || l.Err() != err {
		t.Fatal("the failure is not reported until Recover")
	}

	// The disk is still full: the snapshot fails, nothing changes.
	snapErr := errors.New("snapshot: no space")
	if got := l.Recover(func(uint64) error { return snapErr }); got != snapErr {
		t.Fatalf("Recover = %v, want the snapshot's error", got)
	}
	if l.Err() != err || len(segments(t, dir)) < 2 {
		t.Fatal("a failed Recover changed the log")
	}
	f.fail["recover"] = syscall.EIO
	called := false
	if got := l.Recover(func(uint64) error { called = true; return nil }); !errors.Is(got, syscall.EIO) || called {
		t.Fatalf("Recover with an injected fault = %v (snapshot called: %v)", got, called)
	}

	// Space is back.
	delete(f.fail, "commit")
	delete(f.fail, "recover")
	var snapAt uint64
	if err := l.Recover(func(index uint64) error { snapAt = index; return nil }); err != nil {
		t.Fatal(err)
	}
	if snapAt != 23 {
		t.Fatalf("snapshot index %d, want 23 (the failed batch may be on disk)", snapAt)
	}
	if l.Err() != nil || l.LastIndex() != 23 || l.FirstIndex() != 24 || l.Size() != 0 {
		t.Fatalf("after Recover: err %v, first %d, last %d, size %d", l.Err(), l.FirstIndex(), l.LastIndex(), l.Size())
	}
	if segs := segments(t, dir); len(segs) != 1 || segs[0].index != 24 || segs[0].size != 0 {
		t.Fatalf("after Recover the log holds %+v, want one empty segment 24", segs)
	}
	appendN(t, l, 30, 5) // indexes 24..53, across segments again
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, recs := reopenAfterSnapshot(t, dir, 23)
	defer l.Close()
	checkRecords(t, recs, 24, 53)
}

// Failures in Sync and TruncateFront recover the same way; Recover on a
// healthy log does nothing.
func TestRecoverAfterSyncAndTruncateFailures(t *testing.T) {
	for _, op := range []string{"sync", "truncate"} {
		t.Run(op, func(t *testing.T) {
			dir := t.TempDir()
			f := &faults{fail: map[string]error{}}
			l, _ := openLog(t, dir, Options{Fault: f.hook, NoSync: op == "sync"})
			defer l.Close()
			appendN(t, l, 10, 10)
			if err := l.Recover(func(uint64) error { t.Fatal("snapshot on a healthy log"); return nil }); err != nil {
				t.Fatal(err)
			}
			f.fail[op] = syscall.EIO
			var err error
			if op == "sync" {
				err = l.Sync()
			} else {
				err = l.TruncateFront(5)
			}
			if !errors.Is(err, syscall.EIO) || l.Err() != err {
				t.Fatalf("%s = %v", op, err)
			}
			delete(f.fail, op)
			var snapAt uint64
			if err := l.Recover(func(index uint64) error { snapAt = index; return nil }); err != nil {
				t.Fatal(err)
			}
			if snapAt != 10 || l.LastIndex() != 10 || l.FirstIndex() != 11 {
				t.Fatalf("snapshot at %d, log %d..%d", snapAt, l.FirstIndex(), l.LastIndex())
			}
			appendN(t, l, 3, 3)
			if err := l.Sync(); err != nil {
				t.Fatal(err)
			}
			checkRecords(t, replayAll(t, l, 10), 11, 13)
		})
	}
}

// A real failed write can leave part of the batch on disk. Recover drops
// it with the rest of the files; a crash after the snapshot but before the
// restart leaves the torn tail and a snapshot ahead of the log, which the
// startup sequence repairs and moves past.
func TestRecoverWithTornTailOnDisk(t *testing.T) {
	for _, crash := range []bool{false, true} {
		name := map[bool]string{false: "recovered", true: "crash-before-restart"}[crash]
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			f := &faults{fail: map[string]error{}}
			l, _ := openLog(t, dir, Options{Fault: f.hook})
			appendN(t, l, 8, 4)
			f.fail["commit"] = syscall.ENOSPC
			for i := uint64(9); i <= 12; i++ {
				l.Append(typeFor(i), payloadFor(i))
			}
			if l.Commit() == nil {
				t.Fatal("commit did not fail")
			}
			// What the failed write left: record 9 whole, record 10 torn.
			segs := segments(t, dir)
			tail := segs[len(segs)-1].path
			entry := func(i uint64) []byte {
				rec := appendRecord(nil, typeFor(i), payloadFor(i))
				return append(binary.AppendUvarint(nil, uint64(len(rec))), rec...)
			}
			rec10 := entry(10)
			half := append(entry(9), rec10[:len(rec10)/2]...)
			appendFile(t, tail, half)

			snapPath := filepath.Join(t.TempDir(), "snapshot")
			snapshot := func(index uint64) error { return WriteSnapshot(snapPath, index, []byte("state")) }
			if crash {
				if err := snapshot(12); err != nil {
					t.Fatal(err)
				}
				l.tw.Close() // the process dies here
			} else {
				if err := l.Recover(snapshot); err != nil {
					t.Fatal(err)
				}
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
			}
			index, data, err := ReadSnapshot(snapPath)
			if err != nil || index != 12 || string(data) != "state" {
				t.Fatalf("snapshot: %d %q %v", index, data, err)
			}
			l, recs := reopenAfterSnapshot(t, dir, index)
			defer l.Close()
			if len(recs) != 0 {
				t.Fatalf("replayed %d records after the snapshot, want none", len(recs))
			}
			appendN(t, l, 2, 2)
			checkRecords(t, replayAll(t, l, 12), 13, 14)
		})
	}
}
