package wire_test

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"

	"iotd/wire"
	"iotd/wire/wiretest"
)

// The byte tables live in wiretest (cases.go, malformed.go) so broker
// integration tests can send the same bytes; these tests hold the codec to
// them.

// sentinels lists every exported error; each decode error must match
// exactly one of them.
var sentinels = []error{
	wire.ErrIncomplete, wire.ErrRemainingLength, wire.ErrPacketTooLarge, wire.ErrPacketType,
	wire.ErrFlags, wire.ErrMalformed, wire.ErrStringLength, wire.ErrInvalidUTF8, wire.ErrNullChar,
	wire.ErrZeroPacketID, wire.ErrEmptySubscribe, wire.ErrEmptyUnsubscribe, wire.ErrSubscribeQoS,
	wire.ErrPublishQoS, wire.ErrTopicWildcard, wire.ErrTopicEmpty, wire.ErrTopicTooLong,
	wire.ErrTopicFilter, wire.ErrProtocolName, wire.ErrProtocolLevel, wire.ErrConnectFlags,
	wire.ErrEmptyClientID,
}

func matchingSentinels(err error) []error {
	var out []error
	for _, s := range sentinels {
		if errors.Is(err, s) {
			out = append(out, s)
		}
	}
	return out
}

func TestValidDecode(t *testing.T) {
	for _, c := range wiretest.Valid {
		t.Run(c.Name, func(t *testing.T) {
			raw := bytes.Clone(c.Raw)
			p, n, err := wire.DecodePacket(raw)
			if err != nil {
				t.Fatalf("DecodePacket(% x): %v", c.Raw, err)
			}
			if n != len(raw) {
				t.Errorf("used %d bytes, want %d", n, len(raw))
			}
			if !reflect.DeepEqual(p, c.Packet) {
				t.Fatalf("decoded %#v\nwant    %#v", p, c.Packet)
			}
			if p.Type() != wire.Type(c.Raw[0]>>4) {
				t.Errorf("Type() = %v, want %v", p.Type(), wire.Type(c.Raw[0]>>4))
			}
			// The decoded packet owns its memory: scribbling over the input
			// must not change it.
			for i := range raw {
				raw[i] = 0xAA
			}
			if !reflect.DeepEqual(p, c.Packet) {
				t.Errorf("decoded packet changed when the input was overwritten: %#v", p)
			}
		})
	}
}

func TestValidEncode(t *testing.T) {
	for _, c := range wiretest.Valid {
		if c.DecodeOnly {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			if got := c.Packet.Append(nil); !bytes.Equal(got, c.Raw) {
				t.Fatalf("Append = % x\nwant     % x", got, c.Raw)
			}
			// Append extends dst and leaves what was there alone.
			prefix := []byte{1, 2, 3}
			got := c.Packet.Append(bytes.Clone(prefix))
			if !bytes.Equal(got[:3], prefix) || !bytes.Equal(got[3:], c.Raw) {
				t.Fatalf("Append onto a prefix = % x", got)
			}
		})
	}
}

// TestValidPrefixesIncomplete: every proper prefix of a packet asks for more
// bytes instead of failing, so a reader can resume with the same function.
func TestValidPrefixesIncomplete(t *testing.T) {
	for _, c := range wiretest.Valid {
		for i := 0; i < len(c.Raw); i++ {
			if _, _, err := wire.DecodePacket(c.Raw[:i]); err != wire.ErrIncomplete {
				t.Fatalf("%s: prefix of %d bytes: err = %v, want ErrIncomplete", c.Name, i, err)
			}
		}
	}
}

func TestValidPublishDecodeInPlace(t *testing.T) {
	var p wire.Publish
	for _, c := range wiretest.Valid {
		want, ok := c.Packet.(*wire.Publish)
		if !ok {
			continue
		}
		fh, hl, err := wire.DecodeHeader(c.Raw)
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		body := c.Raw[hl:]
		if err := p.Decode(fh, body); err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		if p.Dup != want.Dup || p.QoS != want.QoS || p.Retain != want.Retain || p.PacketID != want.PacketID ||
			!bytes.Equal(p.Topic, want.Topic) || !bytes.Equal(p.Payload, want.Payload) {
			t.Errorf("%s: decoded %+v, want %+v", c.Name, p, *want)
		}
		// Topic aliases the body: no copy on the hot path.
		if &p.Topic[0] != &body[2] {
			t.Errorf("%s: Topic does not alias the body", c.Name)
		}
	}
}

