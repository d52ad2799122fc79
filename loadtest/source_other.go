//go:build !linux

package loadtest

import "syscall"

// bindNoPort is Linux-only; elsewhere the kernel picks the port at bind.
func bindNoPort(network, address string, c syscall.RawConn) error { return nil }
