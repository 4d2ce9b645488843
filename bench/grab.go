package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/bigmarket/bigmarket/money"
	"github.com/bigmarket/bigmarket/reconcile"
	"github.com/bigmarket/bigmarket/redpacket"
	"github.com/bigmarket/bigmarket/sqlstore"
)

// ErrGrabFailed is returned by the grab bench when a check failed, so that the
// command exits non-zero.
var ErrGrabFailed = errors.New("grab bench: verification failed")

// GrabOptions describes one run of the grab bench.
type GrabOptions struct {
	Base       string // server base URL, e.g. http://127.0.0.1:8091
	AdminToken string // for sending the operator packets
	Packets    int
	Items      int         // per packet
	Amount     money.Cents // per packet
	Users      int
	Prefix     string // user ids are Prefix + "-" + index
	// Token, when set, makes the grabs go to redpacket/grab_by_token with the bearer
	// token it returns for the user (signed with the server's JWT secret), the body
	// naming no user: the endpoints a production server serves.
	Token func(userID string) string

	Concurrency int
	Duration    time.Duration
	Requests    int64
	Warmup      time.Duration
	Verify      bool
	// CreditWait bounds the wait, before the checks, for the consumer to credit every
	// granted grab.
	CreditWait time.Duration

	// Progress receives progress lines; nil is quiet.
	Progress io.Writer
}

// GrabReport is the JSON summary of a grab bench: the load test's own summary wrapped with
// the packets it grabbed from, what the answers granted, and the checks after it.
type GrabReport struct {
	Scenario string      `json:"scenario"`
	URL      string      `json:"url"`
	Packets  int         `json:"packets"`
	Items    int         `json:"items"`
	Amount   money.Cents `json:"amount"`
	Users    int         `json:"users"`
	Prefix   string      `json:"prefix"`
	// ByToken: the grabs went to grab_by_token with each user's token.
	ByToken bool `json:"byToken,omitempty"`

	Send SendReport `json:"send"`
	// Warmup is the unmeasured warm-up run, kept because its grabs took items too.
	Warmup *Summary `json:"warmup,omitempty"`
	// Summary is the measured run.
	Summary Summary `json:"summary"`

	// Grabs counts the "0000" answers of the whole run, warmup included, and Granted
	// their amounts; PerPacket splits both by packet. Empty counts the ERR_RP_001
	// answers, Repeats the 0003. UnknownOutcomes counts the grabs without an answer or
	// with a proxy's answer without an envelope, and those answered ERR_RP_004 (taken,
	// or not, but not yet durable): each may or may not end up with an item.
	Grabs           int64                   `json:"grabs"`
	Granted         money.Cents             `json:"granted"`
	PerPacket       []reconcile.PacketGrabs `json:"perPacket"`
	Empty           int64                   `json:"empty"`
	Repeats         int64                   `json:"repeats"`
	UnknownOutcomes int64                   `json:"unknownOutcomes"`

	// AnsweredPerSecond is the measured run's answered grabs per second, refusals
	// included. GrantedPerSecond is its granted grabs per second over GrantSeconds, from
	// its start to its last grant: the pace while the packets lasted.
	AnsweredPerSecond float64 `json:"answeredPerSecond"`
	GrantedPerSecond  float64 `json:"grantedPerSecond"`
	GrantSeconds      float64 `json:"grantSeconds"`

	Verification *GrabVerification `json:"verification,omitempty"`
}

// SendReport is how the operator packets were sent.
type SendReport struct {
	PacketIDs []string `json:"packetIds"`
	Seconds   float64  `json:"seconds"`
}

// GrabVerification is the check on the SQL databases after a run.
type GrabVerification struct {
	Pass    bool             `json:"pass"`
	Seconds float64          `json:"seconds"`
	Checks  reconcile.Checks `json:"checks"`
	// Grabbed and Credited count the run's packets' grabbed items and their credit orders
	// when the wait ended, CreditSeconds after the run.
	Grabbed       int64   `json:"grabbed"`
	Credited      int64   `json:"credited"`
	CreditSeconds float64 `json:"creditSeconds"`
	// Discrepancies are verify's red packet findings on the run's packets.
	Discrepancies []string `json:"discrepancies,omitempty"`
}

