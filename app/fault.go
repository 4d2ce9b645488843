package app

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Fault injection: pauses at named points of serve, where fault tests SIGKILL a process
// to check what survives. They are compiled in only with the faultinject build tag
// (fault_on.go; the e2e tests build their binary so); any other build refuses a fault
// setting (fault_off.go). A pause is set by BIGMARKET_FAULT_<POINT>=<duration> (or
// fault_<point> in the config file) and is never part of Config or its dump.
//
// To add a point: name it below with what it does, and where the process should stop
// call the hook cfg.faults.hook(point, log) returns (nil unless that point is set).

// faultPoint names a place where a fault test can pause the process.
type faultPoint string

const (
	// faultBeforePublish pauses every draw between the fix of its outcome and its
	// publish. Its name is the SQL draw's, whose pause was before the award transaction;
	// the fault tests and operators' scripts set it under that name.
	faultBeforePublish faultPoint = "delay_before_record"
	// faultAfterDistribute pauses the send_award consumer after a batch's effects are
	// committed and before its messages are acked.
	faultAfterDistribute faultPoint = "delay_after_distribute"
	// faultCreditConsumers holds back the start of the send_award and send_rebate
	// consumers, so that only the green channel can credit what they carry until then.
	faultCreditConsumers faultPoint = "delay_credit_consumers"
	// faultAfterDrawWrite pauses the draw writer after a batch's rows are committed
	// and before its messages are acked.
	faultAfterDrawWrite faultPoint = "delay_after_draw_write"
	// faultDrawWriter holds back the start of the draw writer, so that only the
	// hot state and the green channel reflect the draws answered until then.
	faultDrawWriter faultPoint = "delay_draw_writer"
)

// faultPoints says what each point's pause does, for the warning logged when it is set.
var faultPoints = map[faultPoint]string{
	faultBeforePublish:   "every draw pauses between the fix of its outcome and its publish",
	faultAfterDistribute: "the award consumer pauses between its commit and its acks",
	faultCreditConsumers: "the award and rebate consumers start late",
	faultAfterDrawWrite:  "the draw writer pauses between its commit and its acks",
	faultDrawWriter:      "the draw writer starts late",
}

// faultPrefix starts the config keys of the fault points.
const faultPrefix = "fault_"

// faultSettings are the fault_* keys the file and the environment set, as given.
type faultSettings map[string]string

// envName is the environment variable of a fault_* key.
func faultEnvName(key string) string { return "BIGMARKET_" + strings.ToUpper(key) }

// parseFaultSettings reads the durations of the points set, refusing unknown points.
func parseFaultSettings(raw faultSettings) (faultDelays, error) {
	delays := faultDelays{}
	for key, value := range raw {
		point := faultPoint(strings.TrimPrefix(key, faultPrefix))
		if _, ok := faultPoints[point]; !ok {
			known := make([]string, 0, len(faultPoints))
			for p := range faultPoints {
				known = append(known, faultEnvName(faultPrefix+string(p)))
			}
			slices.Sort(known)
			return nil, fmt.Errorf("%s: no such fault point; want one of %s", faultEnvName(key), strings.Join(known, ", "))
		}
		d, err := time.ParseDuration(strings.TrimSpace(value))
		if err != nil || d < 0 {
			return nil, fmt.Errorf("%s %q: want a duration such as 30s", faultEnvName(key), value)
		}
		if d > 0 {
			delays[point] = d
		}
	}
	return delays, nil
}

// faultDelays are the pauses set, by point.
type faultDelays map[faultPoint]time.Duration
