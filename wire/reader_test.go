package wire

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"testing"
	"testing/iotest"
	"unsafe"
)

// These tests are inside the package so they can check which buffer the
// Reader holds at each Read call.

// testStream returns a stream of packets of every size class (inline,
// pooled, multi-batch) and the packets' bodies in order.
func testStream() (stream []byte, bodies [][]byte) {
	pkts := []Packet{
		&Connect{ProtocolName: "MQTT", ProtocolLevel: 4, CleanSession: true, KeepAlive: 30, ClientID: "r1"},
		&Publish{Topic: []byte("a/b"), Payload: []byte("small")},
		&Pingreq{},
		&Publish{QoS: 1, PacketID: 7, Topic: []byte("big"), Payload: bytes.Repeat([]byte{'x'}, 300)},
		&Subscribe{PacketID: 2, Subscriptions: []Subscription{{Filter: "a/#", QoS: 1}}},
		&Publish{QoS: 2, PacketID: 8, Topic: []byte("huge"), Payload: bytes.Repeat([]byte{'y'}, 70000)},
		&Puback{PacketID: 7},
		&Publish{Topic: []byte("z"), Payload: bytes.Repeat([]byte{'z'}, 5000)},
		&Disconnect{},
	}
	for _, p := range pkts {
		raw := p.Append(nil)
		_, hl, err := DecodeHeader(raw)
		if err != nil {
			panic(err)
		}
		stream = append(stream, raw...)
		bodies = append(bodies, raw[hl:])
	}
	return stream, bodies
}

// probeReader serves data in chunks of the given sizes (repeating the last)
// and calls check before every Read.
type probeReader struct {
	data   []byte
	chunks []int
	check  func()
	reads  int
	served int
}

func (p *probeReader) Read(b []byte) (int, error) {
	p.reads++
	if p.check != nil {
		p.check()
	}
	if len(p.data) == 0 {
		return 0, io.EOF
	}
	n := len(b)
	if len(p.chunks) > 0 {
		n = min(n, p.chunks[0])
		if len(p.chunks) > 1 {
			p.chunks = p.chunks[1:]
		}
	}
	n = copy(b[:n], p.data)
	p.data = p.data[n:]
	p.served += n
	return n, nil
}

// readAll reads every packet and compares bodies, then expects io.EOF.
func readAll(t *testing.T, rd *Reader, bodies [][]byte) {
	t.Helper()
	for i, want := range bodies {
		_, body, err := rd.ReadPacket()
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if !bytes.Equal(body, want) {
			t.Fatalf("packet %d: body of %d bytes differs from the %d sent", i, len(body), len(want))
		}
		if cap(body) != len(body) {
			t.Fatalf("packet %d: body capacity %d reaches past the packet", i, cap(body))
		}
	}
	if _, _, err := rd.ReadPacket(); err != io.EOF {
		t.Fatalf("after the last packet: err = %v, want io.EOF", err)
	}
}

// idleCheck fails the test if the Reader blocks in Read with no pending
// bytes while holding anything but its inline buffer.
func idleCheck(t *testing.T, rd **Reader) func() {
	return func() {
		r := *rd
		if r.Buffered() == 0 && (r.bb != nil || !r.isInline()) {
			t.Fatalf("Read called with nothing pending while holding a %d-byte buffer", len(r.buf))
		}
	}
}

func TestReaderOneBytePerRead(t *testing.T) {
	stream, bodies := testStream()
	var rd *Reader
	pr := &probeReader{data: stream, chunks: []int{1}, check: idleCheck(t, &rd)}
	rd = NewReader(pr, 1<<20)
	readAll(t, rd, bodies)
	if rd.bb != nil {
		t.Error("pooled buffer held after EOF")
	}
	// Same with the standard library's one-byte reader.
	readAll(t, NewReader(iotest.OneByteReader(bytes.NewReader(stream)), 1<<20), bodies)
}