// RunGrab runs the grab bench against the server at o.Base, verifying (with o.Verify) on
// its databases db: the packets, warmup and measured run, then the verification. It
// prints the summary and the PASS/FAIL lines to stdout and returns ErrGrabFailed when a
// check failed. The report is usable (for the JSON file) whenever its Scenario is set,
// also with an error.
func RunGrab(ctx context.Context, o GrabOptions, db Stores, stdout io.Writer) (GrabReport, error) {
	if err := o.check(); err != nil {
		return GrabReport{}, err
	}
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	rep := GrabReport{URL: o.Base, Packets: o.Packets, Items: o.Items, Amount: o.Amount, Users: o.Users, Prefix: o.Prefix,
		ByToken: o.Token != nil}

	var v *GrabVerifier
	if o.Verify {
		var err error
		if v, err = NewGrabVerifier(db); err != nil {
			return GrabReport{}, err
		}
	}
	sent := time.Now()
	var err error
	if rep.Send, err = sendPackets(ctx, o); err != nil {
		return GrabReport{}, err
	}
	fmt.Fprintf(stdout, "sent %d packets of %d items and %s yuan in %.1fs\n", o.Packets, o.Items, o.Amount, rep.Send.Seconds)
	rep.Scenario = "grab"

	// One client for warmup and measured run, so that the measured run starts on warm
	// connections; the tally reads every answer on its way to the load generator.
	client, transport := scenarioClient(o.Concurrency)
	defer transport.CloseIdleConnections()
	tally := newGrabTally(transport, rep.Send.PacketIDs)
	client.Transport = tally
	bodies := grabBodies(o.Prefix, o.Users, rep.Send.PacketIDs)
	path := "/api/v1/redpacket/grab"
	var auth func(seq uint64) string
	if o.Token != nil {
		path = "/api/v1/redpacket/grab_by_token"
		bodies, auth = grabByToken(o.Prefix, o.Users, rep.Send.PacketIDs, o.Token)
	}
	opts := Options{
		URL: o.Base + path, Concurrency: o.Concurrency, Client: client,
		Duration: o.Duration, Requests: o.Requests, Progress: o.Progress,
	}
	// Warmup grabs took items, and the verification must count them.
	warm, sum, runErr := runWithCountedWarmup(ctx, opts, o.Warmup, bodies, auth, progress)
	rep.Warmup = warm
	rep.Summary = sum
	rep.tallyAnswers(tally)
	fmt.Fprintln(stdout, sum.String())
	fmt.Fprintf(stdout, "granted %d grabs of %d items in %d packets (%s of %s yuan); %d empty (ERR_RP_001), %d repeats (0003), %d unknown (no answer or ERR_RP_004)\n",
		rep.Grabs, o.Packets*o.Items, o.Packets, rep.Granted, o.Amount*money.Cents(o.Packets), rep.Empty, rep.Repeats, rep.UnknownOutcomes)
	fmt.Fprintf(stdout, "answered %.1f grabs/s; granted %.1f grabs/s over the %.2fs to the last grant\n",
		rep.AnsweredPerSecond, rep.GrantedPerSecond, rep.GrantSeconds)
	if runErr != nil {
		// An interrupted run aborted grabs in flight whose outcome nobody saw.
		return rep, runErr
	}
	if v == nil {
		return rep, nil
	}
	ver, err := v.Verify(ctx, o, rep, sent)
	if err != nil {
		return rep, err
	}
	rep.Verification = &ver
	for _, d := range ver.Discrepancies {
		fmt.Fprintln(stdout, d)
	}
	if !printChecks(stdout, ver.Checks, ver.Pass, ver.Seconds) {
		return rep, ErrGrabFailed
	}
	return rep, nil
}

