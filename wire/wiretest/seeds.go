package wiretest

import (
	"bytes"

	"iotd/wire"
)

// BodySeed is a packet split into its fixed-header flags and its body, the
// two inputs of the fuzz targets that frame packets themselves.
type BodySeed struct {
	Flags byte
	Body  []byte
}

// BodySeeds splits the Valid and Malformed packets of type t into flags and
// body. A packet refused on its header, or cut short, keeps the flags of its
// first byte and everything after the 2-byte header.
func BodySeeds(t wire.Type) []BodySeed {
	var seeds []BodySeed
	for _, tables := range [][]Case{Valid, Malformed} {
		for _, c := range tables {
			if len(c.Raw) < 2 || wire.Type(c.Raw[0]>>4) != t {
				continue
			}
			fh, hl, err := wire.DecodeHeader(c.Raw)
			if err != nil || hl+fh.RemainingLength > len(c.Raw) {
				seeds = append(seeds, BodySeed{c.Raw[0] & 0x0F, bytes.Clone(c.Raw[2:])})
				continue
			}
			seeds = append(seeds, BodySeed{fh.Flags, bytes.Clone(c.Raw[hl : hl+fh.RemainingLength])})
		}
	}
	return seeds
}