// TestReaderSplitEverywhere delivers the stream in two Reads split at every
// byte boundary, and in three Reads around every boundary.
func TestReaderSplitEverywhere(t *testing.T) {
	stream, bodies := testStream()
	for k := 1; k < len(stream); k += 1 + k/512 {
		var rd *Reader
		pr := &probeReader{data: stream, chunks: []int{k, len(stream)}, check: idleCheck(t, &rd)}
		rd = NewReader(pr, 1<<20)
		readAll(t, rd, bodies)
		pr = &probeReader{data: stream, chunks: []int{k, 3, len(stream)}, check: idleCheck(t, &rd)}
		rd = NewReader(pr, 1<<20)
		readAll(t, rd, bodies)
	}
	// Data and io.EOF from the same Read.
	readAll(t, NewReader(iotest.DataErrReader(bytes.NewReader(stream)), 1<<20), bodies)
	readAll(t, NewReader(iotest.HalfReader(bytes.NewReader(stream)), 1<<20), bodies)
}

// TestReaderBatches: under load one Read brings many packets.
func TestReaderBatches(t *testing.T) {
	var stream []byte
	const n = 10000
	p := &Publish{QoS: 1, Topic: []byte("sensors/t1"), Payload: []byte("21.5")}
	for i := range n {
		p.PacketID = uint16(i%65535 + 1)
		stream = p.Append(stream)
	}
	pr := &probeReader{data: stream}
	rd := NewReader(pr, 1<<20)
	for i := range n {
		fh, body, err := rd.ReadPacket()
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		var got Publish
		if err := got.Decode(fh, body); err != nil || got.PacketID != uint16(i%65535+1) {
			t.Fatalf("packet %d: %+v, %v", i, got, err)
		}
	}
	// 200 KB of stream: a Read per packet would be 10000 calls.
	if maxReads := len(stream)/readBatch*2 + 4; pr.reads > maxReads {
		t.Errorf("%d Read calls for %d bytes, want at most %d", pr.reads, len(stream), maxReads)
	}
}

// zeroReader returns zeros forever and counts them.
type zeroReader struct{ served int }

func (z *zeroReader) Read(b []byte) (int, error) {
	clear(b)
	z.served += len(b)
	return len(b), nil
}

func TestReaderTooLarge(t *testing.T) {
	const max = 1 << 20
	header := AppendRemainingLength([]byte{0x30}, 200<<20) // claims 200 MB
	if len(header) != 5 {
		t.Fatalf("header % x", header)
	}

	// One byte per Read: refused after exactly the 5 header bytes.
	pr := &probeReader{data: append(bytes.Clone(header), make([]byte, 1000)...), chunks: []int{1}}
	rd := NewReader(pr, max)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, _, err := rd.ReadPacket()
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrPacketTooLarge) {
		t.Fatalf("err = %v, want ErrPacketTooLarge", err)
	}
	if pr.served > 5 {
		t.Errorf("read %d bytes before refusing, want at most 5", pr.served)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<10 {
		t.Errorf("allocated %d bytes while refusing the packet", grew)
	}
	// Sticky: the stream cannot be resynchronised.
	if _, _, err2 := rd.ReadPacket(); err2 != err {
		t.Errorf("second call: %v, want the same error", err2)
	}

	// A peer streaming the body as fast as we read: only the first small
	// read happens, and nothing large is allocated.
	zr := &zeroReader{}
	rd = NewReader(io.MultiReader(bytes.NewReader(header), zr), max)
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, _, err = rd.ReadPacket()
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrPacketTooLarge) {
		t.Fatalf("err = %v, want ErrPacketTooLarge", err)
	}
	if zr.served > inlineSize {
		t.Errorf("read %d body bytes, want at most the inline buffer (%d)", zr.served, inlineSize)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<10 {
		t.Errorf("allocated %d bytes while refusing the packet", grew)
	}
	if rd.bb != nil {
		t.Error("took a pooled buffer for a refused packet")
	}

	// The limit counts the fixed header: header+body == max passes, one more fails.
	for _, tc := range []struct {
		payload int
		err     error
	}{{max - 4 - 3, nil}, {max - 4 - 3 + 1, ErrPacketTooLarge}} { // 4 header bytes, 3 for topic "t"
		raw := (&Publish{Topic: []byte("t"), Payload: make([]byte, tc.payload)}).Append(nil)
		if tc.err == nil && len(raw) != max {
			t.Fatalf("setup: packet of %d bytes, want exactly %d", len(raw), max)
		}
		_, body, err := NewReader(bytes.NewReader(raw), max).ReadPacket()
		if !errors.Is(err, tc.err) || (tc.err == nil && len(body) != len(raw)-4) {
			t.Errorf("packet of %d bytes against max %d: err = %v, want %v", len(raw), max, err, tc.err)
		}
	}
}