func (o GrabOptions) check() error {
	var errs []error
	if o.Packets < 1 || o.Items < 1 || o.Users < 1 {
		errs = append(errs, errors.New("-packets, -items and -users must be at least 1"))
	}
	if o.Amount < money.Cents(o.Items) {
		errs = append(errs, fmt.Errorf("-amount %s cannot give %d items a cent each", o.Amount, o.Items))
	}
	if o.Concurrency < 1 {
		errs = append(errs, errors.New("-c must be at least 1"))
	}
	if o.CreditWait < 0 {
		errs = append(errs, errors.New("-credit-wait must not be negative"))
	}
	errs = append(errs, runChecks(o.Duration, o.Warmup, o.Requests, o.AdminToken, o.Prefix,
		o.Prefix+"-"+strconv.Itoa(max(o.Users-1, 0)))...)
	if len(errs) > 0 {
		return fmt.Errorf("bench grab: %w", errors.Join(errs...))
	}
	return nil
}

// tallyAnswers fills the report's counts and rates from the run's summaries and the
// answers the tally read.
func (rep *GrabReport) tallyAnswers(t *grabTally) {
	runs := []Summary{rep.Summary}
	if rep.Warmup != nil {
		runs = append(runs, *rep.Warmup)
	}
	for _, s := range runs {
		rep.Grabs += s.Codes["0000"]
		rep.Empty += s.Codes["ERR_RP_001"]
		rep.Repeats += s.Codes["0003"]
		rep.UnknownOutcomes += s.TransportErrors + s.Codes["ERR_RP_004"] + s.Unenveloped()
	}
	rep.PerPacket, rep.Granted = t.perPacket()
	s := rep.Summary
	if s.Duration > 0 {
		rep.AnsweredPerSecond = float64(s.Requests-s.TransportErrors) / s.Duration
	}
	if last := t.lastGrant.Load(); s.Codes["0000"] > 0 && last > s.Start.UnixNano() {
		rep.GrantSeconds = time.Duration(last - s.Start.UnixNano()).Seconds()
		rep.GrantedPerSecond = float64(s.Codes["0000"]) / rep.GrantSeconds
	}
}

// grabBodies returns the body of the n-th grab: user n mod users grabbing packet n mod
// len(packets), a pair not seen before until n reaches their least common multiple.
func grabBodies(prefix string, users int, packets []string) func(n uint64) []byte {
	// `{"userId":"<prefix>-` before the index, `","packetId":"<id>"}` after it.
	user, _ := json.Marshal(prefix + "-")
	head := append([]byte(`{"userId":`), user[:len(user)-1]...)
	tails := make([][]byte, len(packets))
	for i, id := range packets {
		p, _ := json.Marshal(id)
		tails[i] = append(append([]byte(`","packetId":`), p...), '}')
	}
	u, np := uint64(users), uint64(len(packets))
	return func(n uint64) []byte {
		i := n % np
		b := make([]byte, 0, len(head)+20+len(tails[i]))
		b = append(b, head...)
		b = strconv.AppendUint(b, n%u, 10)
		return append(b, tails[i]...)
	}
}

// grabByToken is grabBodies for grab_by_token: grab n's body names packet n mod
// len(packets) and no user, and its Authorization is the token of user n mod users,
// signed as the grab is sent (a grab bench has up to 100,000 users and far fewer grabs).
func grabByToken(prefix string, users int, packets []string, token func(userID string) string) (func(n uint64) []byte, func(n uint64) string) {
	bodies := make([][]byte, len(packets))
	for i, id := range packets {
		bodies[i], _ = json.Marshal(map[string]string{"packetId": id})
	}
	u, np := uint64(users), uint64(len(packets))
	return func(n uint64) []byte { return bodies[n%np] },
		func(n uint64) string { return "Bearer " + token(prefix+"-"+strconv.FormatUint(n%u, 10)) }
}

