package netfuzz

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// Kind is what a connection's byte stream is made of (see the package doc).
type Kind uint8

const (
	KindRandom        Kind = iota // random bytes
	KindConnectRandom             // a valid CONNECT, then random bytes
	KindValid                     // well-formed packets in a hostile order
	KindMutated                   // packets with field and byte mutations
	numKinds
)

var kindNames = [...]string{"random", "connect+random", "valid", "mutated"}

func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Ending is how a script leaves its connection after the last write.
type Ending uint8

const (
	EndClose     Ending = iota // close: FIN
	EndReset                   // close with SO_LINGER 0: RST
	EndHalfClose               // shut down the write side, keep reading until the broker closes
	EndLinger                  // stay connected and silent for Script.Linger, then close
	numEndings
)

var endingNames = [...]string{"close", "reset", "half-close", "linger"}

func (e Ending) String() string {
	if e < numEndings {
		return endingNames[e]
	}
	return fmt.Sprintf("ending(%d)", e)
}

// Step is one write followed by a pause.
type Step struct {
	Write []byte
	Pause time.Duration
}

// Script is everything one fuzzing connection does, derived from its seed
// alone: the same seed always gives the same Script.
type Script struct {
	Seed   uint64
	Kind   Kind
	Chunks string // how the stream is cut into writes: whole, packets, random, bytes
	Steps  []Step
	// Cut is the stream length a random disconnect keeps (the connection
	// ends after that many bytes, often mid-packet), or -1 for the whole.
	Cut    int
	Ending Ending
	Linger time.Duration // EndLinger: how long to stay silent
	// Read: drain what the broker sends and check it. Without it the
	// broker's output piles up in the socket buffers (a slow consumer).
	Read bool
	// PacketEnds are the offsets in the concatenated stream where each
	// generated packet ends (after mutations moved them): how many packets
	// a connection sent is how many of these its written bytes reach.
	PacketEnds []int
	Mutations  []string // the mutations applied, for the connection log
}

// Bytes returns the concatenated stream.
func (s *Script) Bytes() []byte {
	var b []byte
	for _, st := range s.Steps {
		b = append(b, st.Write...)
	}
	return b
}

// Limits of a script, so that one connection stays short and small: a run
// is many connections, not a few long ones.
const (
	maxStreamBytes = 1 << 20
	maxPackets     = 200
	maxRandomBytes = 64 << 10
	maxPauseTotal  = 6 * time.Second
	maxLinger      = 3 * time.Second
	slowBytes      = 64 // bytes written one at a time by a byte-by-byte script
)

// ConnSeed is the seed of connection n of worker w in a run with seed
// seed: a splitmix64 finalizer over the three, so neighbouring connections
// get unrelated streams and no seed depends on timing.
func ConnSeed(seed uint64, worker, n int) uint64 {
	return mix64(seed ^ mix64(uint64(worker)<<32^uint64(n)+0x9e3779b97f4a7c15))
}

