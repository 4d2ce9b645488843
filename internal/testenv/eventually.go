package testenv

import (
	"testing"
	"time"
)

// PollInterval is how often Eventually checks its condition: a poll interval, not a wait
// for the work.
const PollInterval = 20 * time.Millisecond

// Eventually polls cond every PollInterval until it holds, and fails the test with what
// when timeout passes first. The timeout is a generous bound on asynchronous work, never a
// speed assertion. cond is either a func() bool or a func() (bool, string) whose string
// describes the state it saw; the last one goes into the failure.
func Eventually[C func() bool | func() (bool, string)](t testing.TB, timeout time.Duration, what string, cond C) {
	t.Helper()
	check := func() (bool, string) {
		switch c := any(cond).(type) {
		case func() bool:
			return c(), ""
		case func() (bool, string):
			return c()
		}
		panic("unreachable")
	}
	deadline := time.Now().Add(timeout)
	for {
		ok, state := check()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			if state != "" {
				t.Fatalf("%s: not reached within %v; last state: %s", what, timeout, state)
			}
			t.Fatalf("%s: not reached within %v", what, timeout)
		}
		time.Sleep(PollInterval)
	}
}
