package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/urfave/cli/v2"

	"iotd/metrics"
	"iotd/shard"
)

// Operations flags of `iotd serve`: the metrics listener and $SYS topics.
func opsFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "metrics-listen", Usage: "serve Prometheus metrics at http://`HOST:PORT`/metrics (e.g. 127.0.0.1:9234); off when empty. No authentication: keep it on loopback or a private network"},
		&cli.BoolFlag{Name: "pprof", Usage: "also serve the Go runtime profiles at /debug/pprof/ on --metrics-listen"},
		&cli.DurationFlag{Name: "sys-interval", Value: 10 * time.Second, Usage: "publish $SYS/broker/... statistics (retained, Mosquitto's topic names) this often; 0 = off"},
	}
}

func checkMetricsListen(v string) error {
	if v == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(v); err != nil {
		return fmt.Errorf("--metrics-listen %q: want HOST:PORT such as 127.0.0.1:9234: %v", v, err)
	}
	return nil
}

// ops runs the metrics listener and the $SYS publisher beside the broker.
type ops struct {
	metricsAddr string
	pprof       bool
	sysInterval time.Duration

	ln      net.Listener
	srv     *http.Server
	srvDone chan struct{}
	stopSys chan struct{}
	sysDone chan struct{}
}

func newOps(cctx *cli.Context) (*ops, error) {
	o := &ops{metricsAddr: cctx.String("metrics-listen"), pprof: cctx.Bool("pprof"), sysInterval: cctx.Duration("sys-interval")}
	if err := checkMetricsListen(o.metricsAddr); err != nil {
		return nil, err
	}
	if o.pprof && o.metricsAddr == "" {
		return nil, errors.New("--pprof serves on the metrics listener: set --metrics-listen too (e.g. 127.0.0.1:9234)")
	}
	if o.sysInterval < 0 {
		return nil, fmt.Errorf("--sys-interval %s: want 0 (off) or a positive duration", o.sysInterval)
	}
	return o, nil
}

// listen binds the metrics listener, if any.
func (o *ops) listen() error {
	if o.metricsAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", o.metricsAddr)
	if err != nil {
		return fmt.Errorf("--metrics-listen %s: %w (is another process on that port?)", o.metricsAddr, err)
	}
	o.ln = ln
	return nil
}

// start serves metrics and starts the $SYS publisher for b.
func (o *ops) start(b *shard.Broker, logger *slog.Logger) {
	if o.ln != nil {
		o.srv = &http.Server{
			Handler:           metrics.Handler(metrics.Registry(b, version), o.pprof),
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		}
		o.srvDone = make(chan struct{})
		go func() {
			defer close(o.srvDone)
			if err := o.srv.Serve(o.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error("metrics listener failed", "addr", o.ln.Addr().String(), "err", err)
			}
		}()
	}
	if o.sysInterval > 0 {
		o.stopSys, o.sysDone = make(chan struct{}), make(chan struct{})
		sys := metrics.NewSys(b, version, o.sysInterval)
		go func() {
			defer close(o.sysDone)
			sys.Run(o.stopSys)
		}()
	}
}

// describe is the ready line's part for the metrics listener.
func (o *ops) describe() string {
	if o.ln == nil {
		return ""
	}
	return " metrics=http://" + o.ln.Addr().String() + "/metrics"
}

// stop ends the $SYS publisher and the metrics listener (before the broker
// closes, so neither reads a stopped broker).
func (o *ops) stop() {
	if o.stopSys != nil {
		close(o.stopSys)
		<-o.sysDone
	}
	if o.srv != nil {
		o.srv.Close()
		<-o.srvDone
	} else if o.ln != nil {
		o.ln.Close()
	}
}
