package testenv

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSServer is a private nats-server process with JetStream and a file store on a
// loopback port of its own, for tests that stop, kill and restart the broker. The port and
// the store dir stay the same across restarts, so clients reconnect to the same URL and
// find their streams again.
type NATSServer struct {
	URL string

	t    testing.TB
	bin  string
	port int
	dir  string
	log  *SyncBuffer // output of every run, shown when the test fails

	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// StartNATSServer starts nats-server on a free loopback port with its store in a
// temporary dir, waits until it takes JetStream requests, and kills it when the test ends.
// The test is skipped when nats-server is not installed, and fails in CI.
func StartNATSServer(t testing.TB) *NATSServer {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("nats-server not found in CI: %v", err)
		}
		t.Skipf("nats-server not installed: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatalf("free port: %v", err)
	}
	s := &NATSServer{t: t, bin: bin, port: port, dir: t.TempDir(), URL: "nats://127.0.0.1:" + strconv.Itoa(port), log: &SyncBuffer{}}
	t.Cleanup(func() {
		s.signal(syscall.SIGKILL)
		if t.Failed() {
			t.Logf("nats-server output:\n%s", s.log.String())
		}
	})
	s.Start()
	return s
}

// Start runs the server (again) on the same port and store dir and waits until JetStream
// answers.
func (s *NATSServer) Start() {
	s.t.Helper()
	if s.cmd != nil {
		s.t.Fatal("nats-server already running")
	}
	fmt.Fprintf(s.log, "--- start %s\n", time.Now().Format(time.TimeOnly))
	cmd := exec.Command(s.bin, "-a", "127.0.0.1", "-p", strconv.Itoa(s.port), "-js", "-sd", s.dir)
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start nats-server: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-done:
			s.cmd = nil
			s.t.Fatalf("nats-server exited at start (%s); output:\n%s", cmd.ProcessState, s.log.String())
		default:
		}
		err := s.ping()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("nats-server on %s not ready: %v", s.URL, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ping connects once, without reconnecting, and checks that JetStream answers.
func (s *NATSServer) ping() error {
	nc, err := natsgo.Connect(s.URL, natsgo.Timeout(time.Second), natsgo.NoReconnect())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = js.AccountInfo(ctx)
	return err
}

// Stop shuts the server down gracefully (SIGTERM) and waits until it has exited.
func (s *NATSServer) Stop() {
	s.t.Helper()
	if !s.signal(syscall.SIGTERM) {
		s.t.Fatal("nats-server did not exit after SIGTERM")
	}
}

// Kill ends the server with SIGKILL, as a crash would, and waits until it has exited.
func (s *NATSServer) Kill() {
	s.t.Helper()
	if !s.signal(syscall.SIGKILL) {
		s.t.Fatal("nats-server did not exit after SIGKILL")
	}
}

// signal sends sig and waits for the exit; after 15s it falls back to SIGKILL and reports
// false. It does nothing when the server is not running.
func (s *NATSServer) signal(sig syscall.Signal) bool {
	if s.cmd == nil {
		return true
	}
	cmd, done := s.cmd, s.done
	s.cmd, s.done = nil, nil
	fmt.Fprintf(s.log, "--- %s %s\n", sig, time.Now().Format(time.TimeOnly))
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
		return true
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		return false
	}
}

// SyncBuffer is a bytes.Buffer that a child process's output (or a server's log) and the
// test's reads may use at once.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
