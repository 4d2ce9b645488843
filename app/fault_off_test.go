//go:build !faultinject

package app

import (
	"strings"
	"testing"
)

// TestFaultRefusedWithoutTag: a binary built without the faultinject tag has no fault
// hooks, so it refuses a fault setting, naming it and the tag, rather than start as if
// the pause were on.
func TestFaultRefusedWithoutTag(t *testing.T) {
	t.Parallel()
	for _, env := range []string{"BIGMARKET_FAULT_DELAY_BEFORE_RECORD=30s", "BIGMARKET_FAULT_DELAY_AFTER_DISTRIBUTE=1m"} {
		cfg, err := LoadConfig("", []string{env, "BIGMARKET_DATA_DIR=" + t.TempDir()})
		if err == nil {
			err = cfg.Validate()
		}
		name, _, _ := strings.Cut(env, "=")
		if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "faultinject") {
			t.Errorf("%s: err %v, want a refusal naming it and the faultinject tag", env, err)
		}
	}
}
