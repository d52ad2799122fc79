package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrCorrupt is matched (errors.Is) by every *CorruptError.
var ErrCorrupt = errors.New("wal: log corrupt")

// CorruptError reports damage that Open or Replay will not repair because
// doing so could drop records that were acknowledged: a bad record followed by
// good ones, or a segment holding the wrong number of records.
type CorruptError struct {
	File   string // segment file
	Offset int64  // byte offset of the bad entry in File
	Next   int64  // byte offset of a valid record after it, or -1
	Err    error  // what is wrong at Offset
}

func (e *CorruptError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "wal: %s: %v at byte offset %d", e.File, e.Err, e.Offset)
	if e.Next >= 0 {
		fmt.Fprintf(&b, ", followed by a valid record at byte offset %d", e.Next)
	}
	fmt.Fprintf(&b, "; the log is damaged before its tail and iotd will not drop acknowledged records silently: "+
		"restore the data directory from a backup, or, to discard this record and everything after it, "+
		"truncate the file to %d bytes (truncate -s %d %s) and remove the segment files named after it", e.Offset, e.Offset, e.File)
	return b.String()
}

// Unwrap makes errors.Is(err, ErrCorrupt) true and exposes the reason.
func (e *CorruptError) Unwrap() []error { return []error{ErrCorrupt, e.Err} }

// segFile is one tidwall segment file: its name is its first index, 20 digits.
type segFile struct {
	path  string
	index uint64
}

// parseSegmentName applies tidwall's naming rule (wal.go load): 20 decimal
// digits, not zero.
func parseSegmentName(name string) (uint64, bool) {
	if len(name) < 20 {
		return 0, false
	}
	index, err := strconv.ParseUint(name[:20], 10, 64)
	if err != nil || index == 0 {
		return 0, false
	}
	return index, true
}

// listSegments returns dir's segment files in index order. Interrupted
// truncations (.START/.END files) must have been finished first.
func listSegments(dir string) ([]segFile, error) {
	ents, err := os.ReadDir(dir) // sorted by name, and so by index
	if err != nil {
		return nil, err
	}
	var segs []segFile
	for _, e := range ents {
		name := e.Name()
		if len(name) != 20 || e.IsDir() {
			continue
		}
		if index, ok := parseSegmentName(name); ok {
			segs = append(segs, segFile{path: filepath.Join(dir, name), index: index})
		}
	}
	return segs, nil
}

// finishTruncation completes a TruncateFront or TruncateBack that tidwall
// was doing when the process stopped, exactly as tidwall's load() would, and
// fsyncs the directory. tidwall writes the surviving part of the cut segment
// to <index>.START (or .END) through <name>.TEMP + fsync + rename, then
// deletes the segments it replaces and renames the file to <index>. Doing it
// here, before repair, means repair only ever sees plain segments. A leftover
// .TEMP file is a truncation that never took effect, and is removed.
func finishTruncation(dir string, logger *slog.Logger) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	type seg struct {
		name  string
		index uint64
	}
	var segs []seg
	startIdx, endIdx := -1, -1
	changed := false
	for _, e := range ents {
		name := e.Name()
		index, ok := parseSegmentName(name)
		if !ok || e.IsDir() {
			continue
		}
		if (len(name) == 31 && strings.HasSuffix(name, ".START.TEMP")) ||
			(len(name) == 29 && strings.HasSuffix(name, ".END.TEMP")) {
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return err
			}
			changed = true
			continue
		}
		isStart := len(name) == 26 && strings.HasSuffix(name, ".START")
		isEnd := len(name) == 24 && strings.HasSuffix(name, ".END")
		if len(name) != 20 && !isStart && !isEnd {
			continue
		}
		if isStart {
			startIdx = len(segs)
		} else if isEnd && endIdx == -1 {
			endIdx = len(segs)
		}
		segs = append(segs, seg{name, index})
	}
	if startIdx != -1 && endIdx != -1 {
		return fmt.Errorf("wal: %s holds both %s and %s: two interrupted truncations; "+
			"restore the data directory from a backup", dir, segs[startIdx].name, segs[endIdx].name)
	}
	path := func(name string) string { return filepath.Join(dir, name) }
	if startIdx != -1 {
		for _, s := range segs[:startIdx] {
			if err := os.Remove(path(s.name)); err != nil {
				return err
			}
		}
		name := segs[startIdx].name
		if err := os.Rename(path(name), path(name[:20])); err != nil {
			return err
		}
		logger.Warn("wal: finished an interrupted TruncateFront", "dir", dir, "first_segment", name[:20])
		changed = true
	}
	if endIdx != -1 {
		for _, s := range segs[endIdx+1:] {
			if err := os.Remove(path(s.name)); err != nil {
				return err
			}
		}
		name := segs[endIdx].name
		// The rename replaces the segment of the same index, if any.
		if err := os.Rename(path(name), path(name[:20])); err != nil {
			return err
		}
		logger.Warn("wal: finished an interrupted TruncateBack", "dir", dir, "last_segment", name[:20])
		changed = true
	}
	if changed {
		return syncDir(dir)
	}
	return nil
}

