package auth

import "fmt"

// ParseError reports a password or ACL file that could not be used: a line
// that does not parse, or the file itself (Line 0) when it cannot be opened
// or read. Error() reads "FILE:LINE: REASON" so an operator can go straight
// to the line.
type ParseError struct {
	File   string
	Line   int    // 1-based; 0 when the error is about the whole file
	Reason string // what is wrong, without the file and line
	Err    error  // underlying I/O error, if any (for errors.Is)
}

func (e *ParseError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Reason)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Reason)
}

func (e *ParseError) Unwrap() error { return e.Err }

func lineErr(file string, line int, format string, args ...any) *ParseError {
	return &ParseError{File: file, Line: line, Reason: fmt.Sprintf(format, args...)}
}

func fileErr(file string, err error) *ParseError {
	return &ParseError{File: file, Reason: err.Error(), Err: err}
}
