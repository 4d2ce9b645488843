package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/bench"
	"github.com/bigmarket/bigmarket/money"
	"github.com/bigmarket/bigmarket/reconcile"
	"github.com/bigmarket/bigmarket/redpacket"
	"github.com/bigmarket/bigmarket/sqlstore"
)

// errGrabVerifyFailed is returned by the grab bench when a check failed, so that the
// command exits non-zero.
var errGrabVerifyFailed = errors.New("grab bench: verification failed")

// grabOptions describes one run of the grab bench.
type grabOptions struct {
	Base       string // server base URL, e.g. http://127.0.0.1:8091
	AdminToken string // for sending the operator packets
	Packets    int
	Items      int         // per packet
	Amount     money.Cents // per packet
	Users      int
	Prefix     string // user ids are Prefix + "-" + index

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

// grabReport is the JSON summary of a grab bench: the load test's own summary wrapped with
// the packets it grabbed from, what the answers granted, and the checks after it.
type grabReport struct {
	Scenario string      `json:"scenario"`
	URL      string      `json:"url"`
	Packets  int         `json:"packets"`
	Items    int         `json:"items"`
	Amount   money.Cents `json:"amount"`
	Users    int         `json:"users"`
	Prefix   string      `json:"prefix"`

	Send sendReport `json:"send"`
	// Warmup is the unmeasured warm-up run, kept because its grabs took items too.
	Warmup *bench.Summary `json:"warmup,omitempty"`
	// Summary is the measured run.
	Summary bench.Summary `json:"summary"`

	// Grabs counts the "0000" answers of the whole run, warmup included, and Granted
	// their amounts; PerPacket splits both by packet. Empty counts the ERR_RP_001
	// answers, Repeats the 0003. UnknownOutcomes counts the grabs without an answer and
	// those answered ERR_RP_004 (taken, or not, but not yet durable): each may or may not
	// end up with an item.
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

	Verification *grabVerification `json:"verification,omitempty"`
}

// sendReport is how the operator packets were sent.
type sendReport struct {
	PacketIDs []string `json:"packetIds"`
	Seconds   float64  `json:"seconds"`
}

// grabVerification is the check on the SQL databases after a run.
type grabVerification struct {
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

// benchGrabCmd is "bigmarket bench grab": it loads the config like serve does, so that it
// can verify on the same SQL databases the server writes.
func benchGrabCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench grab", flag.ContinueOnError)
	fs.SetOutput(stderr)
	load := commonFlags(fs)
	target := fs.String("url", "", "base URL of the server under test (default: http:// and the config's addr)")
	concurrency := fs.Int("c", 64, "concurrent grabs in flight")
	duration := fs.Duration("d", 10*time.Second, "how long to measure")
	requests := fs.Int64("n", 0, "stop after this many measured grabs (0: no limit)")
	warmup := fs.Duration("warmup", 0, "grabs sent before measuring (verified, not measured; they take items too)")
	out := fs.String("out", "", "write the JSON summary to this file")
	quiet := fs.Bool("q", false, "no progress lines")
	adminToken := fs.String("admin-token", "", "operator token for sending the packets (default: BIGMARKET_ADMIN_TOKEN of the config)")
	packets := fs.Int("packets", 10, "operator packets to send before grabbing")
	items := fs.Int("items", 1000, "items per packet")
	amount := fs.String("amount", "1000.00", "total yuan per packet")
	users := fs.Int("users", 100000, "distinct grabbers")
	prefix := fs.String("prefix", "", "user id prefix (default: random, so that runs do not collide)")
	verify := fs.Bool("verify", true, "wait for every grab to be credited, then check the red packets on the SQL databases")
	creditWait := fs.Duration("credit-wait", 2*time.Minute, "how long -verify waits for the grabs to be credited")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: bigmarket bench grab [flags]

Sends -packets operator red packets of -items items each, then grabs at -c concurrency for
-d (or -n grabs): the n-th grab is user n mod -users grabbing packet n mod -packets, so
that most grabs are a user's first in that packet. Once the packets are empty the rest
answer ERR_RP_001; the summary gives the rate of all answers and of the granted grabs.
With -verify it waits for the consumer to credit every granted grab, then checks on the
server's SQL databases (opened from the same config as serve: -config, BIGMARKET_*) that
the grabs match the answers and verify's red packet checks find nothing. Exits non-zero
when a check fails.

`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench grab: unexpected argument %q", fs.Arg(0))
	}
	total, err := money.Parse(*amount)
	if err != nil {
		return fmt.Errorf("bench grab: -amount: %w", err)
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	o := grabOptions{
		Base: strings.TrimRight(*target, "/"), AdminToken: *adminToken, Packets: *packets, Items: *items, Amount: total,
		Users: *users, Prefix: *prefix, Concurrency: *concurrency, Duration: *duration, Requests: *requests,
		Warmup: *warmup, Verify: *verify, CreditWait: *creditWait,
	}
	if err := benchTarget(cfg, "grab", &o.Base, &o.AdminToken, &o.Prefix, "g"); err != nil {
		return err
	}
	if !*quiet {
		o.Progress = stderr
	}
	rep, err := runGrabBench(ctx, cfg, o, stdout)
	if *out != "" && rep.Scenario != "" {
		if werr := writeJSONReport(*out, rep); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}

// writeJSONReport writes a bench report as indented JSON.
func writeJSONReport(path string, rep any) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	enc := json.NewEncoder(f)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		f.Close()
		return fmt.Errorf("write summary: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	return nil
}

// runGrabBench runs the grab bench against the server at o.Base whose databases cfg names:
// the packets, warmup and measured run, then the verification. It prints the summary and
// the PASS/FAIL lines to stdout and returns errGrabVerifyFailed when a check failed. The
// report is usable (for the JSON file) whenever its Scenario is set, also with an error.
func runGrabBench(ctx context.Context, cfg Config, o grabOptions, stdout io.Writer) (grabReport, error) {
	if err := o.check(); err != nil {
		return grabReport{}, err
	}
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	rep := grabReport{URL: o.Base, Packets: o.Packets, Items: o.Items, Amount: o.Amount, Users: o.Users, Prefix: o.Prefix}

	var v *grabVerifier
	if o.Verify {
		var err error
		if v, err = openGrabVerifier(ctx, cfg); err != nil {
			return grabReport{}, err
		}
		defer v.close()
	}
	sent := time.Now()
	var err error
	if rep.Send, err = sendPackets(ctx, o); err != nil {
		return grabReport{}, err
	}
	fmt.Fprintf(stdout, "sent %d packets of %d items and %s yuan in %.1fs\n", o.Packets, o.Items, o.Amount, rep.Send.Seconds)
	rep.Scenario = "grab"

	// One client for warmup and measured run, so that the measured run starts on warm
	// connections; the tally reads every answer on its way to the load generator.
	client, transport := drawClient(o.Concurrency)
	defer transport.CloseIdleConnections()
	tally := newGrabTally(transport, rep.Send.PacketIDs)
	client.Transport = tally
	bodies := grabBodies(o.Prefix, o.Users, rep.Send.PacketIDs)
	opts := bench.Options{
		URL: o.Base + "/api/v1/redpacket/grab", Concurrency: o.Concurrency, Client: client,
		Duration: o.Duration, Requests: o.Requests, Progress: o.Progress,
	}
	// Warmup grabs took items, and the verification must count them.
	warm, sum, runErr := runWithCountedWarmup(ctx, opts, o.Warmup, bodies, progress)
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
	ver, err := v.verify(ctx, o, rep, sent)
	if err != nil {
		return rep, err
	}
	rep.Verification = &ver
	for _, d := range ver.Discrepancies {
		fmt.Fprintln(stdout, d)
	}
	if !printChecks(stdout, ver.Checks, ver.Pass, ver.Seconds) {
		return rep, errGrabVerifyFailed
	}
	return rep, nil
}

func (o grabOptions) check() error {
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
	if o.Duration < 0 || o.Warmup < 0 || o.Requests < 0 || o.CreditWait < 0 {
		errs = append(errs, errors.New("-d, -warmup, -n and -credit-wait must not be negative"))
	}
	if o.Duration == 0 && o.Requests == 0 {
		errs = append(errs, errors.New("set -d or -n: the run needs an end"))
	}
	if o.AdminToken == "" {
		errs = append(errs, errors.New("no admin token"))
	}
	if last := o.Prefix + "-" + strconv.Itoa(max(o.Users-1, 0)); o.Prefix == "" || activity.CheckUserID(last) != nil {
		errs = append(errs, fmt.Errorf("user ids such as %q do not fit the user tables (at most 32 bytes)", last))
	}
	if len(errs) > 0 {
		return fmt.Errorf("bench grab: %w", errors.Join(errs...))
	}
	return nil
}

// tallyAnswers fills the report's counts and rates from the run's summaries and the
// answers the tally read.
func (rep *grabReport) tallyAnswers(t *grabTally) {
	runs := []bench.Summary{rep.Summary}
	if rep.Warmup != nil {
		runs = append(runs, *rep.Warmup)
	}
	for _, s := range runs {
		rep.Grabs += s.Codes["0000"]
		rep.Empty += s.Codes["ERR_RP_001"]
		rep.Repeats += s.Codes["0003"]
		rep.UnknownOutcomes += s.TransportErrors + s.Codes["ERR_RP_004"]
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

// sendPackets sends the run's operator packets, one after the other.
func sendPackets(ctx context.Context, o grabOptions) (sendReport, error) {
	client := &http.Client{Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	body, err := json.Marshal(map[string]any{"totalAmount": o.Amount.String(), "count": o.Items, "mode": "random", "expireMinutes": 60})
	if err != nil {
		return sendReport{}, err
	}
	start := time.Now()
	var rep sendReport
	for range o.Packets {
		var data struct {
			PacketID string `json:"packetId"`
		}
		env, err := callAPIData(ctx, client, http.MethodPost, o.Base+"/api/v1/admin/redpacket/send", o.AdminToken, body, &data)
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

// callAPIData sends one request and decodes the envelope, and into data (when not nil)
// a successful answer's data; a non-envelope answer is an error.
func callAPIData(ctx context.Context, client *http.Client, method, url, adminToken string, body []byte, data any) (envelope, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return envelope{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if adminToken != "" {
		req.Header.Set("Authorization", "Bearer "+adminToken)
	}
	resp, err := client.Do(req)
	if err != nil {
		return envelope{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return envelope{}, fmt.Errorf("%s %s: read body: %w", method, url, err)
	}
	var env struct {
		envelope
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(raw, &env); err != nil || env.Code == "" {
		return envelope{}, fmt.Errorf("%s %s: HTTP %d, not an envelope: %.200q", method, url, resp.StatusCode, raw)
	}
	if data != nil && env.Code == "0000" && len(env.Data) > 0 {
		if err := json.Unmarshal(env.Data, data); err != nil {
			return env.envelope, fmt.Errorf("%s %s: data: %w", method, url, err)
		}
	}
	return env.envelope, nil
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

// grabVerifier reads the server's user databases.
type grabVerifier struct {
	b      *backends
	router sqlstore.Router
	users  *sqlstore.UserStore
}

func openGrabVerifier(ctx context.Context, cfg Config) (*grabVerifier, error) {
	b := &backends{}
	if err := openSQL(ctx, cfg, b, false, false); err != nil {
		b.close()
		return nil, err
	}
	router, err := sqlstore.NewRouter(cfg.DBCount, cfg.TBCount)
	if err != nil {
		b.close()
		return nil, err
	}
	return &grabVerifier{b: b, router: router, users: sqlstore.NewUserStore(b.userDBs, router)}, nil
}

func (v *grabVerifier) close() { v.b.close() }

// verify waits until every grabbed item of the run's packets is credited (and at least
// the granted grabs are grabbed), at most o.CreditWait, then checks (a) the answers
// granted no packet beyond its items and total, (b) the items recorded match the
// answers, (c) every grabbed item is credited, (d) verify's red packet checks find
// nothing on the run's packets. sent is when the packets were sent.
func (v *grabVerifier) verify(ctx context.Context, o grabOptions, rep grabReport, sent time.Time) (grabVerification, error) {
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	start := time.Now()
	var out grabVerification

	run := reconcile.GrabRun{Packets: o.Packets, Items: o.Items, Amount: o.Amount, PerPacket: rep.PerPacket,
		Grabs: rep.Grabs, Granted: rep.Granted, Unknown: rep.UnknownOutcomes}
	out.Checks = append(out.Checks, reconcile.GrabAnswers(run)...)

	// The items and their credit, once the consumer caught up.
	fmt.Fprintf(progress, "waiting for the grabs to be credited\n")
	items, credited, err := v.waitCredited(ctx, rep.Send.PacketIDs, rep.Grabs, o.CreditWait, progress)
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
	ledger := sqlstore.Ledger{Users: v.b.userDBs, Router: v.router}
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
// is credited and at least granted are grabbed, or wait has passed. It returns the grabbed
// items and how many of them are credited.
func (v *grabVerifier) waitCredited(ctx context.Context, packets []string, granted int64, wait time.Duration, progress io.Writer) ([]reconcile.Grabbed, int64, error) {
	deadline := time.Now().Add(wait)
	credited := map[string]bool{}
	lastReport := time.Now()
	for {
		var items []reconcile.Grabbed
		var pending []redpacket.Grab
		for _, id := range packets {
			_, all, err := v.users.RedPacket(ctx, id)
			if err != nil {
				return nil, 0, err
			}
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
		if (n == int64(len(items)) && n >= granted) || !time.Now().Before(deadline) {
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
