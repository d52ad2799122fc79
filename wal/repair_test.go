package wal

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	twal "github.com/tidwall/wal"

	"iotd/internal/syncbuf"
)

// corruptFunc damages the files of a log written by the package and returns
// where the damage is expected to be reported: the file and offset the log
// is cut at (or the bad record, for wantErr cases) and how many records,
// 1..want, must survive.
type corruptFunc func(t *testing.T, segs []segInfo) (file string, off int64, want uint64)

// last returns the tail segment and the offset of its last entry.
func last(segs []segInfo) (segInfo, int64) {
	s := segs[len(segs)-1]
	return s, int64(s.offsets[len(s.offsets)-1])
}

// before returns the number of records wholly before entry k of s.
func before(s segInfo, k int) uint64 { return s.index - 1 + uint64(k) }

func TestRepair(t *testing.T) {
	const n = 30
	tests := []struct {
		name      string
		records   int // records written before the damage; default n
		segSize   int // 0: everything in one segment
		corrupt   corruptFunc
		truncated bool // Repair reports a cut
		wantErr   bool // Open fails with a CorruptError at (file, off)
		saved     bool // the dropped bytes are saved to <file>.<off>.broken
		noBytes   bool // the cut drops no bytes, only an empty segment
	}{
		{
			name: "torn last record", truncated: true, saved: true,
			corrupt: func(t *testing.T, segs []segInfo) (string, int64, uint64) {
				s, off := last(segs)
				truncateFile(t, s.path, s.size-3)
				return s.path, off, n - 1
			},
		},
		{
			name: "torn inside length prefix", truncated: true, saved: true,
			corrupt: func(t *testing.T, segs []segInfo) (string, int64, uint64) {
				s, off := last(segs) // the last record's entry has a 2-byte prefix
				truncateFile(t, s.path, off+1)
				return s.path, off, n - 1
			},
		},
		{
			name: "torn to the last record's first byte", truncated: true, saved: true,
			corrupt: func(t *testing.T, segs []segInfo) (string, int64, uint64) {
				s, off := last(segs)
				truncateFile(t, s.path, off+3)
				return s.path, off, n - 1
			},
		},
		{
			name: "zero-filled tail (4 KiB)", truncated: true,
			corrupt: func(t *testing.T, segs []segInfo) (string, int64, uint64) {
				s, _ := last(segs)
				appendFile(t, s.path, make([]byte, 4096))
				return s.path, s.size, n
			},
		},
		{
			name: "last record zeroed", truncated: true,
			corrupt: func(t *testing.T, segs []segInfo) (string, int64, uint64) {
				s, off := last(segs)
				writeAt(t, s.path, off, make([]byte, s.size-off))
				return s.path, off, n - 1
			},
		},
		{
			name: "end of last record zeroed and 4 KiB of zeros after it", truncated: true, saved: true,
			corrupt: func(t *testing.T, segs []segInfo) (string, int64, uint64) {
				s, off := last(segs)
				writeAt(t, s.path, s.size-20, make([]byte, 20))
				appendFile(t, s.path, make([]byte, 4096))
				return s.path, off, n - 1
			},
		},
		{
			name: "byte flipped in last record payload", truncated: true, saved: true,
			corrupt: func(t *testing.T, segs []segInfo) (string, int64, uint64) {
				s, off := last(segs)
				flipByte(t, s.path, off+10, 0x01)
				return s.path, off, n - 1
			},
		},
		{
			name: "byte flipped in last record checksum", truncated: true, saved: true,
			corrupt: func(t *testing.T, segs []segInfo) (string, int64, uint64) {
				s, off := last(segs)
				flipByte(t, s.path, s.size-1, 0x80)
				return s.path, off, n - 1
			},
		},
		{
			name: "last record's type set to 0", truncated: true, saved: true,
			corrupt: func(t *testing.T, segs []segInfo) (string, int64, uint64) {
				s, off := last(segs)
				writeAt(t, s.path, off+2, []byte{0})
				return s.path, off, n - 1
			},
		},
		{
			name: "length prefix of last record made shorter", truncated: true, saved: true,
			corrupt: func(t *testing.T, segs []segInfo) (string, int64, uint64) {
				s, off := last(segs)
				flipByte(t, s.path, off, 0x08)
				return s.path, off, n - 1
			},
		},
		{
			name: "length prefix of last record made huge", truncated: true, saved: true,
			corrupt: func(t *testing.T, segs []segInfo) (string, int64, uint64) {
				s, off := last(segs)
				flipByte(t, s.path, off+1, 0x40)
				return s.path, off, n - 1
			},
		},
		{
			name: "random garbage after the last record", truncated: true, saved: true,
			corrupt: func(t *testing.T, segs []segInfo) (string, int64, uint64) {
				s, _ := last(segs)
				junk := make([]byte, 100)
				rng := rand.New(rand.NewPCG(1, 2))
				for i := range junk {
					junk[i] = byte(rng.IntN(255) + 1)
				}
				appendFile(t, s.path, junk)
				return s.path, s.size, n
			},
		},
		{
			name: "torn first record: the log becomes empty", records: 1, truncated: true, saved: true,
			corrupt: func(t *testing.T, segs []segInfo) (string, int64, uint64) {
				s, _ := last(segs)
				truncateFile(t, s.path, s.size-1)
				return s.path, 0, 0
			},
		},
		{
			name: "empty log", records: 0,
			corrupt: func(t *testing.T, segs []segInfo) (string, int64, uint64) {
				return "", 0, 0
			},
		},
		{
			name: "empty log with a zero-filled tail", records: 0, truncated: true,
			corrupt: func(t *testing.T, segs []segInfo) (string, int64, uint64) {
				appendFile(t, segs[0].path, make([]byte, 4096))
				return segs[0].path, 0, 0
			},
		},
		{
			name: "byte flipped in a middle record", wantErr: true,
			corrupt: func(t *testing.T, segs []segInfo) (string, int64, uint64) {
				s := segs[0]
				flipByte(t, s.path, int64(s.offsets[10])+7, 0x04)
				return s.path, int64(s.offsets[10]), 0
			},
		},
		{
			name: "length prefix of a middle record made longer", wantErr: true,
			corrupt: func(t *testing.T, segs []segInfo) (string, int64, uint64) {
				s := segs[0]
				flipByte(t, s.path, int64(s.offsets[10]), 0x40)
				return s.path, int64(s.offsets[10]), 0
			},
		},
		{
			name: "length prefix of a middle record made huge", wantErr: true,
			corrupt: func(t *testing.T, segs []segInfo) (string, int64, uint64) {
				s := segs[0]
				off := s.offsets[20] // a 2-byte prefix
				writeAt(t, s.path, int64(off), []byte{0xff, 0xff, 0x7f})
				return s.path, int64(off), 0
			},
		},
		{
			name: "middle record zeroed", wantErr: true,
			corrupt: func(t *testing.T, segs []segInfo) (string, int64, uint64) {
				s := segs[0]
				writeAt(t, s.path, int64(s.offsets[5]), make([]byte, s.offsets[6]-s.offsets[5]))
				return s.path, int64(s.offsets[5]), 0
			},
		},
		{
			name: "middle record damaged and tail torn", wantErr: true,
			corrupt: func(t *testing.T, segs []segInfo) (string, int64, uint64) {
				s, _ := last(segs)
				flipByte(t, s.path, int64(s.offsets[3])+9, 0x10)
				truncateFile(t, s.path, s.size-5)
				return s.path, int64(s.offsets[3]), 0
			},
		},
		{
			name: "torn tail spanning into the previous segment", segSize: 1000, truncated: true, saved: true,
			corrupt: func(t *testing.T, segs []segInfo) (string, int64, uint64) {
				s, prev := segs[len(segs)-1], segs[len(segs)-2]
				k := len(prev.offsets) - 2
				truncateFile(t, s.path, 0)
				truncateFile(t, prev.path, int64(prev.offsets[k])+4)
				return prev.path, int64(prev.offsets[k]), before(prev, k)
			},
		},
		{
			name: "tail segment zero-filled and previous segment torn", segSize: 1000, truncated: true, saved: true,
			corrupt: func(t *testing.T, segs []segInfo) (string, int64, uint64) {
				s, prev := segs[len(segs)-1], segs[len(segs)-2]
				writeAt(t, s.path, 0, make([]byte, s.size))
				truncateFile(t, prev.path, prev.size-2)
				return prev.path, int64(prev.offsets[len(prev.offsets)-1]), before(prev, len(prev.offsets)-1)
			},
		},
		{
			name: "tail cut exactly at a record boundary of the previous segment", segSize: 1000, truncated: true, noBytes: true,
			corrupt: func(t *testing.T, segs []segInfo) (string, int64, uint64) {
				s, prev := segs[len(segs)-1], segs[len(segs)-2]
				k := len(prev.offsets) - 1
				truncateFile(t, s.path, 0)
				truncateFile(t, prev.path, int64(prev.offsets[k]))
				return prev.path, int64(prev.offsets[k]), before(prev, k)
			},
		},
		{
			name: "tail segment zero-filled, previous segment complete", segSize: 1000, truncated: true,
			corrupt: func(t *testing.T, segs []segInfo) (string, int64, uint64) {
				s := segs[len(segs)-1]
				writeAt(t, s.path, 0, make([]byte, s.size))
				return s.path, 0, s.index - 1
			},
		},
		{
			// What tidwall leaves when a batch fills a segment: not damage.
			name: "empty tail segment, previous segment complete", segSize: 1000,
			corrupt: func(t *testing.T, segs []segInfo) (string, int64, uint64) {
				s := segs[len(segs)-1]
				truncateFile(t, s.path, 0)
				return "", 0, s.index - 1
			},
		},
		{
			name: "byte flipped in the last record of the previous segment, tail segment empty", segSize: 1000, truncated: true, saved: true,
			corrupt: func(t *testing.T, segs []segInfo) (string, int64, uint64) {
				s, prev := segs[len(segs)-1], segs[len(segs)-2]
				truncateFile(t, s.path, 0)
				k := len(prev.offsets) - 1
				flipByte(t, prev.path, int64(prev.offsets[k])+6, 0x02)
				return prev.path, int64(prev.offsets[k]), before(prev, k)
			},
		},
		{
			name: "byte flipped in a middle record of the previous segment, tail segment empty", segSize: 1000, wantErr: true,
			corrupt: func(t *testing.T, segs []segInfo) (string, int64, uint64) {
				s, prev := segs[len(segs)-1], segs[len(segs)-2]
				truncateFile(t, s.path, 0)
				flipByte(t, prev.path, int64(prev.offsets[1])+6, 0x02)
				return prev.path, int64(prev.offsets[1]), 0
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			records := n
			if tt.records != 0 || strings.Contains(tt.name, "empty log") {
				records = tt.records
			}
			dir := t.TempDir()
			l, _ := openLog(t, dir, Options{SegmentSize: tt.segSize})
			appendN(t, l, records, 4)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			segs := segments(t, dir)
			file, off, want := tt.corrupt(t, segs)
			damaged := copyDir(t, dir)

			var logs syncbuf.Buffer
			l, rep, err := Open(dir, Options{SegmentSize: tt.segSize, Logger: testLogger(t, &logs)})
			if tt.wantErr {
				var ce *CorruptError
				if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) {
					t.Fatalf("Open = %v, want a CorruptError", err)
				}
				if ce.File != file || ce.Offset != off || ce.Next <= off {
					t.Fatalf("CorruptError at %s:%d (next %d), want %s:%d", ce.File, ce.Offset, ce.Next, file, off)
				}
				msg := err.Error()
				if !strings.Contains(msg, file) || !strings.Contains(msg, "offset "+strconv.FormatInt(off, 10)) {
					t.Fatalf("error does not name the file and offset: %s", msg)
				}
				// Nothing was changed.
				assertSameFiles(t, damaged, dir)
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer func() { l.Close() }()
			if rep.Truncated != tt.truncated {
				t.Fatalf("Repair = %+v, want Truncated %v", rep, tt.truncated)
			}
			if tt.truncated {
				if rep.File != file || rep.Offset != off || (rep.DroppedBytes > 0) == tt.noBytes {
					t.Fatalf("Repair = %+v, want a cut at %s:%d", rep, file, off)
				}
				fi, err := os.Stat(file)
				if err != nil || fi.Size() != off {
					t.Fatalf("%s is %v bytes (%v), want %d", file, fi.Size(), err, off)
				}
				out := logs.String()
				if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "file="+file) ||
					!strings.Contains(out, "offset="+strconv.FormatInt(off, 10)) {
					t.Fatalf("repair not logged at Warn with file and offset:\n%s", out)
				}
				_, err = os.Stat(file + "." + strconv.FormatInt(off, 10) + ".broken")
				if saved := err == nil; saved != tt.saved {
					t.Fatalf("dropped bytes saved: %v, want %v", saved, tt.saved)
				}
			} else if logs.String() != "" {
				t.Fatalf("clean open logged:\n%s", logs.String())
			}
			if l.LastIndex() != want {
				t.Fatalf("LastIndex = %d, want %d", l.LastIndex(), want)
			}
			checkRecords(t, replayAll(t, l, 0), 1, want)

			// The log goes on from there, and the next Open repairs nothing.
			appendN(t, l, 3, 3)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l, rep = openLog(t, dir, Options{SegmentSize: tt.segSize})
			if rep.Truncated {
				t.Fatalf("second Open repaired again: %+v", rep)
			}
			checkRecords(t, replayAll(t, l, 0), 1, want+3)
		})
	}
}

