package httpapi

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/bigmarket/bigmarket/activity"
)

// Reasons a token is refused. The handler answers all of them alike (HTTP 401, 0003), so
// that a client learns nothing about which check failed; tests tell them apart.
var (
	errTokenMissing     = errors.New("token missing")
	errTokenMalformed   = errors.New("token malformed")
	errTokenAlg         = errors.New("token algorithm not HS256")
	errTokenSignature   = errors.New("token signature invalid")
	errTokenExpired     = errors.New("token expired")
	errTokenNotYetValid = errors.New("token not yet valid")
	errTokenUser        = errors.New("token openId invalid")
)

// errBadToken answers a missing, malformed, forged or expired user token: HTTP 401 with
// 0003, as API.md asks. Its text never echoes the token.
var errBadToken = &apiError{status: http.StatusUnauthorized, code: CodeDuplicate, info: "令牌缺失、无效或已过期 (token missing, invalid or expired)"}

const (
	// maxTokenLen bounds the tokens worth decoding; ours are about 150 bytes.
	maxTokenLen = 4096
	// maxNumericDate is 9999-12-31T23:59:59Z; later exp or nbf values are refused as
	// malformed rather than converted with overflow.
	maxNumericDate = 253402300799
	// tokenHeader is the base64url JOSE header of every token SignToken issues.
	tokenHeader = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9" // {"alg":"HS256","typ":"JWT"}
)

// b64 is strict base64url without padding, so that each token has exactly one encoding.
var b64 = base64.RawURLEncoding.Strict()

// tokenVerifier checks the HS256 JWTs of the _by_token endpoints against the configured
// secret and the injected clock, and yields the openId claim that names the user.
type tokenVerifier struct {
	secret []byte
	now    func() time.Time
}

// verify checks the value of an Authorization header, "Bearer <jwt>" or the bare JWT that
// big-market's front end sends, and returns the token's openId. It accepts only alg HS256
// with a valid signature (compared in constant time), a required exp after now, an nbf (if
// present) not after now, and an openId that activity.CheckUserID accepts.
func (v tokenVerifier) verify(raw string) (openID string, err error) {
	raw = strings.TrimSpace(raw)
	if scheme, rest, _ := strings.Cut(raw, " "); strings.EqualFold(scheme, "Bearer") {
		raw = strings.TrimSpace(rest)
	}
	if raw == "" || len(v.secret) == 0 {
		return "", errTokenMissing
	}
	// Trim leaves something only if raw holds a byte outside the alphabet, such as the
	// line breaks that the base64 decoder would otherwise skip.
	if len(raw) > maxTokenLen || strings.Trim(raw, base64URLAlphabet+".") != "" {
		return "", fmt.Errorf("bad characters or length: %w", errTokenMalformed)
	}
	header, rest, _ := strings.Cut(raw, ".")
	payload, sig, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(sig, ".") {
		return "", fmt.Errorf("not three segments: %w", errTokenMalformed)
	}

	h, err := decodeSegment(header)
	if err != nil {
		return "", fmt.Errorf("header: %w", err)
	}
	var alg string
	if err := claim(h, "alg", &alg); err != nil || alg != "HS256" {
		return "", errTokenAlg // "none", HS512, RS256…: never let the token pick the check
	}
	if _, ok := h["crit"]; ok {
		return "", fmt.Errorf("critical header extensions: %w", errTokenMalformed)
	}

	got, err := b64.DecodeString(sig)
	if err != nil {
		return "", fmt.Errorf("signature encoding: %w", errTokenMalformed)
	}
	if !hmac.Equal(got, sign(v.secret, raw[:len(header)+1+len(payload)])) {
		return "", errTokenSignature
	}

	c, err := decodeSegment(payload)
	if err != nil {
		return "", fmt.Errorf("claims: %w", err)
	}
	now := v.now()
	var exp float64
	switch err := claim(c, "exp", &exp); {
	case errors.Is(err, errClaimAbsent):
		return "", fmt.Errorf("no exp: %w", errTokenMalformed)
	case err != nil:
		return "", fmt.Errorf("exp: %w", err)
	}
	expAt, err := numericDate(exp)
	if err != nil {
		return "", fmt.Errorf("exp: %w", err)
	}
	if !now.Before(expAt) {
		return "", errTokenExpired
	}
	var nbf float64
	switch err := claim(c, "nbf", &nbf); {
	case errors.Is(err, errClaimAbsent):
	case err != nil:
		return "", fmt.Errorf("nbf: %w", err)
	default:
		nbfAt, err := numericDate(nbf)
		if err != nil {
			return "", fmt.Errorf("nbf: %w", err)
		}
		if now.Before(nbfAt) {
			return "", errTokenNotYetValid
		}
	}
	if err := claim(c, "openId", &openID); err != nil && !errors.Is(err, errClaimAbsent) {
		return "", fmt.Errorf("openId: %w", err)
	}
	if err := activity.CheckUserID(openID); err != nil {
		return "", errTokenUser // not wrapped: the cause quotes the id
	}
	return openID, nil
}

