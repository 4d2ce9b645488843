package httpapi

import (
	"net/http"

	"github.com/bigmarket/bigmarket/ident"
)

// checkID refuses an identifier the one rule (ident.Check) refuses, with a 0002 that
// names the field and says why ("userId must be valid UTF-8") without echoing the value.
// Every string id of a request passes here before it reaches a service: userId (form,
// query, JSON, or a token's openId through activity.CheckUserID, the same rule),
// outBusinessNo, behaviorType, appId, packetId, channel, source and eligibleUsers.
func checkID(field, value string, max int) error {
	if err := ident.Check(value, max); err != nil {
		return badParam(http.StatusOK, "%s %v", field, err)
	}
	return nil
}

// checkUserID is checkID of a userId.
func checkUserID(userID string) error { return checkID("userId", userID, ident.MaxUserID) }
