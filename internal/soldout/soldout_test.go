package soldout

import (
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestFlagsLapse(t *testing.T) {
	t.Parallel()
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	f := New[int64](5*time.Second, c.now)
	if f.Out(1) {
		t.Fatal("an unmarked key is out")
	}
	f.Mark(1, f.Epoch())
	if !f.Out(1) || f.Out(2) {
		t.Fatal("mark of key 1: want 1 out and 2 not")
	}
	c.advance(4999 * time.Millisecond)
	if !f.Out(1) {
		t.Fatal("flag lapsed before its TTL")
	}
	c.advance(time.Millisecond)
	if f.Out(1) {
		t.Fatal("flag still set at its TTL: a node that missed a top-up would refuse forever")
	}
	f.Mark(1, f.Epoch())
	if !f.Out(1) {
		t.Fatal("a new mark after a lapse is not honoured")
	}
}

func TestFlagsReset(t *testing.T) {
	t.Parallel()
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	f := New[string](time.Hour, c.now)
	f.Mark("a", f.Epoch())
	f.Mark("b", f.Epoch())
	f.Reset()
	if f.Out("a") || f.Out("b") {
		t.Fatal("flags survive a reset")
	}
	// A deduction that began before the reset saw the old count; its mark is ignored.
	before := f.Epoch()
	f.Reset()
	f.Mark("a", before)
	if f.Out("a") {
		t.Fatal("a deduction that began before a reset flagged its key after it")
	}
	// A mark stored between the epoch check and a reset (the race Mark cannot close) is
	// of the old epoch and ignored.
	f.m.Store("b", flag{epoch: f.Epoch() - 1, until: c.now().Add(time.Hour)})
	if f.Out("b") {
		t.Fatal("a flag of an old epoch is honoured")
	}
	f.Mark("a", f.Epoch())
	if !f.Out("a") {
		t.Fatal("a deduction of the current epoch cannot flag")
	}
}

func TestFlagsConcurrent(t *testing.T) {
	t.Parallel()
	f := New[int](time.Hour, nil)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 1000 {
				e := f.Epoch()
				f.Out(j % 10)
				f.Mark(j%10, e)
				if i == 0 && j%100 == 0 {
					f.Reset()
				}
			}
		})
	}
	wg.Wait()
	f.Reset()
	for k := range 10 {
		if f.Out(k) {
			t.Fatalf("key %d out after the last reset", k)
		}
	}
}
