package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/raffle"
)

// fuzzMaxBody is the body limit of the fuzzed servers, small enough that the fuzzer
// reaches it.
const fuzzMaxBody = 512

// decimalID is what referenceID takes for an id: an optional '-' and decimal digits.
var decimalID = regexp.MustCompile(`^-?[0-9]+$`)

// referenceID decodes one value of an id field the way the API promises, independently of
// ID: null and "" leave the id as it is (set is false); a decimal integer, bare or
// quoted, sets it; anything else is refused.
func referenceID(raw json.RawMessage) (v int64, set, ok bool) {
	text := string(raw)
	switch {
	case text == "null" || text == `""`:
		return 0, false, true
	case strings.HasPrefix(text, `"`):
		if json.Unmarshal(raw, &text) != nil {
			return 0, false, false
		}
	}
	if !decimalID.MatchString(text) {
		return 0, false, false
	}
	v, err := strconv.ParseInt(text, 10, 64)
	return v, true, err == nil
}

// referenceRequest decodes a {userId, <idField>} body the way the API promises: one JSON
// object whose keys match the field names case-insensitively (encoding/json's rule),
// the last occurrence winning, a userId string or null, an id as referenceID takes it;
// ok is whether the request is valid, so that the service must see it.
func referenceRequest(body []byte, idField string) (userID string, id int64, ok bool) {
	if len(body) > fuzzMaxBody || !json.Valid(body) {
		return "", 0, false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return "", 0, false
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return "", 0, false
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return "", 0, false
		}
		switch {
		case strings.EqualFold(key, "userId"):
			if string(raw) == "null" {
				continue
			}
			if raw[0] != '"' || json.Unmarshal(raw, &userID) != nil {
				return "", 0, false
			}
		case strings.EqualFold(key, idField):
			v, set, good := referenceID(raw)
			if !good {
				return "", 0, false
			}
			if set {
				id = v
			}
		}
	}
	return userID, id, activity.CheckUserID(userID) == nil && id > 0
}

// call is what a fake service was asked.
type call struct {
	userID string
	id     int64
}

