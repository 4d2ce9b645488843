package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSServer is a private nats-server process with JetStream and a file store on a
// loopback port of its own, for tests that stop, kill and restart the broker. The first
// run binds a port the server picks itself; the port and the store dir stay the same
// across restarts, so clients reconnect to the same URL and find their streams again.
type NATSServer struct {
	URL string

	t     testing.TB
	bin   string
	port  int         // 0 until the first run has bound one
	dir   string      // the JetStream store
	ports string      // where the first run reports the port it bound
	log   *SyncBuffer // output of every run, shown when the test fails

	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// StartNATSServer starts nats-server on a loopback port it picks itself (never one probed
// for and handed over, which another test could take in between) with its store in a
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
	s := &NATSServer{t: t, bin: bin, dir: t.TempDir(), ports: t.TempDir(), log: &SyncBuffer{}}
	t.Cleanup(func() {
		s.signal(syscall.SIGKILL)
		if t.Failed() {
			t.Logf("nats-server output:\n%s", s.log.String())
		}
	})
	s.Start()
	return s
}

// Start runs the server and waits until JetStream answers: the first time on a port it
// picks (-p -1) and reports in a ports file, after that on the same port and store dir.
func (s *NATSServer) Start() {
	s.t.Helper()
	if s.cmd != nil {
		s.t.Fatal("nats-server already running")
	}
	fmt.Fprintf(s.log, "--- start %s\n", time.Now().Format(time.TimeOnly))
	port := "-1"
	if s.port != 0 {
		port = strconv.Itoa(s.port)
	}
	cmd := exec.Command(s.bin, "-a", "127.0.0.1", "-p", port, "-js", "-sd", s.dir, "-ports_file_dir", s.ports)
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
		err := s.boundPort(cmd.Process.Pid)
		if err == nil {
			err = s.ping()
		}
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("nats-server on %s not ready: %v", s.URL, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// boundPort learns, on the first run, the client port the server with process id pid
// bound, from the ports file it writes once it listens.
func (s *NATSServer) boundPort(pid int) error {
	if s.port != 0 {
		return nil
	}
	files, err := filepath.Glob(filepath.Join(s.ports, "*_"+strconv.Itoa(pid)+".ports"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("no ports file yet (%v)", err)
	}
	raw, err := os.ReadFile(files[0])
	if err != nil {
		return err
	}
	var ports struct {
		NATS []string `json:"nats"`
	}
	if err := json.Unmarshal(raw, &ports); err != nil || len(ports.NATS) == 0 {
		return fmt.Errorf("ports file %q: %v", raw, err) // written but not complete yet
	}
	u, err := url.Parse(ports.NATS[0])
	if err != nil {
		return fmt.Errorf("ports file %q: %w", raw, err)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil || port == 0 {
		return fmt.Errorf("ports file %q: no port", raw)
	}
	s.port, s.URL = port, "nats://127.0.0.1:"+strconv.Itoa(port)
	return nil
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
