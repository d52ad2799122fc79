package wal

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"iotd/internal/syncbuf"
)

// testLogger returns a logger that writes to buf and, with -v, to t.Log.
func testLogger(t testing.TB, buf *syncbuf.Buffer) *slog.Logger {
	if buf == nil {
		buf = &syncbuf.Buffer{}
	}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// payloadFor is record i's payload: its sizes vary from 40 to 229 bytes, so
// entries have 1- and 2-byte length prefixes.
func payloadFor(i uint64) []byte {
	p := fmt.Appendf(nil, "record-%d|", i)
	for len(p) < 40+int(i*7%190) {
		p = append(p, byte('a'+i%26))
	}
	return p
}

func typeFor(i uint64) byte { return byte(1 + i%250) }

func openLog(t testing.TB, dir string, opts Options) (*Log, Repair) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t, nil)
	}
	l, rep, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return l, rep
}

// appendN appends and commits records LastIndex()+1 .. LastIndex()+n in
// batches of batch records.
func appendN(t testing.TB, l *Log, n, batch int) {
	t.Helper()
	for i := 0; i < n; i++ {
		idx := l.LastIndex() + uint64(l.Pending()) + 1
		l.Append(typeFor(idx), payloadFor(idx))
		if l.Pending() == batch || i == n-1 {
			if err := l.Commit(); err != nil {
				t.Fatalf("Commit: %v", err)
			}
			checkTailPrediction(t, l)
		}
	}
}

// checkTailPrediction verifies that the Log's model of tidwall's segment
// cycling agrees with the files tidwall wrote.
func checkTailPrediction(t testing.TB, l *Log) {
	t.Helper()
	segs, err := listSegments(l.dir)
	if err != nil {
		t.Fatal(err)
	}
	var size int64
	var tail int64
	for _, s := range segs {
		fi, err := os.Stat(s.path)
		if err != nil {
			t.Fatal(err)
		}
		size += fi.Size()
		tail = fi.Size()
	}
	if size != l.Size() || tail != l.tail {
		t.Fatalf("Size() = %d, tail = %d; files hold %d, tail file %d (%d segments)", l.Size(), l.tail, size, tail, len(segs))
	}
}

type record struct {
	index   uint64
	typ     byte
	payload string
}

func replayAll(t testing.TB, l *Log, after uint64) []record {
	t.Helper()
	var out []record
	err := l.Replay(after, func(index uint64, typ byte, payload []byte) error {
		out = append(out, record{index, typ, string(payload)})
		return nil
	})
	if err != nil {
		t.Fatalf("Replay(%d): %v", after, err)
	}
	return out
}

// checkRecords verifies that recs are exactly records from..to as written by
// appendN.
func checkRecords(t testing.TB, recs []record, from, to uint64) {
	t.Helper()
	want := 0
	if to >= from {
		want = int(to - from + 1)
	}
	if len(recs) != want {
		t.Fatalf("replayed %d records, want %d (%d..%d)", len(recs), want, from, to)
	}
	for i, r := range recs {
		idx := from + uint64(i)
		if r.index != idx || r.typ != typeFor(idx) || r.payload != string(payloadFor(idx)) {
			t.Fatalf("record %d = {%d %d %q}, want {%d %d %q}", i, r.index, r.typ, r.payload, idx, typeFor(idx), payloadFor(idx))
		}
	}
}

// segInfo describes one segment file written by the package.
type segInfo struct {
	path    string
	index   uint64
	size    int64
	offsets []int // byte offset of each entry
}

func segments(t testing.TB, dir string) []segInfo {
	t.Helper()
	segs, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []segInfo
	for _, s := range segs {
		data, err := os.ReadFile(s.path)
		if err != nil {
			t.Fatal(err)
		}
		si := segInfo{path: s.path, index: s.index, size: int64(len(data))}
		for pos := 0; pos < len(data); {
			_, next, err := nextEntry(data, pos)
			if err != nil {
				break
			}
			si.offsets = append(si.offsets, pos)
			pos = next
		}
		out = append(out, si)
	}
	return out
}

func truncateFile(t testing.TB, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

func appendFile(t testing.TB, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// writeAt overwrites bytes of path at off.
func writeAt(t testing.TB, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// flipByte XORs the byte of path at off with mask.
func flipByte(t testing.TB, path string, off int64, mask byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	writeAt(t, path, off, []byte{data[off] ^ mask})
}

// copyDir copies the regular files of src into a new temp dir.
func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}
