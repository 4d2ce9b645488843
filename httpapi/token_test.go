package httpapi

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/credit"
	"github.com/bigmarket/bigmarket/raffle"
	"github.com/bigmarket/bigmarket/rebate"
)

var (
	// b64 is strict base64url without padding, the encoding of JWT segments.
	b64        = base64.RawURLEncoding.Strict()
	testSecret = []byte("bigmarket-test-secret")
	testNow    = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
)

// craftToken builds a JWT from raw header and claims JSON, signed with HMAC-h under secret,
// so that tests can make the tokens SignToken never would.
func craftToken(h func() hash.Hash, secret []byte, header, claims string) string {
	input := b64.EncodeToString([]byte(header)) + "." + b64.EncodeToString([]byte(claims))
	mac := hmac.New(h, secret)
	mac.Write([]byte(input))
	return input + "." + b64.EncodeToString(mac.Sum(nil))
}

// hs256 is craftToken with the HS256 header and testSecret.
func hs256(claims string) string {
	return craftToken(sha256.New, testSecret, `{"alg":"HS256","typ":"JWT"}`, claims)
}

func TestTokenVerify(t *testing.T) {
	t.Parallel()
	valid := SignToken(testSecret, "xiaofuge", testNow.Add(time.Hour))
	head, rest, _ := strings.Cut(valid, ".")
	_, sig, _ := strings.Cut(rest, ".")
	exp := testNow.Add(time.Hour).Unix()
	forgedClaims := head + "." + b64.EncodeToString(fmt.Appendf(nil, `{"openId":"mallory","exp":%d}`, exp)) + "." + sig
	for _, tc := range []struct {
		name string
		raw  string
		user string
		err  error
	}{
		{"bare", valid, "xiaofuge", nil},
		{"Bearer prefix", "Bearer " + valid, "xiaofuge", nil},
		{"bearer lower case, extra blanks", "  bearer   " + valid + " ", "xiaofuge", nil},
		{"one second before exp", SignToken(testSecret, "xiaofuge", testNow.Add(time.Second)), "xiaofuge", nil},
		{"expired by one second", SignToken(testSecret, "xiaofuge", testNow.Add(-time.Second)), "", errTokenExpired},
		{"exp is now", SignToken(testSecret, "xiaofuge", testNow), "", errTokenExpired},
		{"fractional exp ahead", hs256(fmt.Sprintf(`{"openId":"xiaofuge","exp":%d.5}`, testNow.Unix())), "xiaofuge", nil},
		{"nbf past", hs256(fmt.Sprintf(`{"openId":"xiaofuge","exp":%d,"nbf":%d}`, exp, testNow.Unix())), "xiaofuge", nil},
		{"nbf future", hs256(fmt.Sprintf(`{"openId":"xiaofuge","exp":%d,"nbf":%d}`, exp, testNow.Unix()+60)), "", errTokenNotYetValid},
		{"nbf not a number", hs256(fmt.Sprintf(`{"openId":"xiaofuge","exp":%d,"nbf":"soon"}`, exp)), "", errTokenMalformed},
		{"claims swapped under the old signature", forgedClaims, "", errTokenSignature},
		{"signature of another token", head + "." + strings.Split(SignToken(testSecret, "mallory", testNow.Add(time.Hour)), ".")[1] + "." + sig, "", errTokenSignature},
		{"signed with another secret", SignToken([]byte("not-the-secret"), "xiaofuge", testNow.Add(time.Hour)), "", errTokenSignature},
		{"signature cut short", valid[:len(valid)-3], "", errTokenSignature},
		{"alg none", b64.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + strings.Split(valid, ".")[1] + ".", "", errTokenAlg},
		{"alg HS512", craftToken(sha512.New, testSecret, `{"alg":"HS512","typ":"JWT"}`, fmt.Sprintf(`{"openId":"xiaofuge","exp":%d}`, exp)), "", errTokenAlg},
		{"alg hs256 lower case", craftToken(sha256.New, testSecret, `{"alg":"hs256"}`, fmt.Sprintf(`{"openId":"xiaofuge","exp":%d}`, exp)), "", errTokenAlg},
		{"alg missing", craftToken(sha256.New, testSecret, `{"typ":"JWT"}`, fmt.Sprintf(`{"openId":"xiaofuge","exp":%d}`, exp)), "", errTokenAlg},
		{"alg not a string", craftToken(sha256.New, testSecret, `{"alg":256}`, fmt.Sprintf(`{"openId":"xiaofuge","exp":%d}`, exp)), "", errTokenAlg},
		{"crit header", craftToken(sha256.New, testSecret, `{"alg":"HS256","crit":["x"]}`, fmt.Sprintf(`{"openId":"xiaofuge","exp":%d}`, exp)), "", errTokenMalformed},
		{"empty", "", "", errTokenMissing},
		{"Bearer alone", "Bearer ", "", errTokenMissing},
		{"Bearer without a blank", "Bearer" + valid, "", errTokenMalformed},
		{"one segment", head, "", errTokenMalformed},
		{"two segments", head + "." + strings.Split(valid, ".")[1], "", errTokenMalformed},
		{"four segments", valid + "." + sig, "", errTokenMalformed},
		{"padded base64", valid + "=", "", errTokenMalformed},
		{"standard base64 alphabet", strings.Replace(valid, ".", "+", 1) + ".x", "", errTokenMalformed},
		{"non-canonical signature bits", valid[:len(valid)-1] + "B", "", errTokenMalformed},
		{"header not base64", "e!." + strings.Split(valid, ".")[1] + "." + sig, "", errTokenMalformed},
		{"header not JSON", b64.EncodeToString([]byte("alg=HS256")) + "." + strings.Split(valid, ".")[1] + "." + sig, "", errTokenMalformed},
		{"claims not JSON", hs256(`openId=xiaofuge`), "", errTokenMalformed},
		{"claims an array", hs256(`["xiaofuge"]`), "", errTokenMalformed},
		{"claims null", hs256(`null`), "", errTokenMalformed},
		{"exp missing", hs256(`{"openId":"xiaofuge"}`), "", errTokenMalformed},
		{"exp null", hs256(`{"openId":"xiaofuge","exp":null}`), "", errTokenMalformed},
		{"exp a string", hs256(fmt.Sprintf(`{"openId":"xiaofuge","exp":"%d"}`, exp)), "", errTokenMalformed},
		{"exp beyond year 9999", hs256(`{"openId":"xiaofuge","exp":1e300}`), "", errTokenMalformed},
		{"exp key in another case", hs256(fmt.Sprintf(`{"openId":"xiaofuge","EXP":%d}`, exp)), "", errTokenMalformed},
		{"openId missing", hs256(fmt.Sprintf(`{"exp":%d}`, exp)), "", errTokenUser},
		{"openId empty", SignToken(testSecret, "", testNow.Add(time.Hour)), "", errTokenUser},
		{"openId 33 bytes", SignToken(testSecret, strings.Repeat("u", 33), testNow.Add(time.Hour)), "", errTokenUser},
		{"openId 32 bytes", SignToken(testSecret, strings.Repeat("u", 32), testNow.Add(time.Hour)), strings.Repeat("u", 32), nil},
		{"openId a number", hs256(fmt.Sprintf(`{"openId":42,"exp":%d}`, exp)), "", errTokenMalformed},
		{"openid in lower case", hs256(fmt.Sprintf(`{"openid":"xiaofuge","exp":%d}`, exp)), "", errTokenUser},
		{"longer than 4 KiB", SignToken(testSecret, "xiaofuge", testNow.Add(time.Hour)) + strings.Repeat("A", maxTokenLen), "", errTokenMalformed},
		// Where golang-jwt's defaults differ from ours (MapClaims reads exp 0 as absent,
		// base64 skips line breaks, a JSON null header decodes to no header).
		{"exp zero", hs256(`{"openId":"xiaofuge","exp":0}`), "", errTokenExpired},
		{"line break inside", strings.Replace(valid, ".", ".\n", 1), "", errTokenMalformed},
		{"header null", b64.EncodeToString([]byte(`null`)) + "." + strings.Split(valid, ".")[1] + "." + sig, "", errTokenMalformed},
		{"crit null", craftToken(sha256.New, testSecret, `{"alg":"HS256","crit":null}`, fmt.Sprintf(`{"openId":"xiaofuge","exp":%d}`, exp)), "", errTokenMalformed},
		{"fractional exp just past", hs256(fmt.Sprintf(`{"openId":"xiaofuge","exp":%d.999}`, testNow.Unix()-1)), "", errTokenExpired},
		{"fractional nbf ahead", hs256(fmt.Sprintf(`{"openId":"xiaofuge","exp":%d,"nbf":%d.5}`, exp, testNow.Unix())), "", errTokenNotYetValid},
		{"nbf key in another case", hs256(fmt.Sprintf(`{"openId":"xiaofuge","exp":%d,"NBF":%d}`, exp, testNow.Unix()+60)), "xiaofuge", nil},
		{"expired and no openId", hs256(fmt.Sprintf(`{"exp":%d}`, testNow.Unix()-1)), "", errTokenExpired},
	} {
		v := tokenVerifier{secret: testSecret, now: func() time.Time { return testNow }}
		user, err := v.verify(tc.raw)
		if user != tc.user || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("%s: %q, %v; want %q, %v", tc.name, user, err, tc.user, tc.err)
		}
		if err != nil && tc.raw != "" && strings.Contains(err.Error(), tc.raw) {
			t.Errorf("%s: error quotes the token: %v", tc.name, err)
		}
	}
	noSecret := tokenVerifier{now: func() time.Time { return testNow }}
	if _, err := noSecret.verify(SignToken(nil, "xiaofuge", testNow.Add(time.Hour))); !errors.Is(err, errTokenMissing) {
		t.Errorf("verifier without a secret: %v, want %v", err, errTokenMissing)
	}
}

