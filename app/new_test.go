package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestNewFailureReturnsTheError: when a backend cannot be opened, New closes what it
// built and returns the error (it used to close a nil App and panic, hiding the error).
func TestNewFailureReturnsTheError(t *testing.T) {
	// A port nobody listens on: take one and close it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	cfg := DefaultConfig()
	cfg.Mode = ModeProduction
	cfg.AdminToken = "admin-token-0123456789"
	cfg.JWTSecret = "jwt-secret-0123456789"
	cfg.DataDir = t.TempDir()
	cfg.ConfigDSN = "root@tcp(" + addr + ")/big_market?timeout=1s"
	cfg.UserDSNs = []string{"root@tcp(" + addr + ")/big_market_01?timeout=1s", "root@tcp(" + addr + ")/big_market_02?timeout=1s"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := New(ctx, cfg, NewLogger(cfg, io.Discard))
	if err == nil {
		n.Close()
		t.Fatal("New on an unreachable database: no error")
	}
	if n != nil {
		t.Errorf("New returned an App with its error %v", err)
	}
	if !strings.Contains(err.Error(), addr) && !strings.Contains(strings.ToLower(err.Error()), "connect") {
		t.Logf("error (does not name the address): %v", err)
	}
}

// TestNATSSetupRetriesTimeouts: a stream or bucket creation that times out is sent again
// (the broker may have made it without answering), another error is returned at once.
func TestNATSSetupRetriesTimeouts(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	n := &App{cfg: cfg, log: NewLogger(cfg, io.Discard)}
	calls := 0
	err := n.natsSetup(context.Background(), func(ctx context.Context) error {
		calls++
		if _, ok := ctx.Deadline(); !ok {
			t.Error("a try without a deadline")
		}
		if calls < 3 {
			return fmt.Errorf("ensure stream X: %w", context.DeadlineExceeded)
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Errorf("two timeouts then success: err %v after %d calls, want nil after 3", err, calls)
	}

	calls = 0
	refused := errors.New("stream name already in use with a different configuration")
	err = n.natsSetup(context.Background(), func(context.Context) error { calls++; return refused })
	if !errors.Is(err, refused) || calls != 1 {
		t.Errorf("a refusal: err %v after %d calls, want it after 1", err, calls)
	}

	// The caller's context ends the retries.
	ctx, cancel := context.WithCancel(context.Background())
	calls = 0
	err = n.natsSetup(ctx, func(context.Context) error {
		calls++
		cancel()
		return context.DeadlineExceeded
	})
	if err == nil || calls != 1 {
		t.Errorf("cancelled caller: err %v after %d calls, want an error after 1", err, calls)
	}
}
