package wire_test

import (
	"bytes"
	"fmt"
	"testing"

	"iotd/wire"
)

var benchSizes = []struct {
	name    string
	payload int
}{{"64B", 64}, {"4KB", 4096}}

func benchPublish(payload int) *wire.Publish {
	return &wire.Publish{QoS: 1, PacketID: 42, Topic: []byte("building/7/floor/3/room/12/temperature"), Payload: bytes.Repeat([]byte{'x'}, payload)}
}

func benchConnect() *wire.Connect {
	return &wire.Connect{
		ProtocolName: "MQTT", ProtocolLevel: 4, CleanSession: true, KeepAlive: 60, ClientID: "sensor-000123",
		WillFlag: true, WillTopic: "status/sensor-000123", WillMessage: []byte("offline"), WillQoS: 1,
		UsernameFlag: true, Username: "device", PasswordFlag: true, Password: []byte("s3cret"),
	}
}

func benchSubscribe() *wire.Subscribe {
	return &wire.Subscribe{PacketID: 7, Subscriptions: []wire.Subscription{
		{Filter: "building/+/floor/+/room/+/temperature", QoS: 1},
		{Filter: "alerts/#", QoS: 2},
		{Filter: "$SYS/broker/uptime", QoS: 0},
	}}
}

// BenchmarkDecodePublish decodes into a reused Publish, as the broker's
// read loop does: 0 allocs/op.
func BenchmarkDecodePublish(b *testing.B) {
	for _, sz := range benchSizes {
		b.Run(sz.name, func(b *testing.B) {
			raw := benchPublish(sz.payload).Append(nil)
			var p wire.Publish
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				fh, hl, err := wire.DecodeHeader(raw)
				if err != nil {
					b.Fatal(err)
				}
				if err := p.Decode(fh, raw[hl:]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEncodePublish appends into a reused buffer: 0 allocs/op.
func BenchmarkEncodePublish(b *testing.B) {
	for _, sz := range benchSizes {
		b.Run(sz.name, func(b *testing.B) {
			p := benchPublish(sz.payload)
			buf := make([]byte, 0, 8192)
			b.SetBytes(int64(len(p.Append(nil))))
			b.ReportAllocs()
			for b.Loop() {
				buf = p.Append(buf[:0])
			}
		})
	}
}

func benchDecode(b *testing.B, p wire.Packet) {
	raw := p.Append(nil)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := wire.DecodePacket(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func benchEncode(b *testing.B, p wire.Packet) {
	buf := make([]byte, 0, 1024)
	b.SetBytes(int64(len(p.Append(nil))))
	b.ReportAllocs()
	for b.Loop() {
		buf = p.Append(buf[:0])
	}
}

func BenchmarkDecodeConnect(b *testing.B)   { benchDecode(b, benchConnect()) }
func BenchmarkEncodeConnect(b *testing.B)   { benchEncode(b, benchConnect()) }
func BenchmarkDecodeSubscribe(b *testing.B) { benchDecode(b, benchSubscribe()) }
func BenchmarkEncodeSubscribe(b *testing.B) { benchEncode(b, benchSubscribe()) }

// cycleReader serves the same stream of whole packets forever, as much as
// each Read asks for, like a socket with a busy peer.
type cycleReader struct {
	data []byte
	off  int
}

func (c *cycleReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k := copy(p[n:], c.data[c.off:])
		n += k
		c.off = (c.off + k) % len(c.data)
	}
	return n, nil
}

// BenchmarkReader frames and decodes a stream of PUBLISH packets through
// Reader; ns/op is per packet.
func BenchmarkReader(b *testing.B) {
	for _, sz := range benchSizes {
		b.Run(sz.name, func(b *testing.B) {
			var stream []byte
			p := benchPublish(sz.payload)
			for i := range 1000 {
				p.PacketID = uint16(i + 1)
				stream = p.Append(stream)
			}
			rd := wire.NewReader(&cycleReader{data: stream}, 1<<20)
			var got wire.Publish
			b.SetBytes(int64(len(stream) / 1000))
			b.ReportAllocs()
			for b.Loop() {
				fh, body, err := rd.ReadPacket()
				if err != nil {
					b.Fatal(err)
				}
				if err := got.Decode(fh, body); err != nil {
					b.Fatal(err)
				}
			}
			rd.Release()
		})
	}
}

// TestPublishHotPathAllocs holds the 0-allocation promise outside of
// benchmark runs too.
func TestPublishHotPathAllocs(t *testing.T) {
	for _, sz := range benchSizes {
		p := benchPublish(sz.payload)
		raw := p.Append(nil)
		buf := make([]byte, 0, 8192)
		var q wire.Publish
		if n := testing.AllocsPerRun(100, func() {
			fh, hl, _ := wire.DecodeHeader(raw)
			if err := q.Decode(fh, raw[hl:]); err != nil {
				panic(err)
			}
			buf = q.Append(buf[:0])
		}); n != 0 {
			t.Errorf("%s: decode+encode allocates %v times", sz.name, n)
		}
		if !bytes.Equal(buf, raw) {
			t.Errorf("%s: re-encoded PUBLISH differs", sz.name)
		}
	}
	// Steady-state Reader: no allocation per packet once warm.
	var stream []byte
	for i := range 100 {
		stream = (&wire.Publish{QoS: 1, PacketID: uint16(i + 1), Topic: []byte("t"), Payload: make([]byte, 100)}).Append(stream)
	}
	rd := wire.NewReader(&cycleReader{data: stream}, 0)
	if n := testing.AllocsPerRun(1000, func() {
		if _, _, err := rd.ReadPacket(); err != nil {
			panic(fmt.Sprint(err))
		}
	}); n > 0.01 {
		t.Errorf("Reader allocates %v times per packet", n)
	}
}