// TestSignToken checks SignToken's header and claims, and its HMAC against the HS256
// example of jwt.io, so that tokens interoperate with other JWT libraries.
func TestSignToken(t *testing.T) {
	t.Parallel()
	tok := SignToken(testSecret, "xiaofuge", time.Unix(1740830400, 999))
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("%d segments, want 3", len(parts))
	}
	for i, want := range []string{`{"alg":"HS256","typ":"JWT"}`, `{"openId":"xiaofuge","exp":1740830400}`} {
		if got, err := b64.DecodeString(parts[i]); err != nil || string(got) != want {
			t.Errorf("segment %d: %q %v, want %q", i, got, err, want)
		}
	}
	const (
		input = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
		want  = "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
	)
	if sig, err := jwt.SigningMethodHS256.Sign(input, []byte("your-256-bit-secret")); err != nil || b64.EncodeToString(sig) != want {
		t.Errorf("jwt.io example signature %s %v, want %s", b64.EncodeToString(sig), err, want)
	}
}

// fakeCredits records calls; its Fn fields decide the answers.
type fakeCredits struct {
	calls         atomic.Int64
	AccountFn     func(userID string) (credit.Account, error)
	ExchangeSKUFn func(userID string, sku int64) (activity.RechargeOrder, error)
}

func (f *fakeCredits) Account(_ context.Context, userID string) (credit.Account, error) {
	f.calls.Add(1)
	return f.AccountFn(userID)
}

