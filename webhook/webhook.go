// Package webhook distributes external awards (model access, usage counts, anything whose
// benefit lives in another system) by an HMAC-signed HTTP POST to a configured URL.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/bigmarket/bigmarket/award"
	"github.com/bigmarket/bigmarket/credit"
)

// Headers of a delivery.
const (
	// HeaderTimestamp is the Unix second the delivery was signed at.
	HeaderTimestamp = "X-Bigmarket-Timestamp"
	// HeaderSignature is "sha256=" and the hex HMAC-SHA256, keyed by the shared secret, of
	// the timestamp, a dot and the body.
	HeaderSignature = "X-Bigmarket-Signature"
	// HeaderIdempotencyKey is the award's order id: the receiver grants once per key.
	HeaderIdempotencyKey = "Idempotency-Key"
)

// Delivery is the JSON body of a webhook call.
type Delivery struct {
	UserID      string `json:"userId"`
	OrderID     string `json:"orderId"`
	AwardID     int    `json:"awardId"`
	AwardKey    string `json:"awardKey"`
	AwardConfig string `json:"awardConfig"`
	AwardTitle  string `json:"awardTitle"`
}

// Options configures a Webhook.
type Options struct {
	URL    string
	Secret string
	Client *http.Client // default: a client with a 10s timeout; redirects are never followed
	Now    func() time.Time
}

// Webhook is an award.Distributor that posts the award to a receiver and completes it
// only on a 2xx answer; any other answer or a transport error is returned, so the
// message is delivered again later (the broker's backoff), until the receiver answers.
type Webhook struct{ opts Options }

var _ award.Distributor = (*Webhook)(nil)

// New returns a Webhook posting to opts.URL.
func New(opts Options) *Webhook {
	client := http.Client{Timeout: 10 * time.Second}
	if opts.Client != nil {
		client = *opts.Client
	}
	// A redirect is not a delivery: net/http would follow a 301–303 with a bodiless GET
	// and report the target's 2xx as if the receiver had taken the award.
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	opts.Client = &client
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Webhook{opts: opts}
}

// Sign returns the signature header value of body signed at timestamp ts.
func Sign(secret, ts string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify reports whether sig is a valid signature of body at ts, for receivers.
func Verify(secret, ts, sig string, body []byte) bool {
	return hmac.Equal([]byte(Sign(secret, ts, body)), []byte(sig))
}

// Prepare posts the award and, on a 2xx answer, returns the change that completes its
// record (no credit).
func (w *Webhook) Prepare(ctx context.Context, a award.Award, m award.SendAward) (credit.Change, error) {
	cfg := m.AwardConfig
	if cfg == "" {
		cfg = a.Config
	}
	body, err := json.Marshal(Delivery{UserID: m.UserID, OrderID: m.OrderID, AwardID: a.ID, AwardKey: a.Key,
		AwardConfig: cfg, AwardTitle: m.AwardTitle})
	if err != nil {
		return credit.Change{}, fmt.Errorf("encode webhook delivery: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.opts.URL, bytes.NewReader(body))
	if err != nil {
		return credit.Change{}, fmt.Errorf("webhook request: %w", err)
	}
	ts := strconv.FormatInt(w.opts.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign(w.opts.Secret, ts, body))
	req.Header.Set(HeaderIdempotencyKey, m.OrderID)
	resp, err := w.opts.Client.Do(req)
	if err != nil {
		return credit.Change{}, fmt.Errorf("webhook post: %w", err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return credit.Change{}, fmt.Errorf("webhook answered %s", resp.Status)
	}
	return credit.Change{}, nil
}
