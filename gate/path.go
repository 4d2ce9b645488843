package gate

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/bigmarket/bigmarket/activity"
)

// DrawPathPrefix is the path of the signed draw; the signature follows it.
const DrawPathPrefix = "/api/v1/raffle/activity/draw/"

// A signature is base64url (unpadded) of expiry (8 bytes, Unix seconds, big-endian), the
// user's path generation (8 bytes), nonce (16 random bytes) and the HMAC-SHA256 of user,
// activity, expiry, generation and nonce.
//
// The generation binds a path to the Redis state its "used" mark is kept in: it is a
// random value kept in Redis per user (Nonces.Generation), and a path is spent only while
// the user's generation is still the path's, in the same step (Nonces.Use). A Redis loss
// takes the used marks and the generation together, so a path issued before the loss,
// used or not, is refused after it (ERR_BIZ_012); the user's next path starts a new
// generation.
const (
	genLen       = 8
	nonceLen     = 16
	macLen       = sha256.Size
	headLen      = 8 + genLen + nonceLen
	signatureLen = headLen + macLen
)

// Path is a signed draw path handed to a user.
type Path struct {
	Path      string
	ExpiresAt time.Time
}

// IssuePath signs a draw path for the user in the activity, valid for the activity's
// PathWindow and once. The activity must use signed paths, be open and have begun.
func (g *Gate) IssuePath(ctx context.Context, userID string, activityID int64) (Path, error) {
	s, err := g.Settings(ctx, activityID)
	if err != nil {
		return Path{}, err
	}
	if !s.SignedPath {
		return Path{}, fmt.Errorf("activity %d: %w", activityID, ErrPathsOff)
	}
	a, err := g.opts.Activities.Activity(ctx, activityID)
	if err != nil {
		return Path{}, err
	}
	now := g.opts.Now()
	if a.State != activity.StateOpen {
		return Path{}, fmt.Errorf("activity %d is %s: %w", activityID, a.State, activity.ErrActivityNotOpen)
	}
	if now.Before(a.Begin) || now.After(a.End) {
		return Path{}, fmt.Errorf("activity %d runs %s to %s: %w", activityID,
			a.Begin.Format(time.DateTime), a.End.Format(time.DateTime), activity.ErrOutsideDates)
	}
	expires := now.Add(s.PathWindow).Truncate(time.Second)
	gen, err := g.opts.Nonces.Generation(ctx, userID, expires)
	if err != nil {
		return Path{}, fmt.Errorf("draw path generation of %s: %w", userID, err)
	}
	sig := make([]byte, signatureLen)
	binary.BigEndian.PutUint64(sig, uint64(expires.Unix()))
	binary.BigEndian.PutUint64(sig[8:], gen)
	if _, err := rand.Read(sig[8+genLen : headLen]); err != nil {
		return Path{}, fmt.Errorf("draw path nonce: %w", err)
	}
	copy(sig[headLen:], g.mac(userID, activityID, sig[:headLen]))
	return Path{Path: DrawPathPrefix + base64.RawURLEncoding.EncodeToString(sig), ExpiresAt: expires}, nil
}

// CheckPath admits a draw of the user in the activity by its signature (empty for the
// plain draw), before the draw reads anything: an activity with signed paths refuses the
// plain draw and any signature that is not this user's and activity's, has expired or
// was used, or that was issued before a Redis loss (ErrBadPath). A valid signature is spent cluster-wide, whatever the activity's
// settings. An activity without signed paths takes the plain draw.
func (g *Gate) CheckPath(ctx context.Context, userID string, activityID int64, signature string) error {
	if signature == "" {
		s, err := g.Settings(ctx, activityID)
		if err != nil {
			return err
		}
		if s.SignedPath {
			return fmt.Errorf("activity %d draws through signed paths only: %w", activityID, ErrBadPath)
		}
		return nil
	}
	sig, err := base64.RawURLEncoding.Strict().DecodeString(signature)
	if err != nil || len(sig) != signatureLen {
		return fmt.Errorf("malformed draw path: %w", ErrBadPath)
	}
	if !hmac.Equal(sig[headLen:], g.mac(userID, activityID, sig[:headLen])) {
		return fmt.Errorf("draw path not signed for this user and activity: %w", ErrBadPath)
	}
	expires := time.Unix(int64(binary.BigEndian.Uint64(sig)), 0)
	if !g.opts.Now().Before(expires) {
		return fmt.Errorf("draw path expired at %s: %w", expires.Format(time.RFC3339), ErrBadPath)
	}
	use, err := g.opts.Nonces.Use(ctx, userID, binary.BigEndian.Uint64(sig[8:]), hex.EncodeToString(sig[8+genLen:headLen]), expires)
	switch {
	case err != nil:
		return fmt.Errorf("spend draw path: %w", err)
	case use == PathUsed:
		return fmt.Errorf("draw path already used: %w", ErrBadPath)
	case use == PathStale:
		return fmt.Errorf("draw path issued before its used marks were lost (a Redis loss), fetch a new one: %w", ErrBadPath)
	}
	return nil
}

// mac is the HMAC-SHA256 of a path's user, activity and head (expiry, generation and
// nonce); the user
// id is length-prefixed so that no two (user, activity) pairs share a message.
func (g *Gate) mac(userID string, activityID int64, head []byte) []byte {
	m := hmac.New(sha256.New, g.opts.Secret)
	m.Write([]byte("bigmarket draw path v2\x00"))
	m.Write([]byte(strconv.Itoa(len(userID)) + ":" + userID))
	m.Write([]byte(strconv.FormatInt(activityID, 10) + "\x00"))
	m.Write(head)
	return m.Sum(nil)
}
