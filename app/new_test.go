package app

import (
	"context"
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