const base64URLAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// errClaimAbsent is a member that is missing or null.
var errClaimAbsent = errors.New("absent")

// decodeSegment decodes a base64url JSON object. Members are looked up by their exact
// names later, not through encoding/json's case-insensitive field matching.
func decodeSegment(seg string) (map[string]json.RawMessage, error) {
	b, err := b64.DecodeString(seg)
	if err != nil {
		return nil, fmt.Errorf("base64: %w", errTokenMalformed)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil || m == nil {
		return nil, fmt.Errorf("json: %w", errTokenMalformed)
	}
	return m, nil
}

// claim decodes member name of m into v: errClaimAbsent when it is missing or null,
// errTokenMalformed when it has the wrong JSON type.
func claim(m map[string]json.RawMessage, name string, v any) error {
	b, ok := m[name]
	if !ok || bytes.Equal(b, []byte("null")) {
		return errClaimAbsent
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("type: %w", errTokenMalformed)
	}
	return nil
}

// numericDate converts a JWT NumericDate, seconds since the epoch that RFC 7519 allows to
// be fractional, to a time.
func numericDate(v float64) (time.Time, error) {
	if math.Abs(v) > maxNumericDate {
		return time.Time{}, fmt.Errorf("out of range: %w", errTokenMalformed)
	}
	sec, frac := math.Modf(v)
	return time.Unix(int64(sec), int64(frac*1e9)), nil
}

// sign returns the HMAC-SHA256 of a token's signing input, "header.payload".
func sign(secret []byte, signingInput string) []byte {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(signingInput))
	return mac.Sum(nil)
}

// SignToken returns an HS256 JWT with the claims {"openId": openID, "exp": exp in unix
// seconds}, the token the _by_token endpoints accept until exp; tests and the load tool
// mint their tokens with it.
func SignToken(secret []byte, openID string, exp time.Time) string {
	claims, err := json.Marshal(struct {
		OpenID string `json:"openId"`
		Exp    int64  `json:"exp"`
	}{openID, exp.Unix()})
	if err != nil {
		panic("httpapi: marshal token claims: " + err.Error()) // a string and an int64 always marshal
	}
	input := tokenHeader + "." + b64.EncodeToString(claims)
	return input + "." + b64.EncodeToString(sign(secret, input))
}

// tokenUserKey is the context key of the user a _by_token route verified.
type tokenUserKey struct{}

// tokenUser returns the user of a verified token, if the request came through byToken.
func tokenUser(ctx context.Context) (string, bool) {
	u, ok := ctx.Value(tokenUserKey{}).(string)
	return u, ok
}

// byToken wraps a plain user endpoint into its _by_token variant: it verifies the
// Authorization header and hands the token's openId to h through the request context, where
// it takes precedence over any userId in the body. A refused token never reaches h.
func (s *Server) byToken(h handlerFunc) handlerFunc {
	v := tokenVerifier{secret: bytes.Clone(s.opts.JWTSecret), now: s.opts.Now}
	if v.now == nil {
		v.now = time.Now
	}
	return func(r *http.Request) (any, error) {
		auth := r.Header.Values("Authorization")
		if len(auth) != 1 {
			return nil, errBadToken
		}
		userID, err := v.verify(auth[0])
		if err != nil {
			e := *errBadToken
			e.err = err
			return nil, &e
		}
		return h(r.WithContext(context.WithValue(r.Context(), tokenUserKey{}, userID)))
	}
}
