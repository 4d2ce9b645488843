package testenv

import (
	"strings"
	"testing"
)

// TestNATSServerKeepsItsPort starts a private nats-server on a port it picks itself, kills
// it and starts it again: the restart takes the same URL and answers JetStream requests.
func TestNATSServerKeepsItsPort(t *testing.T) {
	s := StartNATSServer(t)
	url := s.URL
	if !strings.HasPrefix(url, "nats://127.0.0.1:") || s.port == 0 {
		t.Fatalf("URL %q port %d, want a loopback URL with the port the server bound", url, s.port)
	}
	s.Kill()
	s.Start()
	if s.URL != url {
		t.Fatalf("restart moved the server from %s to %s", url, s.URL)
	}
	if err := s.ping(); err != nil {
		t.Fatalf("JetStream after restart on %s: %v", s.URL, err)
	}
	s.Stop()
	s.Start()
	if s.URL != url {
		t.Fatalf("restart after a graceful stop moved the server from %s to %s", url, s.URL)
	}
}
