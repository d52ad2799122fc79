package shard

import (
	"errors"
	"io"
	"net"
	"syscall"
)

// errWouldBlock is returned by a non-blocking rawReader with nothing to read.
var errWouldBlock = errors.New("read would block")

// rawReader reads a TCP socket through its raw file descriptor. After the
// handshake it never parks: with nothing to read it returns errWouldBlock,
// and the connection waits for input on a fresh goroutine whose stack holds
// only the wait (wait), instead of parking the read loop's deeper stack. An
// idle connection costs one small goroutine.
type rawReader struct {
	rc       syscall.RawConn
	p        []byte
	n        int
	err      error
	tryRead  func(fd uintptr) bool
	readable func(fd uintptr) bool
	block    bool // park in Read like a net.Conn (during the handshake)
	// drained is set by a read that did not fill its buffer: the socket had
	// nothing more then, so the read loop may go idle without another read
	// that would only say EAGAIN (wait checks the socket first anyway).
	drained bool
	polled  bool // wait already looked at the socket itself
	peek    [1]byte
}

// newRawReader returns a rawReader for conn, or nil when conn has no raw
// descriptor (TLS, WebSocket): those read through the net.Conn.
func newRawReader(conn net.Conn) *rawReader {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	r := &rawReader{rc: rc, block: true}
	r.tryRead = r.try
	r.readable = r.ready
	return r
}

func (r *rawReader) Read(p []byte) (int, error) {
	r.p, r.n, r.err = p, 0, nil
	err := r.rc.Read(r.tryRead) // deadlines and Close end it with an error
	r.p = nil
	if err != nil {
		return 0, err
	}
	return r.n, r.err
}

// try is called by the runtime poller with the descriptor; returning false
// parks until the socket is readable.
func (r *rawReader) try(fd uintptr) bool {
	for {
		n, err := syscall.Read(int(fd), r.p)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			if r.block {
				return false
			}
			r.err = errWouldBlock
		case err != nil:
			r.err = &net.OpError{Op: "read", Net: "tcp", Err: err}
		case n == 0:
			r.err = io.EOF
		default:
			r.n = n
			r.drained = !r.block && n < len(r.p)
		}
		return true
	}
}

// wait parks until the socket is readable (or its deadline passes, or it is
// closed), without consuming input.
func (r *rawReader) wait() error {
	r.drained, r.polled = false, false
	return r.rc.Read(r.readable)
}

// ready reports whether a read would not block. The first call must look at
// the socket itself, not assume: the poller is edge-triggered and forgets a
// readiness edge that came before the wait began, so input that arrived
// since the last EAGAIN is seen only by trying. A later call comes after the
// poller reported the socket readable (or hung up), which is the answer.
func (r *rawReader) ready(fd uintptr) bool {
	if r.polled {
		return true
	}
	r.polled = true
	for {
		_, _, err := syscall.Recvfrom(int(fd), r.peek[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch err {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		return true // input, end of stream or an error: the next Read reports it
	}
}