// sendPackets sends the run's operator packets, one after the other.
func sendPackets(ctx context.Context, o GrabOptions) (SendReport, error) {
	client := &http.Client{Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	body, err := json.Marshal(map[string]any{"totalAmount": o.Amount.String(), "count": o.Items, "mode": "random", "expireMinutes": 60})
	if err != nil {
		return SendReport{}, err
	}
	start := time.Now()
	var rep SendReport
	for range o.Packets {
		var data struct {
			PacketID string `json:"packetId"`
		}
		env, err := Call(ctx, client, http.MethodPost, o.Base+"/api/v1/admin/redpacket/send", o.AdminToken, body, &data)
		if err != nil {
			return rep, fmt.Errorf("send red packet: %w", err)
		}
		if env.Code != "0000" || data.PacketID == "" {
			return rep, fmt.Errorf("send red packet of %d items and %s yuan: %s %s", o.Items, o.Amount, env.Code, env.Info)
		}
		rep.PacketIDs = append(rep.PacketIDs, data.PacketID)
	}
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

// grabTally reads every grab's answer on its way to the load generator, which keeps only
// the envelope code, and adds up what the granted ones gave by packet. Only answers with
// "0000" in them are decoded, at most one per item.
type grabTally struct {
	next      http.RoundTripper
	packets   []string
	index     map[string]int
	grabs     []atomic.Int64
	cents     []atomic.Int64
	lastGrant atomic.Int64 // UnixNano of the last grant's answer
}

func newGrabTally(next http.RoundTripper, packets []string) *grabTally {
	t := &grabTally{next: next, packets: packets, index: map[string]int{},
		grabs: make([]atomic.Int64, len(packets)), cents: make([]atomic.Int64, len(packets))}
	for i, id := range packets {
		t.index[id] = i
	}
	return t
}

// RoundTrip implements http.RoundTripper: it reads the whole answer, which is small, and
// hands the load generator a copy.
func (t *grabTally) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(raw))
	if resp.StatusCode == http.StatusOK && bytes.Contains(raw, []byte(`"0000"`)) {
		t.observe(raw)
	}
	return resp, nil
}

func (t *grabTally) observe(raw []byte) {
	var env struct {
		Code string `json:"code"`
		Data struct {
			PacketID string      `json:"packetId"`
			Amount   money.Cents `json:"amount"`
		} `json:"data"`
	}
	if json.Unmarshal(raw, &env) != nil || env.Code != "0000" {
		return
	}
	t.lastGrant.Store(time.Now().UnixNano())
	i, ok := t.index[env.Data.PacketID]
	if !ok { // not one of the run's packets: the grants check counts it missing
		return
	}
	t.grabs[i].Add(1)
	t.cents[i].Add(int64(env.Data.Amount))
}

// perPacket returns the grants by packet and their total.
func (t *grabTally) perPacket() ([]reconcile.PacketGrabs, money.Cents) {
	out := make([]reconcile.PacketGrabs, len(t.packets))
	var total money.Cents
	for i, id := range t.packets {
		out[i] = reconcile.PacketGrabs{PacketID: id, Grabs: t.grabs[i].Load(), Amount: money.Cents(t.cents[i].Load())}
		total += out[i].Amount
	}
	return out, total
}

// GrabVerifier reads the server's user databases.
type GrabVerifier struct {
	db    Stores
	users *sqlstore.UserStore
}

// NewGrabVerifier returns the verifier of a grab run on db's user databases.
func NewGrabVerifier(db Stores) (*GrabVerifier, error) {
	if len(db.Users) == 0 {
		return nil, errors.New("bench grab: no databases to verify on")
	}
	return &GrabVerifier{db: db, users: sqlstore.NewUserStore(db.Users, db.Router)}, nil
}