func mix64(z uint64) uint64 {
	z += 0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// NewScript derives a connection's script from its seed.
func NewScript(seed uint64) *Script {
	rng := rand.New(rand.NewPCG(seed, mix64(seed)))
	s := &Script{Seed: seed, Read: rng.IntN(100) < 85}
	g := &gen{rng: rng}

	switch n := rng.IntN(100); {
	case n < 15:
		s.Kind = KindRandom
	case n < 30:
		s.Kind = KindConnectRandom
	case n < 55:
		s.Kind = KindValid
	default:
		s.Kind = KindMutated
	}

	var stream []byte
	var ends []int
	switch s.Kind {
	case KindRandom:
		stream = g.randomBytes(g.size(maxRandomBytes))
	case KindConnectRandom:
		stream = g.connect().Append(nil)
		ends = []int{len(stream)}
		stream = append(stream, g.randomBytes(g.size(maxRandomBytes))...)
	case KindValid, KindMutated:
		mutate := s.Kind == KindMutated
		count := 1 + g.size(maxPackets)
		for i := 0; i < count && len(stream) < maxStreamBytes; i++ {
			var raw []byte
			if i == 0 && rng.IntN(10) != 0 {
				raw = g.connect().Append(nil) // usually CONNECT first, as a client must
			} else {
				raw = g.packet()
			}
			if mutate && rng.IntN(100) < 15 {
				var what string
				raw, what = g.corrupt(raw)
				s.Mutations = append(s.Mutations, what)
			}
			stream = append(stream, raw...)
			ends = append(ends, len(stream))
		}
		if rng.IntN(5) == 0 {
			stream = append(stream, 0xe0, 0x00) // DISCONNECT
			ends = append(ends, len(stream))
		}
		if mutate {
			for n := rng.IntN(4); n >= 0 || len(s.Mutations) == 0; n-- {
				var what string
				stream, ends, what = g.mutateBytes(stream, ends)
				s.Mutations = append(s.Mutations, what)
			}
		}
	}
	s.PacketEnds = ends
	s.Cut = -1
	if len(stream) > 0 && rng.IntN(100) < 15 {
		s.Cut = rng.IntN(len(stream))
		stream = stream[:s.Cut]
	}
	s.Steps, s.Chunks = g.chunk(stream, ends)
	s.Steps = g.pauses(s.Steps)

	switch n := rng.IntN(100); {
	case n < 40:
		s.Ending = EndClose
	case n < 65:
		s.Ending = EndReset
	case n < 85:
		s.Ending = EndHalfClose
	default:
		s.Ending = EndLinger
		s.Linger = time.Duration(rng.Int64N(int64(maxLinger)))
	}
	if s.Ending == EndHalfClose {
		s.Read = true // a half-closed script waits for the broker to close, reading
	}
	return s
}

// gen draws packets and bytes from one connection's generator.
type gen struct {
	rng *rand.Rand
}

// size returns a length in [0, max) with a log-uniform distribution: mostly
// small, sometimes close to max.
func (g *gen) size(max int) int {
	bits := 1 + g.rng.IntN(bitLen(max))
	n := g.rng.IntN(1 << bits)
	if n >= max {
		n = max - 1
	}
	return n
}

func bitLen(n int) int {
	b := 0
	for n > 1 {
		n >>= 1
		b++
	}
	return max(b, 1)
}

func (g *gen) randomBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(g.rng.Uint32())
	}
	return b
}

// chunk cuts the stream into writes. Byte by byte is limited to the first
// slowBytes bytes (a slowloris start); the rest follows in one write.
func (g *gen) chunk(stream []byte, ends []int) ([]Step, string) {
	var steps []Step
	add := func(b []byte) {
		if len(b) > 0 {
			steps = append(steps, Step{Write: b})
		}
	}
	var how string
	switch n := g.rng.IntN(100); {
	case n < 25:
		how = "whole"
		for len(stream) > 0 {
			k := min(len(stream), 64<<10)
			add(stream[:k])
			stream = stream[k:]
		}
	case n < 55 && len(ends) > 0:
		how = "packets"
		prev := 0
		for _, e := range ends {
			if e > prev && e <= len(stream) {
				add(stream[prev:e])
				prev = e
			}
		}
		add(stream[prev:])
	case n < 90:
		how = "random"
		for len(stream) > 0 {
			k := min(len(stream), 1+g.size(4096))
			add(stream[:k])
			stream = stream[k:]
		}
	default:
		how = "bytes"
		for i := 0; i < len(stream) && i < slowBytes; i++ {
			add(stream[i : i+1])
		}
		if len(stream) > slowBytes {
			add(stream[slowBytes:])
		}
	}
	if len(steps) == 0 {
		steps = []Step{{}} // a silent connection: connect, pause, end
	}
	return steps, how
}

// pauses adds stalls: none on most scripts, one before the first byte
// (connect and say nothing) on some, a few long ones or many short ones
// (a slowloris) on others; the total stays under maxPauseTotal.
func (g *gen) pauses(steps []Step) []Step {
	budget := time.Duration(g.rng.Int64N(int64(maxPauseTotal)))
	switch n := g.rng.IntN(100); {
	case n < 55:
	case n < 60:
		steps = append([]Step{{Pause: budget}}, steps...)
	case n < 85:
		for range 1 + g.rng.IntN(3) {
			d := time.Duration(g.rng.Int64N(int64(budget/2 + 1)))
			steps[g.rng.IntN(len(steps))].Pause += d
			budget -= d
		}
	default:
		per := time.Duration(5+g.rng.IntN(30)) * time.Millisecond
		for i := range steps {
			if budget < per {
				break
			}
			steps[i].Pause += per
			budget -= per
		}
	}
	return steps
}
