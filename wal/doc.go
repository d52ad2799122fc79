// Package wal is the durable log layer under iotd's persistent state: an
// append-only log of typed, checksummed records on github.com/tidwall/wal,
// group commit (many records, one write, one fsync), snapshots, a manifest,
// and recovery that drops a torn tail but refuses to drop anything else.
//
// Each shard owns one Log in its own directory and is its only user (tidwall
// indexes must be contiguous, so logs are not shared). A shard loop iteration
// Appends every record it creates, Commits once, and only then acknowledges
// the messages (DESIGN.md, "Durability promise").
//
// # On-disk layout
//
// A data directory holds, per shard, a log directory, a snapshot file, and
// one MANIFEST.json for the whole directory (the caller chooses the names):
//
//	data/MANIFEST.json
//	data/shard-0/wal/00000000000000000001     segment files (tidwall)
//	data/shard-0/wal/00000000000000004097
//	data/shard-0/snapshot                     state at some index
//
// # Segment files (tidwall/wal v1.2.1, LogFormat Binary)
//
// A log is a sequence of segment files. Each is named by the index of its
// first record as 20 decimal digits, so names sort by index, and holds the
// records up to the next segment's first index minus one (the tail segment:
// up to LastIndex). tidwall derives LastIndex from the tail segment alone:
// its name plus the number of entries in it. A segment file is a plain
// concatenation of entries, with no header or footer:
//
//	entry   = uvarint(len(record)) record
//
// tidwall starts a new segment when an entry takes the tail to SegmentSize
// bytes or more (and before a batch if the tail is already over it); it
// fsyncs the full segment before creating the next one. Commit fsyncs the
// directory when a batch created a segment file. An empty tail segment is
// legitimate: it is what tidwall leaves after filling a segment, or after
// TruncateFront removed every record.
//
// tidwall's TruncateFront writes the kept part of the cut segment to
// <index>.START (via <index>.START.TEMP, fsync, rename), deletes the older
// segments and renames <index>.START to <index>. tidwall's TruncateBack does
// the same with <index>.END. Open finishes such an interrupted truncation
// before anything else reads the directory, and removes leftover .TEMP files.
//
// tidwall stores no checksum. Our record, the content of one entry, is:
//
//	record  = type(1) payload crc(4)
//	type    = 1..255, the caller's record type; 0 is never valid, so a
//	          zero-filled block cannot read as a record
//	crc     = CRC-32C (Castagnoli) of type and payload, little-endian
//
// so the smallest record is 5 bytes and the smallest entry 6. Payloads are
// opaque to this package; Encoder and Decoder help callers lay them out
// (uvarints, big-endian uint16, uvarint-length-prefixed byte strings).
//
// # Repair rules (Open)
//
// Modeled on etcd's wal.Repair. A crash can leave the last write torn: the
// file ends inside a record, or the kernel had extended the file and the
// tail reads as zeros. tidwall's own Open then fails with ErrCorrupt
// (tidwall/wal issue 21) or, for zeros, reads them as empty entries. So Open
// scans the tail segment entry by entry, checking each record, before
// tidwall opens the directory. At the first bad entry (a length prefix that
// does not decode, an entry running past the end of the file, a record too
// short, a CRC mismatch, type 0):
//
//   - If a valid record follows it anywhere in the file (a record with a
//     correct CRC at which a chain of entry lengths starts that ends exactly
//     at the end of the file, at trailing zeros or at a torn entry), the
//     damage is not at the tail. Acknowledged records would be lost, so Open
//     returns a *CorruptError naming the file and byte offset, changes
//     nothing, and the broker does not start. The message says how to
//     proceed by hand (restore a backup, or truncate -s the file there).
//   - Otherwise the bad entry and everything after it are the remains of the
//     last write. The dropped bytes are saved to <segment>.<offset>.broken
//     unless they are all zeros (nothing reads these files again; the
//     operator deletes them); the file is truncated to the last good record
//     and fsynced; the action is logged at Warn with file, offset, dropped
//     bytes and reason; Repair reports it.
//
// If the tail segment then holds no record, the previous segment is checked
// the same way. If it holds fewer records than its index range (the damage
// reached back into it), the empty tail segment is removed (directory
// fsynced) and the previous segment is cut at its last good record and
// becomes the tail; if it holds them all, the empty tail stays.
//
// Earlier segments are not read by Open. Replay checks every record it
// delivers and that every segment holds exactly the records its name and the
// next one's promise; a failure there is a *CorruptError naming the file
// and offset, never a repair.
//
// What repair cannot tell apart: a power loss during an unsynced batch can
// persist the batch's pages out of order, leaving a zeroed hole followed by
// valid records. Those records were never acknowledged, but they look like
// data after damage, so Open refuses to start and the operator cuts the file
// at the reported offset.
//
// # Snapshot file
//
// One file holds a state blob and the index of the last record it covers:
//
//	magic   "IOTDSNP\x01" (8 bytes; the last byte is the layout version)
//	index   uint64, little-endian
//	length  uint64, little-endian: len(data)
//	data    length bytes, opaque
//	crc     CRC-32C of every byte above, uint32 little-endian
//
// WriteSnapshot writes path.tmp, fsyncs it, renames it over path and fsyncs
// the directory. ReadSnapshot rejects a short file, a bad magic, a length
// that disagrees with the file size, or a CRC mismatch, naming the file.
//
// # Manifest
//
// MANIFEST.json in the data directory, written the same atomic way:
//
//	{"version": 1, "shards": 8, "hash": "xxhash64"}
//
// so that a restart with another shard count knows how the existing state is
// distributed and can re-distribute it.
//
// # Recovery, and the order of snapshot and truncation
//
//	idx, state, err := wal.ReadSnapshot(snapPath) // errors.Is(err, os.ErrNotExist): idx = 0
//	log, rep, err := wal.Open(dir, opts)          // rep says what the tail repair dropped
//	err = log.TruncateFront(idx + 1)              // no-op unless the log is behind idx
//	err = log.Replay(idx, apply)
//
// To compact: Commit (and in NoSync mode Sync) every record the state
// covers, WriteSnapshot(path, idx, state), then TruncateFront(idx+1). A
// snapshot must never cover records that are not durable in the log, or a
// crash could leave a log behind its snapshot; TruncateFront(idx+1) at
// startup moves such a log forward so new records cannot reuse covered
// indexes, and Replay refuses to run until it has.
//
// # Failure and Recover
//
// A write, fsync or truncation error (a full disk, an I/O error) fails the
// Log: whether the failed batch reached the disk is unknown, so from then on
// Commit, Sync and TruncateFront return the error and Append drops its
// records. The caller keeps running on its in-memory state and must not
// acknowledge anything that waited for the lost records. Recover(snapshot)
// turns that state into a snapshot at an index past every record the failed
// batch could have used, then deletes every segment and restarts the log
// empty after that index (an empty <index+1>.START file, as TruncateFront
// past the end). A crash between the two leaves a snapshot ahead of the log,
// which the startup sequence above moves past. Until a Recover succeeds the
// caller retries it, for example once the operator has freed disk space.
package wal
