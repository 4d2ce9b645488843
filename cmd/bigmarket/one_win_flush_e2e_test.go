package main

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bigmarket/bigmarket/internal/testenv"
)

// TestFlashOneWinAcrossRedisFlush: users win the stocked award of a
// one-win activity while the draw writer is held back (fault point delay_draw_writer),
// and Redis is flushed before their award records are written. Until the writer has
// applied their wins, the users' draws are answered 0009 (or 0006 once the breaker
// opens), never 0000; then ERR_BIZ_011, and each user holds one record. Rebuilding the
// one-win set from the records at once, as before, read "has not won": each of the five
// users won award 102 a second time once its stock was rebuilt (682 draws answered 0000
// after the flush).
func TestFlashOneWinAcrossRedisFlush(t *testing.T) {
	d := newDeployment(t, startPrivateRedis(t))
	_, base := d.start(t, "BIGMARKET_FAULT_DELAY_DRAW_WRITER=25s")
	s := d.stack(base)
	insertGateActivity(t, s, oneWinActivity, 5000, map[int]int{102: 1000})
	if r := settingsCall(t, s, `{"activityId":990002,"oneWin":true}`); r.Code != "0000" {
		t.Fatalf("one win on: %+v", r)
	}
	users := make([]string, 5)
	for i := range users {
		users[i] = testenv.Unique("owf")
	}
	rechargeAll(t, s, oneWinActivity, users)
	draw := func(u string) envelope {
		return call(t, "POST", base+"/api/v1/raffle/activity/draw", drawReq{u, oneWinActivity})
	}
	for _, u := range users {
		r := draw(u)
		res, err := dataOf[drawResult](r)
		if r.Code != "0000" || err != nil || res.AwardID != 102 {
			t.Fatalf("first draw of %s: %+v %v, want the stocked award 102", u, r, err)
		}
	}
	ctx := context.Background()
	if _, err := d.drawWriterInfo(t); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatalf("the draw writer already runs (%v): the wins may be written before the flush", err)
	}
	if err := d.redis.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	// The users keep drawing, concurrently, until each is refused as a winner.
	var mu sync.Mutex
	codes := map[string]int{}
	var wg sync.WaitGroup
	for _, u := range users {
		for range 3 {
			wg.Go(func() {
				deadline := time.Now().Add(90 * time.Second)
				for time.Now().Before(deadline) {
					r := draw(u)
					mu.Lock()
					codes[r.Code]++
					mu.Unlock()
					if r.Code == "ERR_BIZ_011" {
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
				t.Errorf("%s not refused as a winner within 90s", u)
			})
		}
	}
	wg.Wait()
	if codes["0000"] != 0 {
		t.Errorf("answers after the flush %v: a winner won again", codes)
	}
	t.Logf("answers after the flush: %v", codes)
	d.drainDraws(t)
	for _, u := range users {
		recs, err := d.users.AwardRecords(ctx, u, oneWinActivity)
		if err != nil || len(recs) != 1 || recs[0].AwardID != 102 {
			t.Errorf("user %s holds %+v (%v); want exactly the one stocked award", u, recs, err)
		}
	}
}