func (f *fakeCredits) ExchangeSKU(_ context.Context, userID string, sku int64) (activity.RechargeOrder, error) {
	f.calls.Add(1)
	return f.ExchangeSKUFn(userID, sku)
}

// fakeRebates records calls; its Fn fields decide the answers.
type fakeRebates struct {
	calls      atomic.Int64
	SignInFn   func(userID string) error
	SignedInFn func(userID string) (bool, error)
}

func (f *fakeRebates) SignIn(_ context.Context, userID string) error {
	f.calls.Add(1)
	return f.SignInFn(userID)
}

func (f *fakeRebates) SignedIn(_ context.Context, userID string) (bool, error) {
	f.calls.Add(1)
	return f.SignedInFn(userID)
}

func (f *fakeRebates) Behave(context.Context, string, rebate.Behavior, string) ([]string, error) {
	f.calls.Add(1)
	return nil, errors.New("not used by the token tests")
}

// tokenOptions serves every user endpoint from fakes that append the user of each call
// to seen, with testSecret and the clock at testNow.
func tokenOptions(seen *[]string) Options {
	rf, af := newFakeRaffles(), newFakeActivities()
	draw, awards, account := rf.DrawFn, rf.AwardListFn, af.AccountFn
	rf.DrawFn = func(userID string, id int64) (raffle.Result, error) {
		*seen = append(*seen, userID)
		return draw(userID, id)
	}
	rf.AwardListFn = func(userID string, id int64) ([]raffle.AwardView, error) {
		*seen = append(*seen, userID)
		return awards(userID, id)
	}
	af.AccountFn = func(userID string, id int64) (activity.View, error) {
		*seen = append(*seen, userID)
		return account(userID, id)
	}
	cf := &fakeCredits{
		AccountFn: func(userID string) (credit.Account, error) {
			*seen = append(*seen, userID)
			return credit.Account{UserID: userID, Total: 2000, Available: 1019}, nil
		},
		ExchangeSKUFn: func(userID string, sku int64) (activity.RechargeOrder, error) {
			*seen = append(*seen, userID)
			if sku != 9011 {
				return activity.RechargeOrder{}, fmt.Errorf("sku %d: %w", sku, activity.ErrSKUNotFound)
			}
			return activity.RechargeOrder{UserID: userID, SKU: sku}, nil
		},
	}
	rb := &fakeRebates{
		SignInFn:   func(userID string) error { *seen = append(*seen, userID); return nil },
		SignedInFn: func(userID string) (bool, error) { *seen = append(*seen, userID); return true, nil },
	}
	return Options{
		Strategies: newFake(), Activities: af, Raffles: rf, Credits: cf, Rebates: rb,
		JWTSecret: testSecret, Now: func() time.Time { return testNow },
	}
}

