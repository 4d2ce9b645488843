//go:build !faultinject

package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
)

// loadFaults refuses any fault setting: this build has no hooks, and a fault test (or an
// operator) must not believe a pause is on.
func loadFaults(raw faultSettings) (faultDelays, error) {
	var errs []error
	for key := range raw {
		errs = append(errs, fmt.Errorf("%s is set, but this binary has no fault injection: it is compiled in only with the faultinject build tag (go build -tags faultinject), for tests", faultEnvName(key)))
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return nil, errors.Join(errs...)
}

// hook is never set in this build.
func (f faultDelays) hook(faultPoint, *slog.Logger) func(ctx context.Context) { return nil }
