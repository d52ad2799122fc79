package main

import (
	"log/slog"
	"net"
)

// addrAsString logs network addresses as "host:port" in both formats
// (JSON would otherwise print a net.TCPAddr as an object).
func addrAsString(_ []string, a slog.Attr) slog.Attr {
	if addr, ok := a.Value.Any().(net.Addr); ok && a.Value.Kind() == slog.KindAny {
		return slog.String(a.Key, addr.String())
	}
	return a
}