// tokenRoutes are the seven _by_token endpoints with a request whose body (or query) names
// another user, "mallory", and the data the token user "xiaofuge" gets.
var tokenRoutes = []struct{ path, body, data string }{
	{"activity/draw_by_token", `{"userId":"mallory","activityId":100301}`, `{"awardId":101,"awardTitle":"随机积分","awardIndex":1}`},
	{"activity/query_user_activity_account_by_token", `{"userId":"mallory","activityId":"100301"}`,
		`{"totalCount":150,"totalCountSurplus":140,"dayCount":10,"dayCountSurplus":3,"monthCount":100,"monthCountSurplus":90}`},
	{"strategy/query_raffle_award_list_by_token", `{"userId":{"not":"a string"},"activityId":100301}`,
		`[{"awardId":101,"awardTitle":"随机积分","awardSubtitle":"","sort":1,"awardRuleLockCount":0,"isAwardUnlock":true,"waitUnLockCount":0},` +
			`{"awardId":106,"awardTitle":"轻奢办公套件","awardSubtitle":"抽奖1次后解锁","sort":6,"awardRuleLockCount":1,"isAwardUnlock":false,"waitUnLockCount":1}]`},
	{"activity/query_user_credit_account_by_token?userId=mallory", ``, `10.19`},
	{"activity/credit_pay_exchange_sku_by_token", `{"userId":"mallory","sku":9011}`, `true`},
	{"activity/calendar_sign_rebate_by_token?userId=mallory", ``, `true`},
	{"activity/is_calendar_sign_rebate_by_token", ``, `true`},
}

