package redis

import (
	"fmt"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
)

// expiryTick is how often the embedded server ages its TTLs. Keys outlive their expiry
// by at most this much.
const expiryTick = 100 * time.Millisecond

// Embedded is an in-process Redis-compatible server (miniredis) on a loopback port, for
// the one-binary default. It runs the same Lua scripts as Redis 7. Its data lives in
// memory only: it is empty after every start.
type Embedded struct {
	srv  *miniredis.Miniredis
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// EmbeddedTimeout is the read, write and pool timeout of a client of the embedded server: it
// shares its process's CPU (and runs each script in a fresh Lua state), so a crowd makes
// its replies slow, not lost; the default 3s would turn that slowness into unknown
// outcomes.
const EmbeddedTimeout = 10 * time.Second

// StartEmbedded starts an embedded server on 127.0.0.1 with a free port.
//
// miniredis does not age TTLs by itself; a ticker moves them forward by the elapsed wall
// time so that keys really expire. (miniredis' ClockTTL would do it lazily, but it sorts
// the whole keyspace on every command; the ticker pays that ten times a second.)
func StartEmbedded() (*Embedded, error) {
	srv := miniredis.NewMiniRedis()
	if err := srv.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("start embedded redis: %w", err)
	}
	e := &Embedded{srv: srv, stop: make(chan struct{}), done: make(chan struct{})}
	go e.age()
	return e, nil
}

func (e *Embedded) age() {
	defer close(e.done)
	t := time.NewTicker(expiryTick)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			now := time.Now()
			e.srv.FastForward(now.Sub(last))
			last = now
		}
	}
}

// Addr returns the server's host:port.
func (e *Embedded) Addr() string { return e.srv.Addr() }

// Close stops the expiry ticker and the server, dropping all data. It is safe to call
// more than once.
func (e *Embedded) Close() {
	e.once.Do(func() {
		close(e.stop)
		<-e.done
		e.srv.Close()
	})
}
