package wal

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkCommit: one op is one Commit of a batch of 100-byte records. With
// fsync, ns/op is the group-commit latency a shard loop iteration pays before
// it may acknowledge; records/s is what one shard's log sustains.
func BenchmarkCommit(b *testing.B) {
	payload := bytes.Repeat([]byte("p"), 100)
	for _, mode := range []string{"fsync", "nosync"} {
		for _, batch := range []int{1, 16, 256} {
			b.Run(fmt.Sprintf("%s/batch=%d", mode, batch), func(b *testing.B) {
				l, _ := openLog(b, b.TempDir(), Options{NoSync: mode == "nosync"})
				defer l.Close()
				b.SetBytes(int64(batch * len(payload)))
				b.ReportAllocs()
				commits := 0
				for b.Loop() {
					for range batch {
						l.Append(1, payload)
					}
					if err := l.Commit(); err != nil {
						b.Fatal(err)
					}
					commits++
				}
				b.ReportMetric(float64(commits*batch)/b.Elapsed().Seconds(), "records/s")
			})
		}
	}
}

// BenchmarkFsync is the disk's raw cost: a 100-byte append and an fsync on a
// plain file, the floor under BenchmarkCommit/fsync.
func BenchmarkFsync(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "f"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	payload := bytes.Repeat([]byte("p"), 100)
	for b.Loop() {
		if _, err := f.Write(payload); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReplay: one op replays a log of 100,000 100-byte records (about
// 10 MB in one segment), checking every CRC, as recovery does.
func BenchmarkReplay(b *testing.B) {
	const n = 100000
	dir := b.TempDir()
	l, _ := openLog(b, dir, Options{NoSync: true})
	payload := bytes.Repeat([]byte("p"), 100)
	for i := 0; i < n; i++ {
		l.Append(1, payload)
		if l.Pending() == 1000 {
			if err := l.Commit(); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := l.Sync(); err != nil {
		b.Fatal(err)
	}
	b.Run("replay", func(b *testing.B) {
		b.SetBytes(int64(n * len(payload)))
		b.ReportAllocs()
		for b.Loop() {
			count := 0
			if err := l.Replay(0, func(uint64, byte, []byte) error { count++; return nil }); err != nil || count != n {
				b.Fatalf("replayed %d: %v", count, err)
			}
		}
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "records/s")
	})
	l.Close()
	// Open (tail scan + tidwall load) then Replay: a shard's recovery time.
	b.Run("open+replay", func(b *testing.B) {
		b.SetBytes(int64(n * len(payload)))
		for b.Loop() {
			l, _ := openLog(b, dir, Options{NoSync: true})
			count := 0
			if err := l.Replay(0, func(uint64, byte, []byte) error { count++; return nil }); err != nil || count != n {
				b.Fatalf("replayed %d: %v", count, err)
			}
			l.Close()
		}
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "records/s")
	})
}