// Verify waits until every grabbed item of the run's packets is credited (and at least
// the granted grabs are grabbed), at most o.CreditWait, then checks (a) the answers
// granted no packet beyond its items and total, (b) the items recorded match the
// answers, (c) every grabbed item is credited, (d) verify's red packet checks find
// nothing on the run's packets. sent is when the packets were sent.
func (v *GrabVerifier) Verify(ctx context.Context, o GrabOptions, rep GrabReport, sent time.Time) (GrabVerification, error) {
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	start := time.Now()
	var out GrabVerification

	run := reconcile.GrabRun{Packets: o.Packets, Items: o.Items, Amount: o.Amount, PerPacket: rep.PerPacket,
		Grabs: rep.Grabs, Granted: rep.Granted, Unknown: rep.UnknownOutcomes}
	out.Checks = append(out.Checks, reconcile.GrabAnswers(run)...)

	// The items and their credit, once the consumer caught up.
	fmt.Fprintf(progress, "waiting for the grabs to be credited\n")
	items, credited, err := v.waitCredited(ctx, rep.Send.PacketIDs, rep.PerPacket, rep.Grabs, o.CreditWait, progress)
	if err != nil {
		return out, err
	}
	out.Grabbed, out.Credited, out.CreditSeconds = int64(len(items)), credited, time.Since(start).Seconds()
	out.Checks = append(out.Checks, reconcile.GrabItems(run, items, credited, out.CreditSeconds)...)

	// verify's red packet checks on the run's packets: everything is expected settled now.
	only := map[string]bool{}
	for _, id := range rep.Send.PacketIDs {
		only[id] = true
	}
	// A minute back, in case the server's clock is behind this one.
	ledger := sqlstore.Ledger{Users: v.db.Users, Router: v.db.Router}
	rec, err := reconcile.VerifyRedPackets(ctx, ledger, reconcile.Window{Since: sent.Add(-time.Minute), Settled: time.Now()}, only)
	if err != nil {
		return out, err
	}
	for _, d := range rec.Discrepancies {
		out.Discrepancies = append(out.Discrepancies, d.String())
	}
	c := rec.Checked
	out.Checks = append(out.Checks, reconcile.GrabPackets(rec.Discrepancies, c.RedPackets, c.RedPacketItems, len(only))...)

	out.Pass = out.Checks.Pass()
	out.Seconds = time.Since(start).Seconds()
	return out, nil
}

// waitCredited polls the packets' grabbed items and their credit orders until every item
// is credited and each packet has at least the items its grabs were granted (perPacket;
// granted in all), or wait has passed: items are written behind the answers, and after a
// failover some come late. It returns the grabbed items and how many of them are credited.
func (v *GrabVerifier) waitCredited(ctx context.Context, packets []string, perPacket []reconcile.PacketGrabs, granted int64, wait time.Duration, progress io.Writer) ([]reconcile.Grabbed, int64, error) {
	want := map[string]int64{}
	for _, p := range perPacket {
		want[p.PacketID] = p.Grabs
	}
	deadline := time.Now().Add(wait)
	credited := map[string]bool{}
	lastReport := time.Now()
	for {
		var items []reconcile.Grabbed
		var pending []redpacket.Grab
		short := 0 // packets with fewer items than granted grabs
		for _, id := range packets {
			_, all, err := v.users.RedPacket(ctx, id)
			if err != nil {
				return nil, 0, err
			}
			before := len(items)
			for _, it := range all {
				if it.UserID == "" {
					continue
				}
				g := reconcile.Grabbed{PacketID: id, UserID: it.UserID, Amount: it.Amount}
				items = append(items, g)
				if !credited[g.BusinessNo()] {
					pending = append(pending, redpacket.Grab{PacketID: id, UserID: it.UserID})
				}
			}
			if int64(len(items)-before) < want[id] {
				short++
			}
		}
		found, err := v.users.CreditedGrabs(ctx, pending)
		if err != nil {
			return nil, 0, fmt.Errorf("grab credits: %w", err)
		}
		maps.Copy(credited, found)
		n := int64(0)
		for _, it := range items {
			if credited[it.BusinessNo()] {
				n++
			}
		}
		if (n == int64(len(items)) && n >= granted && short == 0) || !time.Now().Before(deadline) {
			return items, n, nil
		}
		if time.Since(lastReport) >= time.Second {
			fmt.Fprintf(progress, "%d of %d granted grabs grabbed, %d credited\n", len(items), granted, n)
			lastReport = time.Now()
		}
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, 0, ctx.Err()
		case <-t.C:
		}
	}
}