func TestReaderEOF(t *testing.T) {
	ping := []byte{0xc0, 0x00}
	pub := (&Publish{Topic: []byte("t"), Payload: []byte("abc")}).Append(nil)
	for _, tc := range []struct {
		name   string
		stream []byte
		n      int // complete packets before the error
		err    error
	}{
		{"empty", nil, 0, io.EOF},
		{"boundary", append(bytes.Clone(ping), pub...), 2, io.EOF},
		{"mid header", []byte{0x30}, 0, io.ErrUnexpectedEOF},
		{"mid length", []byte{0x30, 0x80}, 0, io.ErrUnexpectedEOF},
		{"mid body", append(bytes.Clone(ping), pub[:len(pub)-1]...), 1, io.ErrUnexpectedEOF},
	} {
		for _, src := range []io.Reader{
			bytes.NewReader(tc.stream),
			iotest.OneByteReader(bytes.NewReader(tc.stream)),
			iotest.DataErrReader(bytes.NewReader(tc.stream)),
		} {
			rd := NewReader(src, 0)
			for i := range tc.n {
				if _, _, err := rd.ReadPacket(); err != nil {
					t.Fatalf("%s: packet %d: %v", tc.name, i, err)
				}
			}
			if _, _, err := rd.ReadPacket(); err != tc.err {
				t.Errorf("%s: err = %v, want %v", tc.name, err, tc.err)
			}
		}
	}
}

// errAfterReader returns its data together with err in one Read.
type errAfterReader struct {
	data []byte
	err  error
}

func (e *errAfterReader) Read(b []byte) (int, error) {
	n := copy(b, e.data)
	e.data = e.data[n:]
	return n, e.err
}

func TestReaderErrors(t *testing.T) {
	// A read error is returned after the packets that arrived with it.
	boom := errors.New("boom")
	rd := NewReader(&errAfterReader{data: []byte{0xc0, 0x00, 0xd0, 0x00}, err: boom}, 0)
	for range 2 {
		if _, _, err := rd.ReadPacket(); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := rd.ReadPacket(); err != boom {
		t.Fatalf("err = %v, want boom", err)
	}

	// Protocol errors are sticky.
	rd = NewReader(bytes.NewReader([]byte{0xc0, 0x00, 0xc1, 0x00, 0xc0, 0x00}), 0)
	if _, _, err := rd.ReadPacket(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, _, err := rd.ReadPacket(); !errors.Is(err, ErrFlags) { // [MQTT-2.2.2-2]
			t.Fatalf("err = %v, want ErrFlags", err)
		}
	}
	rd = NewReader(bytes.NewReader([]byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x7f}), 0)
	if _, _, err := rd.ReadPacket(); !errors.Is(err, ErrRemainingLength) {
		t.Fatalf("err = %v, want ErrRemainingLength", err)
	}

	// A reader that never makes progress.
	rd = NewReader(iotest.ErrReader(nil), 0)
	if _, _, err := rd.ReadPacket(); err != io.ErrNoProgress {
		t.Fatalf("err = %v, want io.ErrNoProgress", err)
	}
}