// segScan is what scanSegment found in one segment file.
type segScan struct {
	good    int   // bytes of valid records from offset 0
	records int   // valid records in data[:good]
	damage  error // why the entry at good is bad; nil if good == len(data)
	next    int   // offset of a valid record after the damage, or -1
}

// scanSegment walks the entries of one segment file and checks each record.
// At the first bad entry it looks for a valid record further on
// (findRecordAfter): finding one means the damage is not at the tail.
func scanSegment(data []byte) segScan {
	pos, n := 0, 0
	for pos < len(data) {
		rec, next, err := nextEntry(data, pos)
		if err == nil {
			_, _, err = parseRecord(rec)
		}
		if err != nil {
			if allZero(data[pos:]) {
				err = errZeroTail
			}
			return segScan{good: pos, records: n, damage: err, next: findRecordAfter(data, pos)}
		}
		pos = next
		n++
	}
	return segScan{good: pos, records: n, next: -1}
}

var errZeroTail = errors.New("zero-filled tail")

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// findRecordAfter returns the offset of the first valid record that starts
// after the bad entry at offset bad and begins a plausible chain of entries,
// or -1. A chain is plausible if following entry lengths from it lands
// exactly on the end of the file, on a trailing run of zeros, or on an entry
// that runs past the end (a torn last record). The chains are computed
// backwards in one pass (a bitset, 1 bit per byte), so only candidates that
// pass it pay for a CRC check; a false match needs a CRC32C collision, and
// errs towards refusing to start, never towards dropping data.
func findRecordAfter(data []byte, bad int) int {
	end := len(data)
	zeros := end // start of the trailing run of zero bytes
	for zeros > bad && data[zeros-1] == 0 {
		zeros--
	}
	lo := bad + 1
	if lo >= zeros {
		return -1
	}
	reach := make([]uint64, (end-lo)/64+1) // bit p-lo: a chain from p is plausible
	set := func(p int) { reach[(p-lo)/64] |= 1 << ((p - lo) % 64) }
	get := func(p int) bool { return reach[(p-lo)/64]&(1<<((p-lo)%64)) != 0 }
	for p := end; p >= lo; p-- {
		if p >= zeros {
			set(p)
			continue
		}
		size, n := binary.Uvarint(data[p:])
		switch {
		case n == 0: // length prefix cut by the end of the file
			set(p)
		case n < 0:
		case size > uint64(end-p-n): // torn entry
			set(p)
		case size >= recordOverhead && get(p+n+int(size)):
			set(p)
		}
	}
	for p := lo; p < zeros; p++ {
		if !get(p) {
			continue
		}
		rec, _, err := nextEntry(data, p)
		if err != nil {
			continue
		}
		if _, _, err := parseRecord(rec); err == nil {
			return p
		}
	}
	return -1
}

// Repair says what Open did to the log's tail.
type Repair struct {
	Truncated    bool   // records or bytes at the tail were dropped
	File         string // the segment file cut; if the cut reached back, the earliest one
	Offset       int64  // the byte offset File was cut at (its new size)
	DroppedBytes int64  // bytes removed, over every file touched
}

