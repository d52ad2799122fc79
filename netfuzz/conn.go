package netfuzz

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"sync/atomic"
	"time"

	"iotd/wire"
)

const (
	dialTimeout = 5 * time.Second
	// writeTimeout bounds one write: a broker that reads nothing for this
	// long is counted (Result.WriteStalls), and the script moves on to its
	// ending.
	writeTimeout = 5 * time.Second
	// halfCloseWait is how long a half-closed script waits for the broker
	// to close its side.
	halfCloseWait = 5 * time.Second
)

// connResult is what one fuzzing connection did.
type connResult struct {
	script       *Script
	worker, n    int
	dialErr      error
	wrote        int64
	packets      int
	read         atomic.Int64
	readPackets  atomic.Int64
	brokerClosed atomic.Bool // the broker closed before the script's ending began
	writeStall   bool        // a write made no progress for writeTimeout
	violation    string      // the broker sent something that is not valid MQTT to a client
	elapsed      time.Duration
}

// countingReader counts the bytes read from the broker.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// runScript plays s on a new connection to addr. It returns when the
// script has ended or ctx is done, with the connection closed.
func runScript(ctx context.Context, addr string, s *Script) *connResult {
	res := &connResult{script: s}
	start := time.Now()
	defer func() { res.elapsed = time.Since(start) }()
	d := net.Dialer{Timeout: dialTimeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		if ctx.Err() == nil {
			res.dialErr = err
		}
		return res
	}
	tc := nc.(*net.TCPConn)
	// Closing is what ends every blocking call once the run is over.
	stop := context.AfterFunc(ctx, func() { tc.SetLinger(0); tc.Close() })
	defer stop()
	defer tc.Close()

	var ending atomic.Bool // set once the script stops writing: closes from then on are ours
	readDone := make(chan struct{})
	if s.Read {
		go func() {
			defer close(readDone)
			res.violation = checkBrokerOutput(countingReader{tc, &res.read}, &res.readPackets)
			if !ending.Load() && ctx.Err() == nil {
				res.brokerClosed.Store(true)
			}
		}()
	} else {
		close(readDone)
	}

	var written int
	for _, st := range s.Steps {
		if len(st.Write) > 0 {
			tc.SetWriteDeadline(time.Now().Add(writeTimeout))
			n, err := tc.Write(st.Write)
			written += n
			if err != nil {
				res.writeStall = errors.Is(err, os.ErrDeadlineExceeded)
				if !res.writeStall && ctx.Err() == nil {
					res.brokerClosed.Store(true)
				}
				break
			}
		}
		if !sleep(ctx, st.Pause) {
			break
		}
	}
	ending.Store(true)
	res.wrote = int64(written)
	res.packets = sort.SearchInts(s.PacketEnds, written+1)

	switch s.Ending {
	case EndReset:
		tc.SetLinger(0)
	case EndHalfClose:
		if tc.CloseWrite() == nil {
			select {
			case <-readDone:
			case <-time.After(halfCloseWait):
			case <-ctx.Done():
			}
		}
	case EndLinger:
		sleep(ctx, s.Linger)
	}
	tc.Close()
	<-readDone
	return res
}

// sleep waits d unless ctx ends first; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// checkBrokerOutput reads what the broker sends a fuzzing connection until
// the connection ends, and returns a description of the first thing that is
// not valid MQTT from a server, or "".
func checkBrokerOutput(r io.Reader, packets *atomic.Int64) string {
	rd := wire.NewReader(r, 0)
	defer rd.Release()
	for n := 0; ; n++ {
		fh, body, err := rd.ReadPacket()
		if err != nil {
			if isConnEnd(err) {
				return ""
			}
			return fmt.Sprintf("broker sent a bad packet #%d: %v", n+1, err)
		}
		packets.Add(1)
		p, err := wire.Decode(fh, body)
		if err != nil {
			return fmt.Sprintf("broker sent a malformed %s (packet #%d): %v: % x", fh.Type, n+1, err, head(body))
		}
		if n == 0 && fh.Type != wire.CONNACK {
			return fmt.Sprintf("broker sent %s before CONNACK [MQTT-3.2.0-1]", fh.Type)
		}
		switch p.(type) {
		case *wire.Connect, *wire.Subscribe, *wire.Unsubscribe, *wire.Pingreq, *wire.Disconnect:
			return fmt.Sprintf("broker sent %s, a client-only packet (packet #%d)", fh.Type, n+1)
		case *wire.Connack:
			if n > 0 {
				return fmt.Sprintf("broker sent a second CONNACK (packet #%d)", n+1)
			}
		}
	}
}

func head(b []byte) []byte {
	if len(b) > 32 {
		return b[:32]
	}
	return b
}

// isConnEnd tells a connection that ended (EOF, reset, closed by us, a
// truncated last packet when the broker closed mid-write) from a protocol
// error in what the broker sent.
func isConnEnd(err error) bool {
	var oe *net.OpError
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &oe)
}
