package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"

	"github.com/zhimaq/zhimaq"
	"github.com/zhimaq/zhimaq/internal/zhima"
)

var getUsage = `enqueue get — prints the result record of one job.

Usage: enqueue get --method M --transaction-id T [--app-id A]

Prints the record (one JSON line) of the job with gateway method M (one of
zhima.customer.certification.initialize, zhima.credit.score.brief.get,
zhima.credit.relation.query) and transaction_id T, submitted for app A
(default: the first app of ZHIMA_APPS_FILE, or ZHIMA_APP_ID).
Records stay readable for RESULT_TTL after their last change.

Exit status: 0 when the record was printed; 1 when there is none (never
submitted, rejected on submission, or expired) or Redis failed; 2 on a usage
or configuration error.

` + environment

// methods are the gateway methods a job may name.
var methods = []string{zhimaq.MethodCertificationInitialize, zhimaq.MethodScoreBriefGet, zhimaq.MethodRelationQuery}

// runGet is `enqueue get`; the transaction id is checked for form before
// it is used or printed.
func runGet(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("get", flag.ContinueOnError)
	var ref zhimaq.Ref
	fs.StringVar(&ref.Method, "method", "", "")
	fs.StringVar(&ref.TransactionID, "transaction-id", "", "")
	fs.StringVar(&ref.AppID, "app-id", "", "")
	rest, code, err := parseArgs(fs, args, getUsage, stdout, stderr)
	switch {
	case err != nil:
		return code
	case len(rest) > 0:
		return usageError(stderr, "get", "unexpected argument %q", rest[0])
	case ref.Method == "":
		return usageError(stderr, "get", "--method is required")
	case !slices.Contains(methods, ref.Method):
		return usageError(stderr, "get", "--method %q is not a gateway method zhimaq runs", ref.Method)
	case ref.TransactionID == "":
		return usageError(stderr, "get", "--transaction-id is required")
	case !zhima.IsTransactionID(ref.TransactionID):
		// Not quoted: a value of the wrong form might be personal data.
		return usageError(stderr, "get", "--transaction-id may hold only letters, digits and '_', at most 64")
	}
	p := connect(getenv, stderr)
	if p == nil {
		return exitUsage
	}
	defer p.Close()
	rec, err := p.Result(ctx, ref)
	switch {
	case errors.Is(err, zhimaq.ErrUnknownApp):
		return usageError(stderr, "get", "--app-id is not an app of ZHIMA_APP_ID or ZHIMA_APPS_FILE")
	case errors.Is(err, zhimaq.ErrNotFound):
		fmt.Fprintf(stderr, "enqueue get: no record for %s transaction_id %s (never submitted for this app, rejected, or expired)\n",
			ref.Method, ref.TransactionID)
		return exitFailed
	}
	if err != nil {
		fmt.Fprintf(stderr, "enqueue get: %v\n", err)
		return exitFailed
	}
	if err := writeRecord(stdout, rec); err != nil {
		fmt.Fprintf(stderr, "enqueue get: write output: %v\n", err)
		return exitFailed
	}
	return exitOK
}