// checkUserBody posts body to path and checks the answer against referenceRequest: never
// a 5xx, always an envelope, 0000 with exactly one service call carrying the reference's
// userId and id when the body is valid, 0002 and no call otherwise.
func checkUserBody(t *testing.T, h *Server, calls *[]call, path, idField, body string) {
	t.Helper()
	req := httptest.NewRequest("POST", path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var env map[string]json.RawMessage
	if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil || len(env) != 3 {
		t.Fatalf("body %q: HTTP %d, not an envelope: %q", body, rec.Code, rec.Body)
	}
	var code, info string
	if json.Unmarshal(env["code"], &code) != nil || json.Unmarshal(env["info"], &info) != nil || info == "" {
		t.Fatalf("body %q: envelope without code or info: %q", body, rec.Body)
	}
	if rec.Code >= 500 {
		t.Fatalf("body %q: HTTP %d %s %q", body, rec.Code, code, info)
	}
	for _, leak := range []string{"json:", "Go ", "int64", "httpapi"} {
		if strings.Contains(info, leak) {
			t.Fatalf("body %q: info %q leaks %q", body, info, leak)
		}
	}
	userID, id, valid := referenceRequest([]byte(body), idField)
	if !valid {
		if code != string(CodeIllegalParam) || len(*calls) != 0 || string(env["data"]) != "null" {
			t.Fatalf("body %q is invalid: HTTP %d %s %q, %d calls %v; want 0002 and no call", body, rec.Code, code, info, len(*calls), *calls)
		}
		return
	}
	if code != string(CodeSuccess) || rec.Code != 200 || len(*calls) != 1 || (*calls)[0] != (call{userID, id}) {
		t.Fatalf("body %q is valid for %q/%d: HTTP %d %s %q, calls %v; want 0000 and one call", body, userID, id, rec.Code, code, info, *calls)
	}
}

// userBodySeeds are request bodies for the {userId, <id>} endpoints, %s being the id
// field: valid ones, and ones each broken in one way.
var userBodySeeds = []string{
	`{"userId":"xiaofuge","%s":100301}`,
	`{"userId":"xiaofuge","%s":"100301"}`,
	`{"USERID":"x","%s":1,"%s":null,"extra":[{}]}`,
	`{"userId":"xiaofuge","%s":1.5}`,
	`{"userId":"xiaofuge","%s":"+1"}`,
	`{"userId":"xiaofuge","%s":9223372036854775808}`,
	`{"userId":5,"%s":1}`,
	`{"userId":"pad763_2 ","%s":1}`,
	`{"userId":" pad763_2","%s":1}`,
	`{"userId":"nul\u0000user","%s":1}`,
	`{"userId":"alice\u200b","%s":1}`,
	`{"userId":"\ud800x","%s":1}`,
	"{\"userId\":\"\xff\",\"%s\":1}",
	`{"userId":"123456789012345678901234567890123","%s":1}`,
	`{"userId":"xiaofuge","%s":1}{}`,
	`[{"userId":"xiaofuge","%s":1}]`,
	`null`,
	``,
}

func addUserBodySeeds(f *testing.F, idField string) {
	for _, s := range userBodySeeds {
		f.Add(strings.ReplaceAll(s, "%s", idField))
	}
}

// FuzzDrawBody sends arbitrary bodies to activity/draw.
func FuzzDrawBody(f *testing.F) {
	addUserBodySeeds(f, "activityId")
	f.Fuzz(func(t *testing.T, body string) {
		var calls []call
		rf := newFakeRaffles()
		rf.DrawFn = func(userID string, activityID int64) (raffle.Result, error) {
			calls = append(calls, call{userID, activityID})
			return raffle.Result{AwardID: 101, AwardTitle: "随机积分", AwardIndex: 1}, nil
		}
		h := New(Options{Strategies: newFake(), Raffles: rf, PlainUserEndpoints: true, MaxBodyBytes: fuzzMaxBody})
		checkUserBody(t, h, &calls, "/api/v1/raffle/activity/draw", "activityId", body)
	})
}

// FuzzExchangeBody sends arbitrary bodies to activity/credit_pay_exchange_sku.
func FuzzExchangeBody(f *testing.F) {
	addUserBodySeeds(f, "sku")
	f.Fuzz(func(t *testing.T, body string) {
		var calls []call
		cf := &fakeCredits{ExchangeSKUFn: func(userID string, sku int64) (activity.RechargeOrder, error) {
			calls = append(calls, call{userID, sku})
			return activity.RechargeOrder{}, nil
		}}
		h := New(Options{Strategies: newFake(), Credits: cf, PlainUserEndpoints: true, MaxBodyBytes: fuzzMaxBody})
		checkUserBody(t, h, &calls, "/api/v1/raffle/activity/credit_pay_exchange_sku", "sku", body)
	})
}

// FuzzIDUnmarshalJSON checks ID against referenceID on any JSON value: the same
// acceptance and value, a value that round-trips through strconv bare and quoted, and on
// refusal a type error that decodeJSON can word, with the id untouched.
func FuzzIDUnmarshalJSON(f *testing.F) {
	for _, s := range []string{`100006`, `"100006"`, `null`, `""`, `-7`, `1.5`, `1e5`, `"+5"`, `" 5"`, `"0x10"`, `9223372036854775808`, `true`, `{}`, `"\u0031"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := bytes.Trim([]byte(s), " \t\r\n")
		if !json.Valid(b) {
			return // the decoder hands UnmarshalJSON only valid JSON
		}
		const untouched = ID(424242)
		id := untouched
		err := id.UnmarshalJSON(b)
		want, set, ok := referenceID(b)
		if err != nil {
			var typeErr *json.UnmarshalTypeError
			if !errors.As(err, &typeErr) || typeErr.Type != idType || typeErr.Value == "" || id != untouched {
				t.Fatalf("ID(%s): id %d, error %#v; want a type error and the id untouched", b, id, err)
			}
			if ok {
				t.Fatalf("ID(%s) refused: %v; want %d", b, err, want)
			}
			return
		}
		if !ok {
			t.Fatalf("ID(%s) = %d; want a refusal", b, id)
		}
		if !set {
			if id != untouched {
				t.Fatalf("ID(%s) = %d; want the id left as it was", b, id)
			}
			return
		}
		if int64(id) != want {
			t.Fatalf("ID(%s) = %d; want %d", b, id, want)
		}
		text := strconv.FormatInt(int64(id), 10)
		for _, again := range []string{text, strconv.Quote(text)} {
			var back ID
			if err := back.UnmarshalJSON([]byte(again)); err != nil || back != id {
				t.Fatalf("ID(%s) = %d, but %s gives %d, %v", b, id, again, back, err)
			}
		}
	})
}
