package loadtest

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPayloadRoundTrip(t *testing.T) {
	for _, size := range []int{0, HeaderSize - 1, HeaderSize, HeaderSize + 1, 64, 4096} {
		b := newPayload(size)
		require.Equal(t, max(size, HeaderSize), len(b), "a payload is never shorter than its header")
		want := header{Tag: 0xDEADBEEF, Pub: 1<<32 - 1, Seq: 1<<64 - 2, TS: -5}
		putHeader(b, want)
		got, ok := parseHeader(b)
		require.True(t, ok)
		require.Equal(t, want, got)
		for i := HeaderSize; i < len(b); i++ {
			require.Equal(t, byte('a'+i%26), b[i], "padding at %d survives putHeader", i)
		}
	}
}

func TestPayloadLayout(t *testing.T) {
	b := make([]byte, HeaderSize)
	putHeader(b, header{Tag: 0x01020304, Pub: 0x05060708, Seq: 0x090A0B0C0D0E0F10, TS: 0x1112131415161718})
	require.Equal(t, []byte{
		1, 2, 3, 4, // run tag
		5, 6, 7, 8, // publisher
		9, 10, 11, 12, 13, 14, 15, 16, // sequence
		17, 18, 19, 20, 21, 22, 23, 24, // send time
	}, b, "big-endian fields in documented order")
}

func TestPayloadTooShort(t *testing.T) {
	for _, b := range [][]byte{nil, {}, make([]byte, HeaderSize-1)} {
		_, ok := parseHeader(b)
		require.False(t, ok, "len %d", len(b))
	}
}
