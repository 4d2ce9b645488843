package redis

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

func TestOpenChoosesClientKind(t *testing.T) {
	t.Parallel()
	e, err := StartEmbedded()
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for _, tc := range []struct {
		name    string
		opts    Options
		cluster bool
	}{
		{"one address", Options{Addrs: []string{e.Addr()}}, false},
		{"cluster flag", Options{Addrs: []string{e.Addr()}, Cluster: true}, true},
		{"several addresses", Options{Addrs: []string{e.Addr(), e.Addr()}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Open(context.Background(), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, isCluster := c.(*goredis.ClusterClient)
			if isCluster != tc.cluster {
				t.Fatalf("got %T, want cluster=%v", c, tc.cluster)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	if _, err := Open(context.Background(), Options{}); err == nil {
		t.Error("open without address succeeded")
	}
	if _, err := Open(context.Background(), Options{Addrs: []string{"127.0.0.1:6379", " "}}); err == nil {
		t.Error("open with an empty address succeeded")
	}
	// Port 1 on loopback refuses connections.
	_, err := Open(context.Background(), Options{Addrs: []string{"127.0.0.1:1"}})
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("open of a closed port: %v, want an error naming the address", err)
	}
}

func TestEmbeddedCloseStopsEverything(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	e, err := StartEmbedded()
	if err != nil {
		t.Fatal(err)
	}
	c, err := Open(context.Background(), Options{Addrs: []string{e.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	e.Close()
	e.Close() // idempotent
}

// silentServer answers HELLO (unknown, so the client speaks RESP2) and PING, counts every
// other command by name and never answers it: a server that ran a command whose reply
// the client then waited for in vain.
type silentServer struct {
	ln  net.Listener
	mu  sync.Mutex
	got map[string]int
}

func startSilentServer(t *testing.T) *silentServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &silentServer{ln: ln, got: map[string]int{}}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

func (s *silentServer) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		args, err := readCommand(r)
		if err != nil {
			return
		}
		switch name := strings.ToUpper(args[0]); name {
		case "HELLO":
			_, _ = c.Write([]byte("-ERR unknown command 'HELLO'\r\n"))
		case "PING":
			_, _ = c.Write([]byte("+PONG\r\n"))
		default:
			s.mu.Lock()
			s.got[name]++
			s.mu.Unlock()
		}
	}
}

func (s *silentServer) count(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got[name]
}

// readCommand reads one RESP array of bulk strings.
func readCommand(r *bufio.Reader) ([]string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "*")))
	if err != nil || n < 1 {
		return nil, fmt.Errorf("not an array: %q", line)
	}
	args := make([]string, n)
	for i := range args {
		if _, err := r.ReadString('\n'); err != nil { // $<len>
			return nil, err
		}
		arg, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		args[i] = strings.TrimSuffix(arg, "\r\n")
	}
	return args, nil
}

// TestOpenNeverRetriesATimedOutCommand: a script whose reply timed out may have run, so
// the client must not send it again (go-redis retries a read timeout up to MaxRetries
// times by default: under load, a stock deduction sent four times took four units for
// one answer). Plain commands and pipelines of the auto-pipeliner alike.
func TestOpenNeverRetriesATimedOutCommand(t *testing.T) {
	t.Parallel()
	s := startSilentServer(t)
	c, err := Open(t.Context(), Options{Addrs: []string{s.ln.Addr().String()}, ReadTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	script := goredis.NewScript(`return redis.call('INCR', KEYS[1])`)
	if err := c.EvalSha(t.Context(), script.Hash(), []string{"k"}).Err(); err == nil {
		t.Fatal("a command without a reply succeeded")
	}
	ap, err := c.AutoPipeline()
	if err != nil {
		t.Fatal(err)
	}
	if err := ap.Incr(t.Context(), "k").Err(); err == nil {
		t.Fatal("an auto-pipelined command without a reply succeeded")
	}
	_ = ap.Close()
	if got := s.count("EVALSHA"); got != 1 {
		t.Errorf("EVALSHA sent %d times after a read timeout, want once", got)
	}
	if got := s.count("INCR"); got != 1 {
		t.Errorf("auto-pipelined INCR sent %d times after a read timeout, want once", got)
	}
}
