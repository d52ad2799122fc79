package wal

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
)

// castagnoli is the CRC32C table. hash/crc32 uses the SSE4.2/ARMv8 CRC
// instructions for it, so checksumming costs far less than the write.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const (
	// recordOverhead is the framing around a payload: type(1) + crc32c(4).
	recordOverhead = 1 + 4
	crcSize        = 4
)

// Errors describing why a record (one tidwall entry) is bad. They are wrapped
// with the file and offset by whoever found them.
var (
	errRecordShort = errors.New("record shorter than its 5-byte framing")
	errRecordCRC   = errors.New("record checksum mismatch")
	errRecordType  = errors.New("record type 0")
	errEntryTorn   = errors.New("entry runs past the end of the file")
	errEntryLength = errors.New("entry length prefix is not a valid uvarint")
)

// appendRecord appends the framed record type|payload|crc32c(type+payload)
// to dst and returns the extended slice.
func appendRecord(dst []byte, typ byte, payload []byte) []byte {
	start := len(dst)
	dst = append(dst, typ)
	dst = append(dst, payload...)
	crc := crc32.Checksum(dst[start:], castagnoli)
	return binary.LittleEndian.AppendUint32(dst, crc)
}

// parseRecord checks a framed record and returns its type and payload. The
// payload aliases rec.
func parseRecord(rec []byte) (typ byte, payload []byte, err error) {
	if len(rec) < recordOverhead {
		return 0, nil, errRecordShort
	}
	body := rec[:len(rec)-crcSize]
	want := binary.LittleEndian.Uint32(rec[len(rec)-crcSize:])
	if crc32.Checksum(body, castagnoli) != want {
		return 0, nil, errRecordCRC
	}
	if body[0] == 0 {
		return 0, nil, errRecordType
	}
	return body[0], body[1:], nil
}

// nextEntry decodes the tidwall Binary entry at data[pos:], which is
// uvarint(len(rec)) followed by rec, and returns rec and the offset of the
// next entry. It checks only the entry's length, not the record inside.
func nextEntry(data []byte, pos int) (rec []byte, next int, err error) {
	size, n := binary.Uvarint(data[pos:])
	switch {
	case n == 0: // the file ends inside the length prefix
		return nil, 0, errEntryTorn
	case n < 0:
		return nil, 0, errEntryLength
	}
	start := pos + n
	if size > uint64(len(data)-start) {
		return nil, 0, errEntryTorn
	}
	end := start + int(size)
	return data[start:end], end, nil
}

// entrySize is the number of bytes tidwall writes for a record of n bytes.
func entrySize(n int) int {
	var buf [binary.MaxVarintLen64]byte
	return binary.PutUvarint(buf[:], uint64(n)) + n
}
