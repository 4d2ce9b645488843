// Package nats wraps NATS JetStream: the in-process server of the embedded default, client
// connections to an external cluster, and the durable streams and consumers bigmarket uses.
package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// readyTimeout bounds how long StartEmbedded waits for the in-process server.
const readyTimeout = 30 * time.Second

// Embedded is an in-process nats-server with JetStream and a file store, for the embedded
// default: it listens on no port, and clients reach it through Connect.
type Embedded struct {
	srv *server.Server
}

// EmbeddedOption configures StartEmbedded.
type EmbeddedOption func(*embeddedConfig)

type embeddedConfig struct {
	logger *slog.Logger
}

// WithLogger bridges the server's warnings and errors to logger. Without it the embedded
// server logs nothing.
func WithLogger(logger *slog.Logger) EmbeddedOption {
	return func(c *embeddedConfig) { c.logger = logger }
}

// StartEmbedded starts an in-process JetStream server whose file store lives under
// dir/jetstream, and waits until it accepts connections. A server started again on the
// same dir finds its streams, messages and consumers again.
func StartEmbedded(dir string, opts ...EmbeddedOption) (*Embedded, error) {
	var cfg embeddedConfig
	for _, o := range opts {
		o(&cfg)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("embedded nats dir: %w", err)
	}
	sopts := &server.Options{
		ServerName: "bigmarket-embedded",
		JetStream:  true,
		// The server appends "jetstream" to StoreDir.
		StoreDir:   abs,
		DontListen: true,
		NoSigs:     true,
		NoLog:      cfg.logger == nil,
	}
	srv, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("new embedded nats server: %w", err)
	}
	if cfg.logger != nil {
		srv.SetLoggerV2(slogBridge{cfg.logger}, false, false, false)
	}
	srv.Start()
	if !srv.ReadyForConnections(readyTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, errors.New("embedded nats server not ready")
	}
	if !srv.JetStreamEnabled() {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, errors.New("embedded nats server started without JetStream")
	}
	return &Embedded{srv: srv}, nil
}

// Connect opens a client connection to the embedded server through memory, not TCP.
func (e *Embedded) Connect(opts ...natsgo.Option) (*natsgo.Conn, error) {
	all := append([]natsgo.Option{
		natsgo.InProcessServer(e.srv),
		natsgo.Name("bigmarket-embedded"),
	}, opts...)
	nc, err := natsgo.Connect("", all...)
	if err != nil {
		return nil, fmt.Errorf("connect embedded nats: %w", err)
	}
	return nc, nil
}

// Shutdown stops the server and waits until it has flushed its store and stopped.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// Connect dials an external NATS cluster. It fails fast when no server answers at start
// (a wrong address should stop the process), and once connected it reconnects forever,
// so that a broker restart never needs an application restart. extra options (handlers
// for disconnect and reconnect events, credentials) are applied last.
func Connect(urls []string, name string, extra ...natsgo.Option) (*natsgo.Conn, error) {
	if len(urls) == 0 {
		return nil, errors.New("connect nats: no urls")
	}
	opts := append([]natsgo.Option{
		natsgo.Name(name),
		natsgo.Timeout(5 * time.Second),
		natsgo.MaxReconnects(-1),
		natsgo.ReconnectWait(time.Second),
		natsgo.ReconnectJitter(500*time.Millisecond, 2*time.Second),
		natsgo.PingInterval(20 * time.Second),
		natsgo.MaxPingsOutstanding(3),
		// Buffer publishes made while reconnecting (the default 8 MiB).
		natsgo.ReconnectBufSize(8 * 1024 * 1024),
	}, extra...)
	nc, err := natsgo.Connect(strings.Join(urls, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("connect nats %s: %w", strings.Join(urls, ","), err)
	}
	return nc, nil
}

// pingTimeout bounds Ping when ctx has no deadline.
const pingTimeout = 5 * time.Second

// Ping checks that the connection round-trips to the server and that JetStream answers
// for the account, so a readiness probe proves the broker can take durable messages.
func Ping(ctx context.Context, nc *natsgo.Conn) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, pingTimeout)
		defer cancel()
	}
	if err := nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("nats ping: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("nats ping: %w", err)
	}
	if _, err := js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("nats ping jetstream: %w", err)
	}
	return nil
}

// slogBridge passes the embedded server's warnings and errors to slog; notices, debug
// and trace lines are dropped.
type slogBridge struct{ l *slog.Logger }

func (b slogBridge) Noticef(string, ...any) {}
func (b slogBridge) Debugf(string, ...any)  {}
func (b slogBridge) Tracef(string, ...any)  {}

func (b slogBridge) Warnf(format string, v ...any) {
	b.l.Warn(fmt.Sprintf(format, v...), "component", "nats-server")
}

func (b slogBridge) Errorf(format string, v ...any) {
	b.l.Error(fmt.Sprintf(format, v...), "component", "nats-server")
}

func (b slogBridge) Fatalf(format string, v ...any) {
	b.l.Error(fmt.Sprintf(format, v...), "component", "nats-server", "fatal", true)
}