// assertSameFiles fails if the segment files of a and b differ.
func assertSameFiles(t *testing.T, a, b string) {
	t.Helper()
	ents, err := os.ReadDir(a)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		x, _ := os.ReadFile(filepath.Join(a, e.Name()))
		y, err := os.ReadFile(filepath.Join(b, e.Name()))
		if err != nil || !bytes.Equal(x, y) {
			t.Fatalf("%s changed (%v)", e.Name(), err)
		}
	}
}

// What repair exists for: tidwall/wal v1.2.1 alone fails to open a log whose
// last entry is torn (issue 21), and reads a zero-filled tail as empty
// entries, inventing records.
func TestTidwallAloneOnDamagedTail(t *testing.T) {
	dir := t.TempDir()
	l, _ := openLog(t, dir, Options{})
	appendN(t, l, 10, 10)
	l.Close()
	s, _ := last(segments(t, dir))

	torn := copyDir(t, dir)
	truncateFile(t, filepath.Join(torn, filepath.Base(s.path)), s.size-3)
	if tw, err := twal.Open(torn, Options{}.tidwall()); !errors.Is(err, twal.ErrCorrupt) {
		if tw != nil {
			tw.Close()
		}
		t.Fatalf("tidwall Open of a torn log = %v, want ErrCorrupt", err)
	}

	zeros := copyDir(t, dir)
	appendFile(t, filepath.Join(zeros, filepath.Base(s.path)), make([]byte, 100))
	tw, err := twal.Open(zeros, Options{}.tidwall())
	if err != nil {
		t.Fatal(err)
	}
	lastIdx, _ := tw.LastIndex()
	tw.Close()
	if lastIdx != 110 {
		t.Fatalf("tidwall LastIndex with 100 zero bytes = %d, want 110 (100 phantom entries)", lastIdx)
	}

	// Ours opens both with the right last index.
	for _, d := range []string{torn, zeros} {
		l, rep := openLog(t, d, Options{})
		if !rep.Truncated || (l.LastIndex() != 9 && l.LastIndex() != 10) {
			t.Fatalf("%s: %+v LastIndex %d", d, rep, l.LastIndex())
		}
		l.Close()
	}
}

// scanSegment on every cut of a segment: a cut at an entry boundary is clean,
// any other cut is a torn tail at the boundary before it, never an error.
func TestScanSegmentEveryCut(t *testing.T) {
	var data []byte
	var bounds []int
	for i := uint64(1); i <= 12; i++ {
		bounds = append(bounds, len(data))
		rec := appendRecord(nil, typeFor(i), payloadFor(i))
		data = append(binaryAppendUvarint(data, len(rec)), rec...)
	}
	bounds = append(bounds, len(data))
	for cut := 0; cut <= len(data); cut++ {
		sc := scanSegment(data[:cut])
		b := 0
		for _, x := range bounds {
			if x <= cut {
				b = x
			}
		}
		if sc.good != b || sc.next != -1 || (sc.damage == nil) != (b == cut) {
			t.Fatalf("cut %d: %+v, want good %d", cut, sc, b)
		}
	}
}

func binaryAppendUvarint(b []byte, n int) []byte {
	for n >= 0x80 {
		b = append(b, byte(n)|0x80)
		n >>= 7
	}
	return append(b, byte(n))
}
