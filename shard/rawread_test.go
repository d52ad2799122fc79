package shard

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// wait parks while the socket has nothing, sees input that arrived before
// it began (the poller forgot that edge), and wakes for input that arrives
// while it waits; a read that did not fill its buffer marks the socket
// drained.
func TestRawReaderWaitAndDrained(t *testing.T) {
	server, client := tcpPair(t)
	r := newRawReader(server)
	require.NotNil(t, r)
	r.block = false

	server.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	err := r.wait()
	require.True(t, errors.Is(err, os.ErrDeadlineExceeded), "with nothing to read wait parks until the deadline: %v", err)
	server.SetReadDeadline(time.Time{})

	_, err = client.Write([]byte("abc"))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		n, err := r.Read(make([]byte, 1))
		return n == 1 && err == nil
	}, 5*time.Second, time.Millisecond, "input is readable")
	require.False(t, r.drained, "a read that filled its buffer may have left more")
	require.NoError(t, r.wait(), "input that arrived before the wait")
	n, err := r.Read(make([]byte, 16))
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.True(t, r.drained, "a short read emptied the socket")
	_, err = r.Read(make([]byte, 16))
	require.ErrorIs(t, err, errWouldBlock)

	go func() {
		time.Sleep(50 * time.Millisecond)
		client.Write([]byte("d"))
	}()
	server.SetReadDeadline(time.Now().Add(10 * time.Second))
	require.NoError(t, r.wait(), "input that arrives while waiting")
	require.False(t, r.drained)
	n, err = r.Read(make([]byte, 16))
	require.NoError(t, err)
	require.Equal(t, 1, n)
}
