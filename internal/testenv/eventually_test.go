package testenv

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// fatalTB records the failure Eventually reports and stops its goroutine, as t.Fatalf does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(f)
}

// run calls Eventually on a fatalTB and returns the failure it reported, "" if none.
func run(eventually func(t testing.TB)) string {
	f := &fatalTB{}
	var wg sync.WaitGroup
	wg.Go(func() {
		defer func() {
			if r := recover(); r != nil && r != any(f) {
				panic(r)
			}
		}()
		eventually(f)
	})
	wg.Wait()
	return f.msg
}

func TestEventually(t *testing.T) {
	n := 0
	if msg := run(func(tb testing.TB) {
		Eventually(tb, 10*time.Second, "third call", func() bool { n++; return n == 3 })
	}); msg != "" || n != 3 {
		t.Fatalf("a condition that holds on the third poll: failure %q after %d calls", msg, n)
	}
	msg := run(func(tb testing.TB) {
		Eventually(tb, 50*time.Millisecond, "never", func() bool { return false })
	})
	if !strings.HasPrefix(msg, "never: not reached within 50ms") {
		t.Fatalf("a condition that never holds: failure %q", msg)
	}
	calls := 0
	msg = run(func(tb testing.TB) {
		Eventually(tb, 50*time.Millisecond, "count", func() (bool, string) { calls++; return false, fmt.Sprint("seen ", calls) })
	})
	if want := fmt.Sprintf("count: not reached within 50ms; last state: seen %d", calls); msg != want || calls < 2 {
		t.Fatalf("failure %q, want %q", msg, want)
	}
}
