package netfuzz

import (
	"bytes"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"iotd/wire"
)

// A script is a function of its seed alone: replaying a seed replays the
// stream byte for byte.
func TestScriptIsAFunctionOfItsSeed(t *testing.T) {
	for w := range 4 {
		for n := range 50 {
			seed := ConnSeed(7, w, n)
			a, b := NewScript(seed), NewScript(seed)
			require.True(t, reflect.DeepEqual(a, b), "seed %#x", seed)
		}
	}
	require.NotEqual(t, ConnSeed(7, 0, 1), ConnSeed(7, 1, 0))
	require.NotEqual(t, ConnSeed(7, 0, 0), ConnSeed(8, 0, 0))
	require.NotEqual(t, NewScript(ConnSeed(7, 0, 0)).Bytes(), NewScript(ConnSeed(7, 0, 1)).Bytes())
}

// Over a few thousand seeds every kind, ending, chunking and mutation shows
// up, and every script stays within its limits.
func TestScriptsCoverEveryBehaviour(t *testing.T) {
	kinds, endings, chunks := map[Kind]int{}, map[Ending]int{}, map[string]int{}
	mutations := map[string]int{}
	var noRead, paused, cut int
	for n := range 4000 {
		s := NewScript(ConnSeed(1, 0, n))
		kinds[s.Kind]++
		endings[s.Ending]++
		chunks[s.Chunks]++
		if !s.Read {
			noRead++
		}
		stream := s.Bytes()
		require.LessOrEqual(t, len(stream), maxStreamBytes+(64<<10)+100, "seed %d", n)
		if s.Cut >= 0 {
			cut++
			require.Equal(t, s.Cut, len(stream), "a random disconnect keeps Cut bytes")
		}
		require.True(t, slices.IsSorted(s.PacketEnds))
		if len(s.PacketEnds) > 0 && s.Cut < 0 {
			require.LessOrEqual(t, s.PacketEnds[len(s.PacketEnds)-1], len(stream))
		}
		var pause time.Duration
		for _, st := range s.Steps {
			pause += st.Pause
		}
		require.Less(t, pause, maxPauseTotal)
		if pause > 0 {
			paused++
		}
		require.Less(t, s.Linger, maxLinger)
		if s.Kind == KindMutated {
			require.NotEmpty(t, s.Mutations, "a mutated stream has at least one mutation")
		} else {
			require.Empty(t, s.Mutations)
		}
		for _, m := range s.Mutations {
			name, _, _ := strings.Cut(m, ": ") // "flip: a bit at 12"
			mutations[strings.TrimSuffix(name, " + reserved flag")]++
		}
	}
	for k := range numKinds {
		require.Greater(t, kinds[k], 100, "kind %s", k)
	}
	for e := range numEndings {
		require.Greater(t, endings[e], 100, "ending %s", e)
	}
	for _, c := range []string{"whole", "packets", "random", "bytes"} {
		require.Greater(t, chunks[c], 100, "chunks %s", c)
	}
	require.Greater(t, noRead, 100)
	require.Greater(t, paused, 500)
	require.Greater(t, cut, 300)
	for _, m := range []string{
		"flip", "set", "insert", "delete", "duplicate", "splice", "truncate", "CONNECT client id", "CONNECT protocol level", "CONNECT will QoS 3", "CONNECT password without user name",
		"PUBLISH topic", "PUBLISH QoS 3", "PUBLISH packet id 0", "SUBSCRIBE filter", "SUBSCRIBE requested QoS byte",
		"SUBSCRIBE no filters", "fixed header flags", "reserved packet type", "huge remaining length", "5-byte remaining length",
		"short remaining length", "padded remaining length",
	} {
		require.Greater(t, mutations[m], 0, "mutation %q never drawn; drawn: %v", m, mutations)
	}
}

// In a valid stream PacketEnds partition the stream, every packet but the
// wiretest.Malformed entries frames exactly there, and most streams start
// with a CONNECT the broker accepts.
func TestValidStreamsFrame(t *testing.T) {
	valid, accepted := 0, 0
	for n := range 2000 {
		s := NewScript(ConnSeed(2, 0, n))
		if s.Kind != KindValid || s.Cut >= 0 {
			continue
		}
		valid++
		stream := s.Bytes()
		off := 0
		for i, end := range s.PacketEnds {
			fh, hl, err := wire.DecodeHeader(stream[off:end])
			if err == nil {
				require.Equal(t, end, off+hl+fh.RemainingLength, "seed %d packet %d", n, i)
				if i == 0 && fh.Type == wire.CONNECT {
					if _, err := wire.DecodeConnect(fh, stream[off+hl:end]); err == nil {
						accepted++
					}
				}
			}
			off = end
		}
		require.Equal(t, len(stream), off)
	}
	require.Greater(t, valid, 300)
	require.Greater(t, accepted, valid*8/10)
}

func TestShiftEnds(t *testing.T) {
	ends := []int{10, 20, 30}
	require.Equal(t, []int{10, 25, 35}, shiftEnds(slices.Clone(ends), 15, 5))
	require.Equal(t, []int{10, 15, 25}, shiftEnds(slices.Clone(ends), 15, -5))
	require.Equal(t, []int{10, 12}, shiftEnds(slices.Clone(ends), 12, -18), "truncation at 12")
	require.Equal(t, []int{5, 10, 20}, shiftEnds(slices.Clone(ends), 5, -10), "the end inside the deleted range moves to its start")
	require.True(t, bytes.Equal([]byte{1, 9, 9, 2}, insertAt([]byte{1, 2}, 1, []byte{9, 9})))
}
