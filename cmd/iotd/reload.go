package main

import "log/slog"

// A reloader re-reads one piece of configuration on SIGHUP (the log level
// from --config; password and ACL files and TLS certificates). It must not
// drop connections, and on error it keeps what it had.
type reloader struct {
	what string
	fn   func() error
}

// reload runs every reloader; one that fails is logged and the others
// still run.
func reload(logger *slog.Logger, rs []reloader) {
	logger.Info("SIGHUP: reloading", "count", len(rs))
	for _, r := range rs {
		if err := r.fn(); err != nil {
			logger.Error("SIGHUP: reload failed; keeping the previous settings", "what", r.what, "err", err)
		}
	}
}
