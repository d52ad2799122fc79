// Package syncbuf is a bytes.Buffer that many goroutines may write, for
// tests that collect a broker's or a process's log and assert on it. It
// imports nothing from this module, so the tests of any package (shard,
// auth, wal included) can use it without an import cycle. Only _test.go
// files import it.
package syncbuf

import (
	"bytes"
	"sync"
)

// Buffer collects writes from any goroutine; the zero value is empty and
// ready to use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String is everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
