package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// Raffle loads strategy/random_raffle of the server at base with strategyID, after its
// strategy_armory when armory is set; run gives the load (Concurrency, Duration, Requests,
// Warmup, Progress). The admin token, when not empty, goes with every request:
// random_raffle spends real stock, and production mode serves it to the operator only.
func Raffle(ctx context.Context, base string, strategyID int64, armory bool, adminToken string, run Options) (Summary, error) {
	if armory {
		url := fmt.Sprintf("%s/api/v1/raffle/strategy/strategy_armory?strategyId=%d", base, strategyID)
		if err := Armory(ctx, url, adminToken); err != nil {
			return Summary{}, err
		}
	}
	body := []byte(`{"strategyId":` + strconv.FormatInt(strategyID, 10) + `}`)
	run.URL, run.Body = base+"/api/v1/raffle/strategy/random_raffle", func(int, uint64) []byte { return body }
	if adminToken != "" {
		run.Header = http.Header{"Authorization": {"Bearer " + adminToken}}
	}
	return Run(ctx, run)
}

// Flood sends every activity/draw of the run as the one user in activityID, to measure
// what the front line costs when it refuses a flood; run gives the load as for Raffle.
func Flood(ctx context.Context, base, user string, activityID int64, run Options) (Summary, error) {
	body, err := json.Marshal(map[string]any{"userId": user, "activityId": activityID})
	if err != nil {
		return Summary{}, err
	}
	run.URL, run.Body = base+"/api/v1/raffle/activity/draw", func(int, uint64) []byte { return body }
	return Run(ctx, run)
}
