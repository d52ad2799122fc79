package auth

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
)

// maxLineLength bounds one line of a password or ACL file. An MQTT username
// or topic filter is at most 65535 bytes, so a valid line is always shorter.
const maxLineLength = 1 << 18

// readLines reads the whole file and calls fn for each line with its
// 1-based number and its text without the line ending ("\n" or "\r\n").
// fn returns a *ParseError to stop.
func readLines(path string, fn func(n int, line string) *ParseError) error {
	f, err := os.Open(path)
	if err != nil {
		return fileErr(path, err)
	}
	defer f.Close()
	return scanLines(path, f, fn)
}

func scanLines(path string, r io.Reader, fn func(n int, line string) *ParseError) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLineLength)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Bytes()
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if perr := fn(n, string(line)); perr != nil {
			return perr
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return lineErr(path, n+1, "line longer than %d bytes", maxLineLength)
		}
		return fileErr(path, err)
	}
	return nil
}
