//go:build faultinject

package app

import (
	"strings"
	"testing"
	"time"
)

// TestFaultSettingsInTagBuild: a faultinject build reads the pauses from the environment
// and the file, and refuses an unknown point or a bad duration, naming it.
func TestFaultSettingsInTagBuild(t *testing.T) {
	t.Parallel()
	cfg, err := LoadConfig("", []string{"BIGMARKET_FAULT_DELAY_BEFORE_RECORD=30s", "BIGMARKET_DATA_DIR=" + t.TempDir()})
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil || cfg.faults[faultBeforePublish] != 30*time.Second || len(cfg.faults) != 1 {
		t.Fatalf("faults %v err %v, want delay_before_record 30s", cfg.faults, err)
	}
	for env, want := range map[string]string{
		"BIGMARKET_FAULT_DELAY_BEFOR_RECORD=1s":    "no such fault point",
		"BIGMARKET_FAULT_DELAY_AFTER_DISTRIBUTE=x": "want a duration",
	} {
		cfg, err := LoadConfig("", []string{env, "BIGMARKET_DATA_DIR=" + t.TempDir()})
		if err == nil {
			err = cfg.Validate()
		}
		name, _, _ := strings.Cut(env, "=")
		if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want %q naming it", env, err, want)
		}
	}
}
