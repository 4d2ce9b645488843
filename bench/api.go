package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Envelope is the part of a response the scenarios read.
type Envelope struct {
	Code string `json:"code"`
	Info string `json:"info"`
}

// Call sends one request (with the admin token as a bearer token unless it is empty) and
// decodes the envelope, and into data (when not nil) a successful answer's data; a
// non-envelope answer is an error.
func Call(ctx context.Context, client *http.Client, method, url, adminToken string, body []byte, data any) (Envelope, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return Envelope{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if adminToken != "" {
		req.Header.Set("Authorization", "Bearer "+adminToken)
	}
	resp, err := client.Do(req)
	if err != nil {
		return Envelope{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Envelope{}, fmt.Errorf("%s %s: read body: %w", method, url, err)
	}
	var env struct {
		Envelope
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(raw, &env); err != nil || env.Code == "" {
		return Envelope{}, fmt.Errorf("%s %s: HTTP %d, not an envelope: %.200q", method, url, resp.StatusCode, raw)
	}
	if data != nil && env.Code == "0000" && len(env.Data) > 0 {
		if err := json.Unmarshal(env.Data, data); err != nil {
			return env.Envelope, fmt.Errorf("%s %s: data: %w", method, url, err)
		}
	}
	return env.Envelope, nil
}

// Armory sends an armory GET (with the admin token, which production mode requires) and
// expects success.
func Armory(ctx context.Context, url, adminToken string) error {
	client := &http.Client{Timeout: 30 * time.Second}
	env, err := Call(ctx, client, http.MethodGet, url, adminToken, nil, nil)
	if err != nil {
		return fmt.Errorf("armory: %w", err)
	}
	if env.Code != "0000" {
		return fmt.Errorf("armory %s: %s %s", url, env.Code, env.Info)
	}
	return nil
}

// armoryActivity warms the activity's stock and caches and assembles its strategy.
func armoryActivity(ctx context.Context, base, adminToken string, activityID int64) error {
	return Armory(ctx, fmt.Sprintf("%s/api/v1/raffle/activity/armory?activityId=%d", base, activityID), adminToken)
}

// scenarioClient is built like Run's own client: one keep-alive HTTP/1.1 connection per
// worker, no proxy, no gzip, redirects not followed. A scenario shares it between its
// warmup and measured run, so that the measured run starts on warm connections.
func scenarioClient(concurrency int) (*http.Client, *http.Transport) {
	t := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: DefaultTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        concurrency,
		MaxIdleConnsPerHost: concurrency,
		MaxConnsPerHost:     concurrency,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &http.Client{
		Transport:     t,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, t
}