func TestMalformed(t *testing.T) {
	for _, c := range wiretest.Malformed {
		t.Run(c.Name, func(t *testing.T) {
			p, _, err := wire.DecodePacket(c.Raw)
			if err == nil {
				t.Fatalf("decoded % x to %#v, want %v", c.Raw, p, c.Err)
			}
			if !errors.Is(err, c.Err) {
				t.Fatalf("err = %v, want %v", err, c.Err)
			}
			if m := matchingSentinels(err); len(m) != 1 {
				t.Errorf("err %v matches %d sentinels %v, want exactly one", err, len(m), m)
			}
			if err.Error() == "" {
				t.Error("empty error text")
			}
			fh, hl, herr := wire.DecodeHeader(c.Raw)
			if herr != nil || fh.Type != wire.CONNECT {
				return
			}
			// A CONNECT body error tells the broker which CONNACK to send.
			_, cerr := wire.DecodeConnect(fh, c.Raw[hl:])
			var ce *wire.ConnectError
			if !errors.As(cerr, &ce) {
				t.Fatalf("DecodeConnect error %T %v is not a *ConnectError", cerr, cerr)
			}
			if ce.ReturnCode != c.ReturnCode {
				t.Errorf("ReturnCode = %#x, want %#x", ce.ReturnCode, c.ReturnCode)
			}
		})
	}
}

// TestCaseNamesUnique keeps wiretest.Find unambiguous.
func TestCaseNamesUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, tables := range [][]wiretest.Case{wiretest.Valid, wiretest.Malformed} {
		for _, c := range tables {
			if seen[c.Name] {
				t.Errorf("duplicate case name %q", c.Name)
			}
			seen[c.Name] = true
		}
	}
	if got := wiretest.Raw("pingreq"); !bytes.Equal(got, []byte{0xc0, 0x00}) {
		t.Errorf("Raw(pingreq) = % x", got)
	}
}

func TestBuilders(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  []byte
		want string // a Valid case with the same bytes
	}{
		{"Connect", wiretest.Connect("c1", true, 60), "connect_minimal"},
		{"ConnectWill", wiretest.ConnectWill("c", true, 0, "t", nil, 2, false), "connect_will_qos2_empty_message"},
		{"Connack", wiretest.Connack(true, 0), "connack_session_present"},
		{"Publish", wiretest.Publish("a/b/c", []byte("hello"), 0, false, 99), "publish_qos0"},
		{"PublishDup", wiretest.PublishDup("t", []byte("pp"), 2, true, 0x1234), "publish_qos2_dup_retain"},
		{"Puback", wiretest.Puback(1), "puback"},
		{"Pubrec", wiretest.Pubrec(0x1234), "pubrec"},
		{"Pubrel", wiretest.Pubrel(0xffff), "pubrel"},
		{"Pubcomp", wiretest.Pubcomp(7), "pubcomp"},
		{"Subscribe", wiretest.Subscribe(1, "a/b", 0), "subscribe_one"},
		{"Suback", wiretest.Suback(0xbeef, 0, 1, 2, 0x80), "suback_mixed"},
		{"Unsubscribe", wiretest.Unsubscribe(3, "a/+", "#"), "unsubscribe_many"},
		{"Unsuback", wiretest.Unsuback(7), "unsuback"},
		{"Pingreq", wiretest.Pingreq(), "pingreq"},
		{"Pingresp", wiretest.Pingresp(), "pingresp"},
		{"Disconnect", wiretest.Disconnect(), "disconnect"},
	} {
		if want := wiretest.Raw(tc.want); !bytes.Equal(tc.got, want) {
			t.Errorf("%s = % x, want % x", tc.name, tc.got, want)
		}
	}
	auth := wiretest.ConnectAuth("id", "u", []byte("pw"))
	p, _, err := wire.DecodePacket(auth)
	if c, ok := p.(*wire.Connect); err != nil || !ok || c.Username != "u" || string(c.Password) != "pw" {
		t.Errorf("ConnectAuth decodes to %#v, %v", p, err)
	}
}

func TestReadPacketHelper(t *testing.T) {
	stream := append(wiretest.Raw("publish_two_byte_length"), wiretest.Raw("pingreq")...)
	r := bytes.NewReader(stream)
	p, err := wiretest.ReadPacket(r)
	if err != nil || !reflect.DeepEqual(p, wiretest.Find("publish_two_byte_length").Packet) {
		t.Fatalf("first packet %#v, %v", p, err)
	}
	if r.Len() != 2 {
		t.Fatalf("ReadPacket over-read: %d bytes left, want 2", r.Len())
	}
	if p, err := wiretest.ReadPacket(r); err != nil || p.Type() != wire.PINGREQ {
		t.Fatalf("second packet %#v, %v", p, err)
	}
	if _, err := wiretest.ReadPacket(r); err == nil {
		t.Fatal("read past the end")
	}
	if _, err := wiretest.ReadRaw(bytes.NewReader([]byte{0x30, 0x05, 0x00})); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated packet: err = %v", err)
	}
}
