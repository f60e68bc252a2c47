package metrics

import (
	"errors"
	"strings"

	"github.com/zhimaq/zhimaq/internal/zhima"
)

// Outcome labels that are not gateway codes.
const (
	OutcomeTransport    = string(zhima.SourceTransport)
	OutcomeVerification = string(zhima.SourceVerification)
	OutcomeLocal        = string(zhima.SourceLocal)
)

// gatewayCodes are the public gateway codes counted under their own label.
var gatewayCodes = []string{
	zhima.CodeSuccess, zhima.CodeServiceUnavailable, zhima.CodeAuthTokenInvalid,
	zhima.CodeMissingParameter, zhima.CodeInvalidParameter, zhima.CodeBusinessFailed, zhima.CodeNoPermission,
}

// businessSubCodes are the 40004 sub_codes documented for the three
// methods; any other counts as "40004/other".
var businessSubCodes = []string{
	zhima.SubSystemError, zhima.SubTransactionError, zhima.SubInvalidParameter,
	zhima.SubTransactionIDRepeat, zhima.SubTransactionIDExpired,
	"TRANSACTIONID_CLOSE", "INVALID_TRANSACTION_ID", "NO_VALID_ARRANGEMENT", "API_PRODUCT_NOT_MATCH",
	"PRODUCT_CODE_IS_NULL", "ADMITTANCE_SCORE_NUM_LIMITED", "BIZ_ERROR", "ARRANGEMENT_ERROR", "UNSUPPORTED_BIZ_CODE",
}

// outcomes is every value Outcome returns: the bound on the outcome label.
var outcomes = func() map[string]bool {
	set := map[string]bool{OutcomeTransport: true, OutcomeVerification: true, OutcomeLocal: true, Other: true}
	for _, c := range gatewayCodes {
		set[c] = true
	}
	for _, s := range append(businessSubCodes, Other) {
		set[zhima.CodeBusinessFailed+"/"+s] = true
	}
	return set
}()

// Outcomes lists every outcome label value, in no particular order.
func Outcomes() []string {
	out := make([]string, 0, len(outcomes))
	for o := range outcomes {
		out = append(out, o)
	}
	return out
}

// Outcome maps the error of a gateway call to its outcome label:
//   - nil: "10000";
//   - a *zhima.Error (reached with errors.As) from the gateway: its code, and
//     for 40004 its sub_code too, without a namespace prefix:
//     "40004/SYSTEM_ERROR" (undocumented sub_codes: "40004/other");
//     codes zhimaq does not know: "other";
//   - a transport, verification or local *zhima.Error: "transport",
//     "verification" or "local";
//   - any other error (the call did not complete): "transport".
func Outcome(err error) string {
	if err == nil {
		return zhima.CodeSuccess
	}
	var zerr *zhima.Error
	if !errors.As(err, &zerr) {
		return OutcomeTransport
	}
	switch zerr.Source {
	case zhima.SourceTransport, zhima.SourceVerification, zhima.SourceLocal:
		return string(zerr.Source)
	}
	if !isGatewayCode(zerr.Code) {
		return Other
	}
	if zerr.Code != zhima.CodeBusinessFailed || zerr.SubCode == "" {
		return zerr.Code
	}
	sub := zerr.SubCode
	if i := strings.LastIndexByte(sub, '.'); i >= 0 {
		sub = sub[i+1:] // "isp.SYSTEM_ERROR" is SYSTEM_ERROR, as zhima.Error.Retryable reads it
	}
	label := zhima.CodeBusinessFailed + "/" + sub
	if !outcomes[label] {
		return zhima.CodeBusinessFailed + "/" + Other
	}
	return label
}

func isGatewayCode(code string) bool {
	for _, c := range gatewayCodes {
		if code == c {
			return true
		}
	}
	return false
}