// repairTail finds the last good record of the log in dir and cuts everything
// after it. Model: etcd's wal.Repair, which truncates a torn last record.
//
// The tail segment is scanned entry by entry. At the first bad entry:
//   - if a valid record follows it (findRecordAfter), the damage is inside the
//     log, not at its tail: return a *CorruptError and change nothing;
//   - otherwise the entry and all bytes after it are the torn or zero-filled
//     remains of the last write: save them to <segment>.<offset>.broken
//     (unless they are all zeros), truncate the file there and fsync it.
//
// If the tail segment then holds no record, the log's last record is in the
// segment before, which is checked the same way. tidwall derives the last
// index from the tail segment's name and record count, so a previous segment
// holding fewer records than its index range (the tail cut reaches into it)
// means the empty tail segment is removed first (directory fsynced), and the
// previous segment becomes the tail.
func repairTail(dir string, logger *slog.Logger) (Repair, error) {
	var rep Repair
	segs, err := listSegments(dir)
	if err != nil {
		return rep, err
	}
	for i := len(segs) - 1; i >= 0; i-- {
		s := segs[i]
		data, err := os.ReadFile(s.path)
		if err != nil {
			return rep, err
		}
		sc := scanSegment(data)
		if sc.damage != nil && sc.next >= 0 {
			return rep, &CorruptError{File: s.path, Offset: int64(sc.good), Next: int64(sc.next), Err: sc.damage}
		}
		if i < len(segs)-1 {
			// segs[i+1] is the tail and holds no record.
			after := segs[i+1]
			want := after.index - s.index
			switch {
			case uint64(sc.records) > want:
				return rep, &CorruptError{File: s.path, Offset: int64(sc.good), Next: -1,
					Err: fmt.Errorf("segment holds %d records but the next segment %s starts %d indexes later",
						sc.records, filepath.Base(after.path), want)}
			case uint64(sc.records) == want:
				// Complete: the empty segment after it is a legitimate tail
				// (tidwall created it when this one filled up).
			default:
				fi, err := os.Stat(after.path)
				if err != nil {
					return rep, err
				}
				if err := os.Remove(after.path); err != nil {
					return rep, err
				}
				if err := syncDir(dir); err != nil {
					return rep, err
				}
				logger.Warn("wal: the log's tail was cut inside the segment before the (empty) tail segment; removed the tail segment",
					"file", s.path, "offset", len(data), "removed", after.path,
					"records", sc.records, "expected_records", want)
				rep = Repair{Truncated: true, File: s.path, Offset: int64(len(data)), DroppedBytes: rep.DroppedBytes + fi.Size()}
			}
		}
		if sc.damage != nil {
			if err := truncateTail(s.path, data, sc.good, logger, sc.damage); err != nil {
				return rep, err
			}
			rep = Repair{Truncated: true, File: s.path, Offset: int64(sc.good),
				DroppedBytes: rep.DroppedBytes + int64(len(data)-sc.good)}
		}
		if sc.records > 0 || i == 0 {
			break
		}
		if i < len(segs)-1 && uint64(sc.records) == segs[i+1].index-s.index {
			break
		}
	}
	return rep, nil
}

// truncateTail cuts path at off after saving the dropped bytes, unless they
// are all zeros, to path.<off>.broken for a post-mortem.
func truncateTail(path string, data []byte, off int, logger *slog.Logger, why error) error {
	dropped := data[off:]
	saved := ""
	if !allZero(dropped) {
		saved = fmt.Sprintf("%s.%d.broken", path, off)
		if err := writeFileAtomic(saved, dropped); err != nil {
			return fmt.Errorf("wal: save damaged tail of %s: %w", path, err)
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	err = f.Truncate(int64(off))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("wal: truncate damaged tail of %s at byte %d: %w", path, off, err)
	}
	logger.Warn("wal: truncated the log's damaged tail to its last good record",
		"file", path, "offset", off, "dropped_bytes", len(dropped), "reason", why.Error(), "saved_to", saved)
	return nil
}
