package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/reconcile"
)

// Outcomes of one draw of a run of fixed draws per user, beside the award id (> 0) of a
// draw answered 0000.
const (
	drawRefused int32 = 0  // any other answer: nothing taken
	drawUnknown int32 = -1 // 0009 or no answer: outcome unknown
)

// drawPerUser sends every user o.DrawsPerUser draws, o.Concurrency in flight: the draws
// go out in rounds, each round one draw of every user, and draw k of user i goes to
// o.Bases[(i+k) mod len], so that a user's consecutive draws alternate between the
// servers and every user's hot quota is used by each of them. Every draw is sent once,
// whatever it is answered: a 0009 is left to the server's pending-draw sweep. auths, when
// not nil, are the users' Authorization headers (o.Token). It returns the summary of all
// the draws (none is a warmup) and what each user was answered.
func drawPerUser(ctx context.Context, o DrawOptions, client *http.Client, users []string, bodies [][]byte, auths []string) (Summary, []reconcile.UserDraws, error) {
	c := *client
	c.Timeout = DefaultTimeout
	nUsers := uint64(len(users))
	total := nUsers * uint64(o.DrawsPerUser)
	outcomes := make([]int32, total) // by sequence: round × users + user
	urls := make([]string, len(o.Bases))
	for i, b := range o.Bases {
		urls[i] = b + o.drawPath()
	}

	var next atomic.Uint64
	workers := make([]*worker, o.Concurrency)
	for i := range workers {
		workers[i] = &worker{id: i, codes: make(map[string]*int64)}
	}
	start := time.Now()
	stop := make(chan struct{})
	progressDone := make(chan struct{})
	if o.Progress != nil {
		go func() {
			defer close(progressDone)
			report(o.Progress, time.Second, start, workers, stop)
		}()
	} else {
		close(progressDone)
	}
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() {
			buf := make([]byte, readBufSize)
			for ctx.Err() == nil {
				seq := next.Add(1) - 1
				if seq >= total {
					return
				}
				user, round := seq%nUsers, seq/nUsers
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, urls[(user+round)%uint64(len(urls))], bytes.NewReader(bodies[user]))
				if err != nil {
					panic(err) // the URLs were checked before the run
				}
				req.Header.Set("Content-Type", "application/json")
				if auths != nil {
					req.Header.Set("Authorization", auths[user])
				}
				sent := time.Now()
				status, body, err := send(&c, req, buf)
				elapsed := time.Since(sent)
				if err != nil && ctx.Err() != nil {
					return // aborted by the caller: not an outcome of the server
				}
				code := envelopeCode(body)
				if err != nil {
					code = nil
				}
				w.record(elapsed, status, code, err)
				outcomes[seq] = drawOutcome(code, body, err)
			}
		})
	}
	wg.Wait()
	end := time.Now()
	close(stop)
	<-progressDone

	sum := summarize(Options{URL: strings.Join(urls, ","), Method: http.MethodPost, Concurrency: o.Concurrency}, workers, start, end)
	if err := ctx.Err(); err != nil {
		return sum, nil, fmt.Errorf("run interrupted: %w", err)
	}
	answers := make([]reconcile.UserDraws, len(users))
	for i, u := range users {
		answers[i].UserID = u
	}
	for seq, out := range outcomes {
		a := &answers[uint64(seq)%nUsers]
		switch {
		case out > 0:
			a.Answered = append(a.Answered, int(out))
		case out == drawUnknown:
			a.Unknown++
		}
	}
	return sum, answers, nil
}

// drawOutcome classifies a draw's answer: the award of a 0000 (one whose award cannot be
// read counts as unknown, and fails the checks that need it), drawUnknown for a 0009, no
// answer or one without an envelope (a proxy's 502 or 504), drawRefused for the rest.
func drawOutcome(code, body []byte, err error) int32 {
	switch {
	case err != nil || code == nil || string(code) == "0009":
		return drawUnknown
	case string(code) != successCode:
		return drawRefused
	}
	var env struct {
		Data struct {
			AwardID int32 `json:"awardId"`
		} `json:"data"`
	}
	if json.Unmarshal(body, &env) != nil || env.Data.AwardID <= 0 {
		return drawUnknown
	}
	return env.Data.AwardID
}

// userDraws reads each user's award records and its SQL quota for day and month into
// answers, verifyWorkers users in flight.
func (v *DrawVerifier) userDraws(ctx context.Context, answers []reconcile.UserDraws, day, month string) error {
	return eachIndex(ctx, len(answers), func(ctx context.Context, i int) error {
		a := &answers[i]
		recs, err := v.users.AwardRecords(ctx, a.UserID, v.activityID)
		if err == nil {
			a.Quota, err = v.users.Quota(ctx, activity.QuotaKey{UserID: a.UserID, ActivityID: v.activityID, Day: day, Month: month})
		}
		if err != nil {
			return err
		}
		a.Records = a.Records[:0]
		for _, r := range recs {
			a.Records = append(a.Records, r.AwardID)
		}
		return nil
	})
}
