package main

import (
	"context"
	"io"
	"strings"
	"testing"
)

// TestDLQCommandRefusesBadArguments: mistakes are caught before any request is sent.
func TestDLQCommandRefusesBadArguments(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"dlq"}, `subcommands are "list" and "replay"`},
		{[]string{"dlq", "purge"}, `subcommands are "list" and "replay"`},
		{[]string{"dlq", "list", "extra"}, "unexpected arguments"},
		{[]string{"dlq", "replay"}, "want the dead letter's sequence"},
		{[]string{"dlq", "replay", "0"}, "want the dead letter's sequence"},
		{[]string{"dlq", "replay", "twelve"}, "want the dead letter's sequence"},
		{[]string{"dlq", "replay", "12", "-all"}, "either a sequence or -all"},
		{[]string{"dlq", "replay", "12", "-stream", "BIGMARKET_EVENTS"}, "-stream goes with -all"},
		{[]string{"dlq", "replay", "12", "13"}, "unexpected arguments"},
	} {
		err := run(context.Background(), tc.args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error saying %q", tc.args, err, tc.want)
		}
	}
}
