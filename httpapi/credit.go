package httpapi

import (
	"context"
	"net/http"

	"github.com/bigmarket/bigmarket/activity"
	"github.com/bigmarket/bigmarket/credit"
	"github.com/bigmarket/bigmarket/ident"
	"github.com/bigmarket/bigmarket/rebate"
)

// credits is what the credit endpoints need of the credit domain.
type credits interface {
	Account(ctx context.Context, userID string) (credit.Account, error)
	ExchangeSKU(ctx context.Context, userID string, sku int64) (activity.RechargeOrder, error)
}

// rebates is what the sign-in and behaviour endpoints need of the rebate domain.
type rebates interface {
	SignIn(ctx context.Context, userID string) error
	SignedIn(ctx context.Context, userID string) (bool, error)
	Behave(ctx context.Context, userID string, behavior rebate.Behavior, outBusinessNo string) ([]string, error)
}

// formUserID reads the userId of the form endpoints (query string or urlencoded body);
// under a _by_token route it is the token's, and the form is not consulted.
func formUserID(r *http.Request) (string, error) {
	userID, ok := tokenUser(r.Context())
	if !ok {
		userID = r.FormValue("userId")
	}
	if err := checkUserID(userID); err != nil {
		return "", err
	}
	return userID, nil
}

// queryUserCreditAccount answers the user's available credit, 0 without an account,
// after the red packet green channel.
func (s *Server) queryUserCreditAccount(r *http.Request) (any, error) {
	userID, err := formUserID(r)
	if err != nil {
		return nil, err
	}
	a, err := s.account(r, userID)
	if err != nil {
		return nil, err
	}
	return a.Available, nil
}

// Settler applies, before a credit read, what the asynchronous path will credit a user
// but has not yet (a green channel), under the idempotency keys that path uses.
type Settler interface {
	Settle(ctx context.Context, userID string) error
}

// account reads the user's credit account, first applying what the user is owed but not
// yet credited (the green channel): red packet grabs, and the credit awards and credit
// rebates of Options.CreditSettlers, so that a user who just grabbed, won 随机积分 or
// signed in sees the money. When one fails the account is still answered: the event
// credits it soon.
func (s *Server) account(r *http.Request, userID string) (credit.Account, error) {
	if s.opts.RedPackets != nil {
		if err := s.opts.RedPackets.Settle(r.Context(), userID); err != nil {
			s.opts.Logger.Warn("green channel", "request_id", s.requestID(r), "user_id", userID, "err", err)
		}
	}
	for _, st := range s.opts.CreditSettlers {
		if err := st.Settle(r.Context(), userID); err != nil {
			s.opts.Logger.Warn("green channel", "request_id", s.requestID(r), "user_id", userID, "err", err)
		}
	}
	return s.opts.Credits.Account(r.Context(), userID)
}

// creditPayExchangeSKU buys a SKU's count with credit; the quota arrives once the payment
// event is applied. Under a _by_token route the user is the token's and a userId in the
// body is ignored.
func (s *Server) creditPayExchangeSKU(r *http.Request) (any, error) {
	var req userSKURequest
	if userID, ok := tokenUser(r.Context()); ok {
		var body struct {
			SKU ID `json:"sku"`
		}
		if err := decodeJSON(r, &body); err != nil {
			return nil, err
		}
		req = userSKURequest{UserID: userID, SKU: body.SKU}
	} else if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	if err := req.check(); err != nil {
		return nil, err
	}
	if _, err := s.opts.Credits.ExchangeSKU(r.Context(), req.UserID, int64(req.SKU)); err != nil {
		return nil, err
	}
	return true, nil
}

// calendarSignRebate is the daily sign-in; a second one the same day is 0003.
func (s *Server) calendarSignRebate(r *http.Request) (any, error) {
	userID, err := formUserID(r)
	if err != nil {
		return nil, err
	}
	if err := s.opts.Rebates.SignIn(r.Context(), userID); err != nil {
		return nil, err
	}
	return true, nil
}

func (s *Server) isCalendarSignRebate(r *http.Request) (any, error) {
	userID, err := formUserID(r)
	if err != nil {
		return nil, err
	}
	return s.opts.Rebates.SignedIn(r.Context(), userID)
}

type behaviorRequest struct {
	AppID    string `json:"appId"`
	AppToken string `json:"appToken"`
	Data     struct {
		UserID        string `json:"userId"`
		BehaviorType  string `json:"behaviorType"`
		OutBusinessNo string `json:"outBusinessNo"`
	} `json:"data"`
}

// errAppToken answers a missing or wrong app token (0008).
var errAppToken = &apiError{status: http.StatusUnauthorized, code: CodeBadAppToken}

// behaviorRebate is the service-to-service rebate: another system reports a user's
// behaviour (a payment) under its business number, authenticated by its app token.
func (s *Server) behaviorRebate(r *http.Request) (any, error) {
	var req behaviorRequest
	if err := decodeJSON(r, &req); err != nil {
		return nil, err
	}
	if err := checkID("appId", req.AppID, ident.MaxAppID); err != nil {
		return nil, err
	}
	if !s.appTokenValid(req.AppID, req.AppToken) {
		return nil, errAppToken
	}
	d := req.Data
	for _, f := range []struct {
		name, value string
		max         int
	}{
		{"data.userId", d.UserID, ident.MaxUserID},
		{"data.behaviorType", d.BehaviorType, ident.MaxBehavior},
		{"data.outBusinessNo", d.OutBusinessNo, ident.MaxBusinessNo},
	} {
		if err := checkID(f.name, f.value, f.max); err != nil {
			return nil, err
		}
	}
	ids, err := s.opts.Rebates.Behave(r.Context(), d.UserID, rebate.Behavior(d.BehaviorType), d.OutBusinessNo)
	if err != nil {
		return nil, err
	}
	return ids, nil
}

// appTokenValid checks an app's token like the admin token.
func (s *Server) appTokenValid(appID, token string) bool {
	want, ok := s.opts.AppTokens[appID]
	return ok && want != "" && appID != "" && tokenEqual(token, want)
}
