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

// openAndParse opens path and hands it to parse, which names errors after
// path. parse calls scanLines, which calls its fn for each line with the
// 1-based line number and the text without the line ending ("\n" or
// "\r\n"); fn returns a *ParseError to stop.
func openAndParse[T any](path string, parse func(string, io.Reader) (T, error)) (T, error) {
	f, err := os.Open(path)
	if err != nil {
		var zero T
		return zero, fileErr(path, err)
	}
	defer f.Close()
	return parse(path, f)
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