// doToken posts body to target with one Authorization header per value in auth.
func doToken(t *testing.T, h http.Handler, target string, auth []string, body string) reply {
	t.Helper()
	req := httptest.NewRequest("POST", target, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for _, a := range auth {
		req.Header.Add("Authorization", a)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var r reply
	if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
		t.Fatalf("POST %s: body is not an envelope: %q", target, rec.Body.String())
	}
	r.status, r.header = rec.Code, rec.Header()
	return r
}

// TestTokenRoutes checks that production mode (plain endpoints off) serves each token
// variant as the token's user, whatever userId the request carries, while the plain
// route answers 404.
func TestTokenRoutes(t *testing.T) {
	t.Parallel()
	var seen []string
	h := New(tokenOptions(&seen))
	tok := SignToken(testSecret, "xiaofuge", testNow.Add(time.Minute))
	for _, rt := range tokenRoutes {
		for _, auth := range []string{tok, "Bearer " + tok} {
			seen = nil
			r := doToken(t, h, "/api/v1/raffle/"+rt.path, []string{auth}, rt.body)
			if r.status != 200 || r.Code != "0000" || string(r.Data) != rt.data {
				t.Errorf("%s (%.6s…): HTTP %d %s %q %s, want 200 0000 %s", rt.path, auth, r.status, r.Code, r.Info, r.Data, rt.data)
			}
			if len(seen) != 1 || seen[0] != "xiaofuge" {
				t.Errorf("%s: service called for %q, want once for the token's user", rt.path, seen)
			}
		}
		seen = nil
		base, _, _ := strings.Cut(rt.path, "?")
		plain := strings.TrimSuffix(base, "_by_token")
		if r := doToken(t, h, "/api/v1/raffle/"+plain, []string{tok}, `{"userId":"xiaofuge","activityId":100301,"sku":9011}`); r.status != 404 || r.Code != "0002" {
			t.Errorf("plain %s with plain endpoints off: HTTP %d %s, want 404 0002", plain, r.status, r.Code)
		}
		if len(seen) != 0 {
			t.Errorf("plain %s: service called for %q", plain, seen)
		}
	}
}

// TestTokenRefused sends every kind of bad Authorization to every token route: each gets
// HTTP 401 with 0003 and the one fixed message, which echoes no token, and reaches no
// service.
func TestTokenRefused(t *testing.T) {
	t.Parallel()
	valid := SignToken(testSecret, "xiaofuge", testNow.Add(time.Minute))
	forged := SignToken([]byte("guessed"), "xiaofuge", testNow.Add(time.Minute))
	expired := SignToken(testSecret, "xiaofuge", testNow.Add(-time.Second))
	none := b64.EncodeToString([]byte(`{"alg":"none"}`)) + "." + strings.Split(valid, ".")[1] + "."
	for _, tc := range []struct {
		name string
		auth []string
	}{
		{"missing", nil},
		{"empty", []string{""}},
		{"Bearer alone", []string{"Bearer "}},
		{"forged", []string{forged}},
		{"forged with Bearer", []string{"Bearer " + forged}},
		{"expired", []string{expired}},
		{"alg none", []string{none}},
		{"malformed", []string{"Bearer not.a.jwt"}},
		{"admin scheme", []string{"Basic eGlhb2Z1Z2U6cHc="}},
		{"two headers", []string{valid, forged}},
		{"empty openId", []string{SignToken(testSecret, "", testNow.Add(time.Minute))}},
		{"too long openId", []string{SignToken(testSecret, strings.Repeat("u", 40), testNow.Add(time.Minute))}},
	} {
		var seen []string
		h := New(tokenOptions(&seen))
		for _, rt := range tokenRoutes {
			r := doToken(t, h, "/api/v1/raffle/"+rt.path, tc.auth, rt.body)
			if r.status != 401 || r.Code != "0003" || string(r.Data) != "null" || r.Info != errBadToken.info {
				t.Errorf("%s %s: HTTP %d %s %q %s, want 401 0003 %q", rt.path, tc.name, r.status, r.Code, r.Info, r.Data, errBadToken.info)
			}
			if r.header.Get("WWW-Authenticate") == "" || r.header.Get("Access-Control-Allow-Origin") != "*" {
				t.Errorf("%s %s: headers %v, want WWW-Authenticate and CORS", rt.path, tc.name, r.header)
			}
		}
		if len(seen) != 0 {
			t.Errorf("%s: services called for %q, want no call", tc.name, seen)
		}
	}
}

// TestTokenBadBody checks that a valid token does not excuse a bad body: 0002 as on the
// plain endpoints, and no service call.
func TestTokenBadBody(t *testing.T) {
	t.Parallel()
	var seen []string
	h := New(tokenOptions(&seen))
	tok := SignToken(testSecret, "xiaofuge", testNow.Add(time.Minute))
	for _, tc := range []struct {
		path, body string
		status     int
	}{
		{"activity/draw_by_token", `{"activityId":`, 400},
		{"activity/draw_by_token", ``, 400},
		{"activity/draw_by_token", `{"userId":"xiaofuge"}`, 200},
		{"activity/draw_by_token", `{"activityId":0}`, 200},
		{"activity/query_user_activity_account_by_token", `{"activityId":"abc"}`, 400},
		{"strategy/query_raffle_award_list_by_token", `{"activityId":-1}`, 200},
		{"activity/credit_pay_exchange_sku_by_token", `{"userId":"xiaofuge"}`, 200},
		{"activity/credit_pay_exchange_sku_by_token", `{"sku":1.5}`, 400},
	} {
		r := doToken(t, h, "/api/v1/raffle/"+tc.path, []string{tok}, tc.body)
		if r.status != tc.status || r.Code != "0002" || r.Info == "" {
			t.Errorf("%s %s: HTTP %d %s %q, want HTTP %d 0002", tc.path, tc.body, r.status, r.Code, r.Info, tc.status)
		}
	}
	if len(seen) != 0 {
		t.Errorf("services called for %q, want no call", seen)
	}
}

// TestTokenRoutesNeedSecret checks that without a JWT secret no token route is served, even
// with the plain endpoints on, and that a plain route takes its user from the body, never
// from an Authorization header.
func TestTokenRoutesNeedSecret(t *testing.T) {
	t.Parallel()
	var seen []string
	opts := tokenOptions(&seen)
	opts.JWTSecret, opts.PlainUserEndpoints = nil, true
	h := New(opts)
	tok := SignToken(nil, "xiaofuge", testNow.Add(time.Minute))
	for _, rt := range tokenRoutes {
		if r := doToken(t, h, "/api/v1/raffle/"+rt.path, []string{tok}, rt.body); r.status != 404 || r.Code != "0002" {
			t.Errorf("%s without a secret: HTTP %d %s, want 404 0002", rt.path, r.status, r.Code)
		}
	}
	if len(seen) != 0 {
		t.Errorf("services called for %q, want no call", seen)
	}

	opts.JWTSecret = testSecret
	h = New(opts)
	tok = SignToken(testSecret, "xiaofuge", testNow.Add(time.Minute))
	r := doToken(t, h, "/api/v1/raffle/activity/query_user_activity_account", []string{tok}, `{"userId":"nobody","activityId":100301}`)
	if r.Code != "0000" || len(seen) != 1 || seen[0] != "nobody" {
		t.Errorf("plain route with a token: %s, service called for %q, want 0000 for the body's user", r.Code, seen)
	}
}
