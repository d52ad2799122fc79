package wal

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSnapshotRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "snapshot")
	if _, _, err := ReadSnapshot(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ReadSnapshot of a missing file = %v, want os.ErrNotExist", err)
	}
	for _, tc := range []struct {
		index uint64
		data  []byte
	}{
		{0, nil},
		{42, []byte("state")},
		{1 << 40, bytes.Repeat([]byte{0, 1, 2, 3}, 100000)},
	} {
		if err := WriteSnapshot(path, tc.index, tc.data); err != nil {
			t.Fatal(err)
		}
		index, data, err := ReadSnapshot(path)
		if err != nil || index != tc.index || !bytes.Equal(data, tc.data) {
			t.Fatalf("ReadSnapshot = %d, %d bytes, %v; want %d, %d bytes", index, len(data), err, tc.index, len(tc.data))
		}
	}
	if _, err := os.Stat(path + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temp file left behind: %v", err)
	}
}

func TestSnapshotCorrupt(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "snapshot")
	if err := WriteSnapshot(path, 7, []byte("some state blob")); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		damage func([]byte) []byte
		want   string
	}{
		{"flipped data byte", func(b []byte) []byte { b[snapHeaderSize+3] ^= 1; return b }, "checksum"},
		{"flipped index byte", func(b []byte) []byte { b[8] ^= 1; return b }, "checksum"},
		{"flipped checksum byte", func(b []byte) []byte { b[len(b)-1] ^= 1; return b }, "checksum"},
		{"truncated", func(b []byte) []byte { return b[:len(b)-3] }, "data bytes"},
		{"extended", func(b []byte) []byte { return append(b, 0) }, "data bytes"},
		{"shorter than the header", func(b []byte) []byte { return b[:10] }, "shorter"},
		{"empty", func(b []byte) []byte { return nil }, "shorter"},
		{"bad magic", func(b []byte) []byte { b[0] = 'X'; return b }, "magic"},
		{"zero-filled", func(b []byte) []byte { return make([]byte, len(b)) }, "magic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(path, tc.damage(bytes.Clone(good)), 0o640); err != nil {
				t.Fatal(err)
			}
			_, _, err := ReadSnapshot(path)
			if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ReadSnapshot = %v, want an error naming %s and %q", err, path, tc.want)
			}
			if errors.Is(err, os.ErrNotExist) {
				t.Fatal("a damaged snapshot reads as a missing one")
			}
		})
	}
}

// A failed write leaves the previous snapshot in place.
func TestSnapshotWriteFailureKeepsOld(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "snapshot")
	if err := WriteSnapshot(path, 1, []byte("old")); err != nil {
		t.Fatal(err)
	}
	// A directory where the temp file should go makes the write fail.
	if err := os.Mkdir(path+".tmp", 0o750); err != nil {
		t.Fatal(err)
	}
	if err := WriteSnapshot(path, 2, []byte("new")); err == nil {
		t.Fatal("WriteSnapshot succeeded")
	}
	index, data, err := ReadSnapshot(path)
	if err != nil || index != 1 || string(data) != "old" {
		t.Fatalf("after a failed write: %d %q %v", index, data, err)
	}
}

func TestManifest(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadManifest(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ReadManifest with none = %v", err)
	}
	m := Manifest{Shards: 8, Hash: "xxhash64"}
	if err := WriteManifest(dir, m); err != nil {
		t.Fatal(err)
	}
	got, err := ReadManifest(dir)
	if err != nil || got != (Manifest{Version: ManifestVersion, Shards: 8, Hash: "xxhash64"}) {
		t.Fatalf("ReadManifest = %+v, %v", got, err)
	}
	m2 := Manifest{Version: 1, Shards: 3, Hash: "xxhash64"}
	if err := WriteManifest(dir, m2); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadManifest(dir); err != nil || got != m2 {
		t.Fatalf("after rewrite: %+v, %v", got, err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, ManifestFile))
	if !strings.Contains(string(b), `"shards": 3`) {
		t.Fatalf("manifest is not readable JSON: %s", b)
	}
	if err := WriteManifest(dir, Manifest{Shards: 0}); err == nil {
		t.Fatal("WriteManifest with 0 shards succeeded")
	}
	path := filepath.Join(dir, ManifestFile)
	for _, bad := range []string{`{"version": 1, "shards": `, `{"version": 99, "shards": 2}`, `{"version": 1, "shards": 0}`, ``} {
		if err := os.WriteFile(path, []byte(bad), 0o640); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadManifest(dir); err == nil || !strings.Contains(err.Error(), path) || errors.Is(err, os.ErrNotExist) {
			t.Fatalf("ReadManifest(%q) = %v, want an error naming the file", bad, err)
		}
	}
}
