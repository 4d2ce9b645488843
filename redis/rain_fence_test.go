package redis

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/bigmarket/bigmarket/rain"
)

// TestRainFenceAfterFailover runs a rain session over a real master and replica. The
// replica is promoted (REPLICAOF NO ONE: a new replication id) before the master answers
// two more wins, so on it those SPOPs and their wins entries are undone together: the
// session's counts still add up (pool + issued = armed, one wins entry per issued), the
// copy looks whole, and the two prizes would be won again.
//
// Fenced, the promoted replica refuses the next grab, the prizes' addition, the end's move
// and the close (ErrFenced and rain.ErrUnavailable: the rebuild path), writing nothing; a
// load from the durable records replaces the whole stale copy and sets the fence to the
// new id; the pool is then emptied with every prize won once. Unfenced, the same sequence
// gives the two lost prizes again.
func TestRainFenceAfterFailover(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	master, replica := replicaPair(t)
	start := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	end := start.Add(10 * time.Minute)
	now := start.Add(time.Minute)
	prizes := rainPrizes(0, 6)

	type setup struct {
		id      int64
		fence   bool
		durable []rain.Win // wins answered by the master (and made durable)
	}
	var setups []*setup
	for i, fence := range []bool{true, false} {
		s := &setup{id: int64(7001 + i), fence: fence}
		onMaster := NewRain(master, "bmtest").Fence(fence)
		mustLoadRain(t, onMaster, rain.HotSession{ID: s.id, Start: start, End: end, Left: prizes}, true)
		for _, u := range []string{"u0", "u1"} {
			out := mustGrabRain(t, onMaster, s.id, u, now, 100, 5)
			if out.Status != rain.Won {
				t.Fatalf("grab of %s on the master: %+v", u, out)
			}
			mustAck(t, onMaster, out.Win)
			s.durable = append(s.durable, out.Win)
		}
		setups = append(setups, s)
	}
	oldID, newID := promote(t, master, replica)
	// The master answers two more wins of each session; the promoted replica never sees them.
	for _, s := range setups {
		onMaster := NewRain(master, "bmtest").Fence(s.fence)
		for _, u := range []string{"u2", "u3"} {
			out := mustGrabRain(t, onMaster, s.id, u, now, 100, 5)
			if out.Status != rain.Won {
				t.Fatalf("grab of %s on the master: %+v", u, out)
			}
			s.durable = append(s.durable, out.Win)
		}
	}

	t.Run("Fenced", func(t *testing.T) {
		s := setups[0]
		r := NewRain(replica, "bmtest").Fence(true)
		if st := mustState(t, r, s.id); st.Issued != 2 || st.Left != 4 {
			t.Fatalf("the promoted replica holds %+v, want the whole session with 2 issued (the test needs lost writes)", st)
		}
		for _, u := range []string{"u2", "u9"} {
			if out, err := r.Grab(ctx, s.id, u, now, 100, 5); !errors.Is(err, ErrFenced) || !errors.Is(err, rain.ErrUnavailable) {
				t.Fatalf("grab of %s on the promoted replica: %+v, %v; want ErrFenced and rain.ErrUnavailable", u, out, err)
			}
		}
		if err := r.AddPrizes(ctx, s.id, rainPrizes(100, 1)); !errors.Is(err, ErrFenced) || !errors.Is(err, rain.ErrUnavailable) {
			t.Fatalf("add prizes on the promoted replica: %v; want ErrFenced and rain.ErrUnavailable", err)
		}
		if err := r.SetEnd(ctx, s.id, end.Add(time.Minute)); !errors.Is(err, ErrFenced) || !errors.Is(err, rain.ErrUnavailable) {
			t.Fatalf("set end on the promoted replica: %v; want ErrFenced and rain.ErrUnavailable", err)
		}
		if _, err := r.Close(ctx, s.id); !errors.Is(err, ErrFenced) || !errors.Is(err, rain.ErrUnavailable) {
			t.Fatalf("close on the promoted replica: %v; want ErrFenced and rain.ErrUnavailable", err)
		}
		// Nothing was written: still open, 2 issued, 4 left, the old fence.
		if st := mustState(t, r, s.id); st.Issued != 2 || st.Left != 4 {
			t.Fatalf("state after fenced calls: %+v", st)
		}
		meta, err := replica.HMGet(ctx, r.Keys(s.id)[0], "state", "end_ms", "armed").Result()
		if err != nil || meta[0] != "open" || meta[1] != strconv.FormatInt(end.UnixMilli(), 10) || meta[2] != "6" {
			t.Fatalf("meta after fenced calls: %v, %v", meta, err)
		}
		if f, err := replica.Get(ctx, r.FenceKey(s.id)).Result(); err != nil || f != oldID {
			t.Fatalf("fence after fenced calls: %q, %v; want the old id %s", f, err, oldID)
		}
		// The rebuild: the durable wins (all four) replace the whole stale copy, and the
		// fence takes the new id.
		mustLoadRain(t, r, rain.HotSession{ID: s.id, Start: start, End: end, Left: remainingPrizes(prizes, s.durable), Wins: s.durable}, true)
		if f, err := replica.Get(ctx, r.FenceKey(s.id)).Result(); err != nil || f != newID {
			t.Fatalf("fence after the rebuild: %q, %v; want the new id %s", f, err, newID)
		}
		// A second node's load finds the copy whole and the fence current: kept.
		mustLoadRain(t, r, rain.HotSession{ID: s.id, Start: start, End: end, Left: prizes}, false)
		if st := mustState(t, r, s.id); st.Issued != 4 || st.Left != 2 {
			t.Fatalf("state after the rebuild: %+v, want 4 issued and 2 left", st)
		}
		// The pool runs out with every prize won once.
		won := append([]rain.Win(nil), s.durable...)
		for i := 0; ; i++ {
			out := mustGrabRain(t, r, s.id, "v"+strconv.Itoa(i), now, 100, 5)
			if out.Status == rain.Empty {
				break
			}
			if out.Status != rain.Won {
				t.Fatalf("grab after the rebuild: %+v", out)
			}
			won = append(won, out.Win)
		}
		assertPrizes(t, winPrizes(won), prizes)
		if err := r.SetEnd(ctx, s.id, end.Add(time.Minute)); err != nil {
			t.Fatalf("set end after the rebuild: %v", err)
		}
		if left := mustClose(t, r, s.id); len(left) != 0 {
			t.Fatalf("close after the rebuild: %v left, want none", left)
		}
	})

	t.Run("UnfencedWinsTwice", func(t *testing.T) {
		s := setups[1]
		r := NewRain(replica, "bmtest").Fence(false)
		// No rebuild is asked for: the session is whole. Grabs pop the prizes the master
		// already gave u2 and u3.
		taken := map[int]string{}
		for _, w := range s.durable {
			taken[w.Prize.Index] = w.UserID
		}
		var twice []string
		for i := 0; ; i++ {
			u := "v" + strconv.Itoa(i)
			out := mustGrabRain(t, r, s.id, u, now, 100, 5)
			if out.Status == rain.Empty {
				break
			}
			if other, ok := taken[out.Win.Prize.Index]; ok {
				twice = append(twice, u+" won the prize of "+other)
			}
		}
		if len(twice) != 2 {
			t.Fatalf("unfenced grabs after the failover won %v twice; want both lost prizes won again", twice)
		}
		t.Logf("without the fence: %v", twice)
	})
}
