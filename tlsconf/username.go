package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"

	"iotd/wire"
)

var (
	oidCommonName     = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
)

// GeneralName tags (RFC 5280, 4.2.1.6).
const (
	sanTagEmail = 1 // rfc822Name
	sanTagDNS   = 2 // dNSName
)

// UsernameFromCert returns the user name a verified client certificate
// stands for, for the --tls-cn-as-username option: the leaf's Subject
// common name or, when it has none, its first subject alternative name of
// type DNS or email, in the order the certificate lists them.
//
// It returns false when there is no such name, and also when:
//   - the connection has no verified chain: a certificate the handshake did
//     not verify against the client CA is never an identity;
//   - the subject has more than one common name, which parsers resolve
//     differently (Go keeps the last, OpenSSL and Mosquitto the first);
//   - the name is not a valid MQTT UTF-8 string (no U+0000, well-formed,
//     at most 65535 bytes), so it could not have been sent as a user name.
func UsernameFromCert(state tls.ConnectionState) (string, bool) {
	if len(state.VerifiedChains) == 0 || len(state.VerifiedChains[0]) == 0 {
		return "", false
	}
	leaf := state.VerifiedChains[0][0]
	cns := 0
	for _, atv := range leaf.Subject.Names {
		if atv.Type.Equal(oidCommonName) {
			cns++
		}
	}
	var name string
	switch {
	case cns > 1:
		return "", false
	case leaf.Subject.CommonName != "":
		name = leaf.Subject.CommonName
	default:
		var ok bool
		if name, ok = firstDNSOrEmailSAN(leaf); !ok {
			return "", false
		}
	}
	if len(name) > 65535 || wire.ValidUTF8String(name) != nil {
		return "", false
	}
	return name, true
}

// firstDNSOrEmailSAN walks the subjectAltName extension in order, which
// x509.Certificate's per-type lists lose. x509 has already parsed and
// checked the extension, so a parse failure here cannot happen in practice;
// it yields no name.
func firstDNSOrEmailSAN(c *x509.Certificate) (string, bool) {
	for _, ext := range c.Extensions {
		if !ext.Id.Equal(oidSubjectAltName) {
			continue
		}
		var seq asn1.RawValue
		if rest, err := asn1.Unmarshal(ext.Value, &seq); err != nil || len(rest) != 0 ||
			seq.Class != asn1.ClassUniversal || seq.Tag != asn1.TagSequence {
			return "", false
		}
		for b := seq.Bytes; len(b) > 0; {
			var gn asn1.RawValue
			var err error
			if b, err = asn1.Unmarshal(b, &gn); err != nil {
				return "", false
			}
			if gn.Class == asn1.ClassContextSpecific && (gn.Tag == sanTagDNS || gn.Tag == sanTagEmail) && len(gn.Bytes) > 0 {
				return string(gn.Bytes), true
			}
		}
		return "", false
	}
	return "", false
}