func TestReaderRelease(t *testing.T) {
	stream, bodies := testStream()
	// Release at every packet, with the stream arriving in 4 KB chunks so
	// that pending bytes sit in a pooled buffer at various points.
	pr := &probeReader{data: stream, chunks: []int{4096}}
	rd := NewReader(pr, 1<<20)
	for i, want := range bodies {
		rd.Release()
		if rd.bb != nil {
			t.Fatal("pooled buffer held after Release")
		}
		_, body, err := rd.ReadPacket()
		if err != nil || !bytes.Equal(body, want) {
			t.Fatalf("packet %d after Release: %d bytes, %v", i, len(body), err)
		}
	}
	rd.Release()
	rd.Release() // idempotent
	if _, _, err := rd.ReadPacket(); err != io.EOF {
		t.Fatalf("err = %v, want io.EOF", err)
	}

	// Release while a large packet is half read keeps the half: the pending
	// bytes move to the heap, since they do not fit inline.
	ping := []byte{0xc0, 0x00}
	z1 := (&Publish{Topic: []byte("z1"), Payload: make([]byte, 5000)}).Append(nil)
	ack := (&Puback{PacketID: 9}).Append(nil)
	z2 := (&Publish{Topic: []byte("z2"), Payload: make([]byte, 5000)}).Append(nil)
	data := bytes.Join([][]byte{ping, z1, ack, z2}, nil)
	second := len(ping) + len(z1) + len(ack) + 1000 - inlineSize
	rd = NewReader(&probeReader{data: data, chunks: []int{inlineSize, second, len(data)}}, 1<<20)
	for i, want := range [][]byte{ping[2:], z1[3:], ack[2:]} {
		if _, body, err := rd.ReadPacket(); err != nil || !bytes.Equal(body, want) {
			t.Fatalf("packet %d: %d bytes, %v", i, len(body), err)
		}
	}
	if rd.Buffered() != 1000 || rd.bb == nil {
		t.Fatalf("setup: %d bytes buffered, pooled=%v", rd.Buffered(), rd.bb != nil)
	}
	rd.Release()
	if rd.bb != nil {
		t.Fatal("pooled buffer held after Release")
	}
	readAll(t, rd, [][]byte{z2[3:]})
}

// TestReaderQuietPartialStaysInline: a peer that sends half a small packet
// and pauses must not pin a pooled buffer.
func TestReaderQuietPartialStaysInline(t *testing.T) {
	big := (&Publish{Topic: []byte("t"), Payload: make([]byte, 8000)}).Append(nil)
	small := (&Publish{Topic: []byte("t"), Payload: []byte("hello")}).Append(nil)
	stream := append(bytes.Clone(big), small...)
	var rd *Reader
	// The big packet arrives whole with 3 bytes of the small one, then the rest.
	pr := &probeReader{data: stream, chunks: []int{len(big) + 3, len(small)}}
	pr.check = func() {
		if rd.Buffered() > 0 && rd.Buffered() < inlineSize && rd.bb != nil && !rd.hot {
			t.Fatalf("waiting for %d more bytes of a small packet in a %d-byte pooled buffer", len(small)-rd.Buffered(), len(rd.buf))
		}
	}
	rd = NewReader(pr, 1<<20)
	readAll(t, rd, [][]byte{big[3:], small[2:]})
}

// TestReaderIdleFootprint: an idle Reader is its struct alone (inline
// buffer included); the broker budgets < 5 KB per idle connection.
func TestReaderIdleFootprint(t *testing.T) {
	if size := unsafe.Sizeof(Reader{}); size > inlineSize+128 {
		t.Errorf("Reader is %d bytes, want at most %d", size, inlineSize+128)
	}
	rd := NewReader(bytes.NewReader((&Publish{Topic: []byte("t"), Payload: make([]byte, 10000)}).Append(nil)), 0)
	if _, _, err := rd.ReadPacket(); err != nil {
		t.Fatal(err)
	}
	if rd.bb == nil {
		t.Fatal("setup: a 10 KB packet should be read into a pooled buffer")
	}
	// The next call finds nothing pending and returns the buffer before it
	// blocks (here: hits EOF).
	if _, _, err := rd.ReadPacket(); err != io.EOF {
		t.Fatal(err)
	}
	if rd.bb != nil || !rd.isInline() {
		t.Error("pooled buffer kept while idle")
	}
}
