package httpapi

import (
	"context"
	"math"
	"math/bits"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// statsWindow is how many whole seconds admin/stats shows; statsSlots, a power of two
// above it, is the ring they are counted in: the 60 shown, the second being filled and
// spare slots that no reader looks at while they are reused.
const (
	statsWindow = 60
	statsSlots  = 64
)

// statKind is what a route counts as besides a request.
type statKind uint8

const (
	kindRequest   statKind = iota // any other API request
	kindDraw                      // activity/draw, its _by_token and signed twins, random_raffle
	kindGrab                      // a red packet grab
	kindRainTap                   // a rain tap
	kindUncounted                 // admin/stats itself: the consoles' polling is not traffic
)

// statKindOf classifies a route pattern once, when it is registered.
func statKindOf(pattern string) statKind {
	_, path, _ := strings.Cut(pattern, " ")
	path = strings.TrimSuffix(path, "_by_token")
	switch path {
	case "/api/v1/raffle/activity/draw", "/api/v1/raffle/activity/draw/{signature}", "/api/v1/raffle/strategy/random_raffle":
		return kindDraw
	case "/api/v1/redpacket/grab":
		return kindGrab
	case "/api/v1/rain/grab":
		return kindRainTap
	case adminPrefix + "stats":
		return kindUncounted
	}
	return kindRequest
}

// statCodeSlots bounds the codes counted one by one: "other" and up to statCodeSlots-1
// codes of statCodes (there are 31).
const statCodeSlots = 48

// statCodes are the envelope codes counted one by one, sorted; any other code is counted
// under "other". codeSlot maps a code to its counter: a map read, without allocation.
var (
	statCodes = func() []Code {
		codes := make([]Code, 0, len(infos))
		for c := range infos {
			codes = append(codes, c)
		}
		slices.Sort(codes)
		return codes
	}()
	codeSlot = func() map[Code]int {
		m := make(map[Code]int, len(statCodes))
		for i, c := range statCodes {
			if i+1 < statCodeSlots {
				m[c] = i + 1 // 0 is "other"
			}
		}
		return m
	}()
)

// otherCode names the codes outside statCodes in admin/stats.
const otherCode = "other"

// The latency histogram is log-linear in microseconds: 16 one-microsecond buckets, then
// 16 buckets per doubling up to 2^31 µs (about 36 minutes; anything longer is counted in
// the last bucket). A value is reported as its bucket's middle, within 1/32 (3%) of the
// truth.
const (
	latencySub     = 16
	latencyMaxExp  = 30
	latencyBuckets = latencySub + (latencyMaxExp-3)*latencySub
)

// latencyBucket returns the bucket of d.
func latencyBucket(d time.Duration) int {
	v := uint64(max(d, 0) / time.Microsecond)
	if v < latencySub {
		return int(v)
	}
	e := bits.Len64(v) - 1 // 2^e <= v < 2^(e+1), e >= 4
	if e > latencyMaxExp {
		return latencyBuckets - 1
	}
	return latencySub + (e-4)*latencySub + int((v>>(e-4))&(latencySub-1))
}

// latencyMiddle returns the middle of bucket b in milliseconds.
func latencyMiddle(b int) float64 {
	if b < latencySub {
		return (float64(b) + 0.5) / 1000
	}
	e, sub := 4+(b-latencySub)/latencySub, (b-latencySub)%latencySub
	width := float64(uint64(1) << (e - 4))
	low := float64(latencySub+sub) * width
	return (low + width/2) / 1000
}

// statSlot counts the answers of one wall-clock second.
type statSlot struct {
	// sec is the Unix second counted here; its negation while the first answer of that
	// second clears the slot.
	sec                              atomic.Int64
	requests, draws, grabs, rainTaps atomic.Int64
	codes                            [statCodeSlots]atomic.Int64
	latency                          [latencyBuckets]atomic.Uint32
}

// liveStats counts this node's API answers per wall-clock second, in a ring of slots
// reused every statsSlots seconds. Recording an answer is a few atomic adds into its
// second's slot, without a lock or an allocation; only the first answer of a second
// clears the slot the second reuses (a few microseconds, during which the answers of
// that same second wait for it).
type liveStats struct {
	slots [statsSlots]statSlot
}

// record counts an answer with code, finished at now after d, of a route of kind.
func (l *liveStats) record(kind statKind, code Code, now time.Time, d time.Duration) {
	if kind == kindUncounted {
		return
	}
	sec := now.Unix()
	sl := &l.slots[sec&(statsSlots-1)]
	if !sl.claim(sec) {
		return
	}
	sl.requests.Add(1)
	switch kind {
	case kindDraw:
		sl.draws.Add(1)
	case kindGrab:
		sl.grabs.Add(1)
	case kindRainTap:
		sl.rainTaps.Add(1)
	}
	sl.codes[codeSlot[code]].Add(1)
	sl.latency[latencyBucket(d)].Add(1)
}

// claim makes the slot count second sec, clearing what an older second left in it; false
// when the slot already counts a later second (an answer recorded more than a ring's
// length late: dropped).
func (sl *statSlot) claim(sec int64) bool {
	for {
		cur := sl.sec.Load()
		at := cur
		if cur < 0 {
			at = -cur
		}
		switch {
		case at > sec:
			return false
		case cur == sec:
			return true
		case cur < 0:
			runtime.Gosched() // another answer is clearing the slot
		case sl.sec.CompareAndSwap(cur, -sec):
			sl.requests.Store(0)
			sl.draws.Store(0)
			sl.grabs.Store(0)
			sl.rainTaps.Store(0)
			for i := range sl.codes {
				sl.codes[i].Store(0)
			}
			for i := range sl.latency {
				sl.latency[i].Store(0)
			}
			sl.sec.Store(sec)
			return true
		}
	}
}

// secondView is one second of admin/stats.
type secondView struct {
	T        int64   `json:"t"` // the second's start, Unix ms
	Draws    int64   `json:"draws"`
	Grabs    int64   `json:"grabs"`
	RainTaps int64   `json:"rainTaps"`
	Requests int64   `json:"requests"`
	P50Ms    float64 `json:"p50Ms"`
	P99Ms    float64 `json:"p99Ms"`
}

// window returns the statsWindow whole seconds before now's, oldest first (zeros for a
// second without answers), and the answers of those seconds by code.
func (l *liveStats) window(now time.Time) ([]secondView, map[string]int64) {
	seconds := make([]secondView, statsWindow)
	var codes [statCodeSlots]int64
	var hist [latencyBuckets]int64
	last := now.Unix() - 1
	for i := range seconds {
		sec := last - statsWindow + 1 + int64(i)
		v := &seconds[i]
		v.T = sec * 1000
		sl := &l.slots[sec&(statsSlots-1)]
		if sl.sec.Load() != sec {
			continue
		}
		v.Requests, v.Draws, v.Grabs, v.RainTaps = sl.requests.Load(), sl.draws.Load(), sl.grabs.Load(), sl.rainTaps.Load()
		for j := range sl.codes {
			codes[j] += sl.codes[j].Load()
		}
		var n int64
		for j := range sl.latency {
			hist[j] = int64(sl.latency[j].Load())
			n += hist[j]
		}
		v.P50Ms, v.P99Ms = quantile(hist[:], n, 0.50), quantile(hist[:], n, 0.99)
	}
	byCode := map[string]int64{}
	for j, n := range codes {
		if n == 0 {
			continue
		}
		if j == 0 {
			byCode[otherCode] = n
		} else {
			byCode[string(statCodes[j-1])] = n
		}
	}
	return seconds, byCode
}

// quantile returns the q-quantile of the n values counted in hist, in milliseconds
// rounded to the microsecond; 0 when there are none.
func quantile(hist []int64, n int64, q float64) float64 {
	if n == 0 {
		return 0
	}
	rank := max(int64(math.Ceil(q*float64(n))), 1)
	var seen int64
	for b, c := range hist {
		seen += c
		if seen >= rank {
			return math.Round(latencyMiddle(b)*1000) / 1000
		}
	}
	return math.Round(latencyMiddle(len(hist)-1)*1000) / 1000
}

// Gauges are the numbers admin/stats reads from the backends rather than counts: stock
// left, backlogs, dead letters. A nil pointer is a number its source could not give
// (unreachable, or not part of this deployment); it is shown as null.
type Gauges struct {
	AwardStock []AwardStockLeft
	SKUStock   []SKUStockLeft
	// Outbox is the outbox tasks committed and not yet published; Writer the draw events
	// the flash draw writer has not applied; Consumer the messages the event consumers
	// have not handled yet (pending plus delivered and not acked).
	Outbox, Writer, Consumer *int64
	DeadLetters              *int64
}

// AwardStockLeft is an award's stock: its count and the units Redis can still grant
// (null when its counter is not in Redis: not armed, or lost and being rebuilt).
type AwardStockLeft struct {
	StrategyID int64  `json:"strategyId"`
	AwardID    int    `json:"awardId"`
	AwardTitle string `json:"awardTitle"`
	Total      int64  `json:"total"`
	Left       *int64 `json:"left"`
}

// SKUStockLeft is a SKU's stock: its stock_count and the units Redis can still sell
// (null when its counter is not in Redis).
type SKUStockLeft struct {
	SKU        int64  `json:"sku"`
	ActivityID int64  `json:"activityId"`
	Total      int64  `json:"total"`
	Left       *int64 `json:"left"`
}

// gaugeReader reads the node's gauges; admin/stats caches what it returns.
type gaugeReader interface {
	Gauges(ctx context.Context) Gauges
}

// breakerStater tells the state of the draw's circuit breaker: "closed", "open" or
// "half-open". The guard is one.
type breakerStater interface {
	BreakerState() string
}

// gaugeTTL is how long admin/stats reuses the gauges it read, so that the consoles
// polling a node once a second cost it one read a second between them.
const gaugeTTL = time.Second

// gaugeTimeout bounds one read of the gauges.
const gaugeTimeout = 2 * time.Second

// gaugeCache holds the gauges last read. A caller that finds them stale reads them while
// holding mu, so that concurrent callers wait for that read instead of starting theirs.
type gaugeCache struct {
	mu  sync.Mutex
	at  time.Time
	val Gauges
}

func (c *gaugeCache) get(ctx context.Context, src gaugeReader, now func() time.Time) Gauges {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && now().Sub(c.at) < gaugeTTL {
		return c.val
	}
	// Not cut short by the caller that happens to read: the others wait for the result.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), gaugeTimeout)
	defer cancel()
	c.val, c.at = src.Gauges(ctx), now()
	return c.val
}

// backlogsView is the backlogs of admin/stats.
type backlogsView struct {
	Outbox   *int64 `json:"outbox"`
	Writer   *int64 `json:"writer"`
	Consumer *int64 `json:"consumer"`
}

// statsView is the data of admin/stats.
type statsView struct {
	Node        string           `json:"node"`
	ServerTime  int64            `json:"serverTime"`
	Seconds     []secondView     `json:"seconds"`
	Codes       map[string]int64 `json:"codes"`
	AwardStock  []AwardStockLeft `json:"awardStock"`
	SKUStock    []SKUStockLeft   `json:"skuStock"`
	Backlogs    backlogsView     `json:"backlogs"`
	DeadLetters *int64           `json:"deadLetters"`
	Breaker     *string          `json:"breaker"`
	Degrade     string           `json:"degrade"`
}

// adminStats answers GET /api/v1/admin/stats with the live numbers of the operator
// console. They are this node's, the node that answers: its answers of the last 60
// whole seconds (draws, grabs, rain taps, requests, p50/p99 latency, codes), and the
// gauges as this node reads them (award and SKU stock left in Redis, the outbox, draw
// writer and consumer backlogs, dead letters; read at most once a second however many
// consoles poll), its breaker and the degrade switch in force here. The polling of
// admin/stats itself is not counted.
func (s *Server) adminStats(r *http.Request) (any, error) {
	now := time.Now()
	v := statsView{Node: s.opts.NodeID, ServerTime: now.UnixMilli(), Degrade: "close",
		AwardStock: []AwardStockLeft{}, SKUStock: []SKUStockLeft{}}
	v.Seconds, v.Codes = s.live.window(now)
	if s.opts.Gauges != nil {
		clock := time.Now
		if s.opts.Now != nil {
			clock = s.opts.Now
		}
		g := s.gauges.get(r.Context(), s.opts.Gauges, clock)
		if g.AwardStock != nil {
			v.AwardStock = g.AwardStock
		}
		if g.SKUStock != nil {
			v.SKUStock = g.SKUStock
		}
		v.Backlogs = backlogsView{Outbox: g.Outbox, Writer: g.Writer, Consumer: g.Consumer}
		v.DeadLetters = g.DeadLetters
	}
	if s.opts.Guard != nil {
		if s.opts.Guard.Settings().Degrade {
			v.Degrade = "open"
		}
		if b, ok := s.opts.Guard.(breakerStater); ok {
			state := b.BreakerState()
			v.Breaker = &state
		}
	}
	return v, nil
}
