package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

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
	// base64URLAlphabet and the dot are the only bytes of a compact JWT.
	base64URLAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
)

// tokenVerifier checks the HS256 JWTs of the _by_token endpoints against the configured
// secret and the injected clock, and yields the openId claim that names the user.
// golang-jwt does the checking; the verifier pins its options and keeps the claims'
// decoding strict (see tokenClaims).
type tokenVerifier struct {
	secret []byte
	now    func() time.Time
}

// parser is the golang-jwt parser of tokenVerifier: only HS256 (so that neither "none"
// nor another algorithm chosen by the token picks the check), strict base64url (one
// encoding per token), exp required, no leeway, and v.now as the clock for exp and nbf.
func (v tokenVerifier) parser() *jwt.Parser {
	return jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithStrictDecoding(),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(v.now),
	)
}

// verify checks the value of an Authorization header, "Bearer <jwt>" or the bare JWT that
// big-market's front end sends, and returns the token's openId. It accepts only alg HS256
// with a valid signature (compared in constant time), no crit header, a required exp after
// now, an nbf (if present) not after now, and an openId that activity.CheckUserID accepts.
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
	var c tokenClaims
	tok, err := v.parser().ParseWithClaims(raw, &c, func(t *jwt.Token) (any, error) {
		// golang-jwt ignores crit; RFC 7515 asks to refuse extensions we do not know.
		if _, ok := t.Header["crit"]; ok {
			return nil, fmt.Errorf("critical header extensions: %w", errTokenMalformed)
		}
		return v.secret, nil
	})
	if err != nil {
		return "", tokenError(tok, err)
	}
	return c.openID, nil
}

// tokenError names the reason golang-jwt refused a token with one of our sentinels, in
// the order the checks used to run: form, algorithm, signature, exp, nbf, openId (the
// library reports all failed claims at once). The library's text is kept as context; it
// never quotes the token.
func tokenError(tok *jwt.Token, err error) error {
	var alg any
	if tok != nil {
		alg = tok.Header["alg"]
	}
	switch {
	case errors.Is(err, errTokenMalformed), errors.Is(err, jwt.ErrTokenMalformed),
		tok == nil || tok.Header == nil: // a header of JSON null
		return fmt.Errorf("%w: %w", errTokenMalformed, err)
	case alg != jwt.SigningMethodHS256.Alg():
		return errTokenAlg // "none", HS512, RS256, missing…: never let the token pick the check
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return fmt.Errorf("%w: %w", errTokenSignature, err)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing): // exp missing or null
		return fmt.Errorf("%w: %w", errTokenMalformed, err)
	case errors.Is(err, jwt.ErrTokenExpired):
		return errTokenExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return errTokenNotYetValid
	case errors.Is(err, errTokenUser):
		return errTokenUser // not wrapped: the cause quotes the id
	default: // anything the library adds later
		return fmt.Errorf("%w: %w", errTokenMalformed, err)
	}
}

// tokenClaims are the claims of a user token, decoded by exact member name (encoding/json
// matches struct fields case-insensitively, which would read "EXP" as exp) with each
// member's JSON type checked, and kept at full precision: golang-jwt's own NumericDate
// truncates to jwt.TimePrecision, a package-wide setting, and would call a token with a
// fractional exp expired a fraction of a second early. It implements jwt.Claims for the
// library's exp and nbf checks and jwt.ClaimsValidator for the openId rule.
type tokenClaims struct {
	openID   string
	exp, nbf *jwt.NumericDate
}

// UnmarshalJSON decodes a claims object: a member that is missing or null is absent, one
// of the wrong type, or a date past year 9999, is malformed.
func (c *tokenClaims) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil || m == nil {
		return fmt.Errorf("claims not an object: %w", errTokenMalformed)
	}
	var err error
	if c.exp, err = numericDate(m, "exp"); err != nil {
		return err
	}
	if c.nbf, err = numericDate(m, "nbf"); err != nil {
		return err
	}
	if b, ok := m["openId"]; ok && !bytes.Equal(b, []byte("null")) {
		if err := json.Unmarshal(b, &c.openID); err != nil {
			return fmt.Errorf("openId: %w", errTokenMalformed)
		}
	}
	return nil
}

// numericDate decodes member name of m, a JWT NumericDate: seconds since the epoch that
// RFC 7519 allows to be fractional. It returns nil when the member is missing or null.
func numericDate(m map[string]json.RawMessage, name string) (*jwt.NumericDate, error) {
	b, ok := m[name]
	if !ok || bytes.Equal(b, []byte("null")) {
		return nil, nil
	}
	var v float64
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("%s type: %w", name, errTokenMalformed)
	}
	if math.Abs(v) > maxNumericDate {
		return nil, fmt.Errorf("%s out of range: %w", name, errTokenMalformed)
	}
	sec, frac := math.Modf(v)
	return &jwt.NumericDate{Time: time.Unix(int64(sec), int64(frac*1e9))}, nil
}

// Validate applies the user id rule to the openId claim; golang-jwt calls it after exp
// and nbf.
func (c *tokenClaims) Validate() error {
	if err := activity.CheckUserID(c.openID); err != nil {
		return errTokenUser // not wrapped: the cause quotes the id
	}
	return nil
}

func (c *tokenClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.exp, nil }
func (c *tokenClaims) GetNotBefore() (*jwt.NumericDate, error)      { return c.nbf, nil }
func (c *tokenClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return nil, nil }
func (c *tokenClaims) GetIssuer() (string, error)                   { return "", nil }
func (c *tokenClaims) GetSubject() (string, error)                  { return "", nil }
func (c *tokenClaims) GetAudience() (jwt.ClaimStrings, error)       { return nil, nil }

// MarshalJSON encodes the claims SignToken issues, {"openId": …, "exp": …} in this order,
// exp in whole seconds.
func (c *tokenClaims) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		OpenID string           `json:"openId"`
		Exp    *jwt.NumericDate `json:"exp"`
	}{c.openID, c.exp})
}

// SignToken returns an HS256 JWT with the claims {"openId": openID, "exp": exp in unix
// seconds}, the token the _by_token endpoints accept until exp; tests and the load tool
// mint their tokens with it.
func SignToken(secret []byte, openID string, exp time.Time) string {
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, &tokenClaims{openID: openID, exp: jwt.NewNumericDate(exp)}).SignedString(secret)
	if err != nil {
		panic("httpapi: sign token: " + err.Error()) // a []byte key and these claims always sign
	}
	return tok
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

// demoTokenTTL is how long a demo token lasts: a day of clicking around.
const demoTokenTTL = 24 * time.Hour

type demoTokenResponse struct {
	Token string `json:"token"`
}

// demoToken mints a user token for the user id in the body, as `bigmarket token` does, so
// that the demo's pages can sign in as anyone. Only demo mode serves it.
func (s *Server) demoToken(r *http.Request) (any, error) {
	var body struct {
		UserID string `json:"userId"`
	}
	if err := decodeJSON(r, &body); err != nil {
		return nil, err
	}
	if err := checkUserID(body.UserID); err != nil {
		return nil, err
	}
	now := time.Now
	if s.opts.Now != nil {
		now = s.opts.Now
	}
	return demoTokenResponse{Token: SignToken(s.opts.JWTSecret, body.UserID, now().Add(demoTokenTTL))}, nil
}
