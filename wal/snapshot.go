package wal

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
)

const (
	// snapMagic opens every snapshot file; its last byte is the layout version.
	snapMagic      = "IOTDSNP\x01"
	snapHeaderSize = len(snapMagic) + 8 + 8 // magic, index, data length
	filePerm       = 0o640
	dirPerm        = 0o750
)

// WriteSnapshot stores data as the state covering every log record with an
// index <= index. It writes path+".tmp", fsyncs it, renames it over path and
// fsyncs the directory, so a crash leaves either the old snapshot or the new
// one, never a mix. The caller must only snapshot records that are durable in
// the log (committed, and with NoSync also synced), and should call
// Log.TruncateFront(index+1) afterwards.
func WriteSnapshot(path string, index uint64, data []byte) error {
	buf := make([]byte, 0, snapHeaderSize+len(data)+crcSize)
	buf = append(buf, snapMagic...)
	buf = binary.LittleEndian.AppendUint64(buf, index)
	buf = binary.LittleEndian.AppendUint64(buf, uint64(len(data)))
	buf = append(buf, data...)
	buf = binary.LittleEndian.AppendUint32(buf, crc32.Checksum(buf, castagnoli))
	if err := writeFileAtomic(path, buf); err != nil {
		return fmt.Errorf("wal: write snapshot: %w", err)
	}
	return nil
}

// ReadSnapshot returns the index and state blob stored by WriteSnapshot. If
// there is no snapshot the error wraps os.ErrNotExist. A damaged snapshot is
// an error naming the file: the state it holds is not in the log any more, so
// the caller must stop rather than start from an empty state.
func ReadSnapshot(path string) (index uint64, data []byte, err error) {
	buf, err := os.ReadFile(path)
	if err != nil {
		return 0, nil, fmt.Errorf("wal: read snapshot: %w", err)
	}
	bad := func(why string) error {
		return fmt.Errorf("wal: snapshot %s is damaged (%s); restore it from a backup or remove the data directory to start empty", path, why)
	}
	if len(buf) < snapHeaderSize+crcSize {
		return 0, nil, bad(fmt.Sprintf("%d bytes, shorter than the %d-byte framing", len(buf), snapHeaderSize+crcSize))
	}
	if string(buf[:len(snapMagic)]) != snapMagic {
		return 0, nil, bad("bad magic or unknown version")
	}
	index = binary.LittleEndian.Uint64(buf[8:])
	n := binary.LittleEndian.Uint64(buf[16:])
	if n != uint64(len(buf)-snapHeaderSize-crcSize) {
		return 0, nil, bad(fmt.Sprintf("header says %d data bytes, file holds %d", n, len(buf)-snapHeaderSize-crcSize))
	}
	body := buf[:len(buf)-crcSize]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(buf[len(body):]) {
		return 0, nil, bad("checksum mismatch")
	}
	return index, body[snapHeaderSize:len(body):len(body)], nil
}

// ManifestFile is the name of the manifest inside the data directory.
const ManifestFile = "MANIFEST.json"

// ManifestVersion is the manifest layout this package writes and reads.
const ManifestVersion = 1

// Manifest records how the data directory is laid out, so a restart with
// another shard count can re-distribute state. Hash names the function that
// maps client IDs to shards.
type Manifest struct {
	Version int    `json:"version"`
	Shards  int    `json:"shards"`
	Hash    string `json:"hash"`
}

// ReadManifest reads dir/MANIFEST.json. If there is none the error wraps
// os.ErrNotExist. A manifest that does not parse, or has a version this code
// does not know, is an error naming the file.
func ReadManifest(dir string) (Manifest, error) {
	path := filepath.Join(dir, ManifestFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return Manifest{}, fmt.Errorf("wal: read manifest: %w", err)
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("wal: manifest %s does not parse (%v); fix or remove it", path, err)
	}
	if m.Version < 1 || m.Version > ManifestVersion {
		return Manifest{}, fmt.Errorf("wal: manifest %s has version %d; this iotd reads version %d", path, m.Version, ManifestVersion)
	}
	if m.Shards < 1 {
		return Manifest{}, fmt.Errorf("wal: manifest %s says %d shards; fix or remove it", path, m.Shards)
	}
	return m, nil
}

// WriteManifest writes dir/MANIFEST.json atomically (temp file, fsync, rename,
// directory fsync). A zero Version is written as ManifestVersion.
func WriteManifest(dir string, m Manifest) error {
	if m.Version == 0 {
		m.Version = ManifestVersion
	}
	if m.Shards < 1 {
		return fmt.Errorf("wal: write manifest: %d shards", m.Shards)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("wal: write manifest: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, ManifestFile), append(b, '\n')); err != nil {
		return fmt.Errorf("wal: write manifest: %w", err)
	}
	return nil
}

// writeFileAtomic replaces path with data so that a crash leaves the old or
// the new content: write path+".tmp", fsync, rename, fsync the directory.
func writeFileAtomic(path string, data []byte) (err error) {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, filePerm)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// syncDir fsyncs a directory so that file creations, renames and removals in
// it survive a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}
