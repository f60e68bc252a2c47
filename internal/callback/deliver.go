package callback

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"github.com/zhimaq/zhimaq/internal/batches"
	"github.com/zhimaq/zhimaq/internal/hosts"
	"github.com/zhimaq/zhimaq/internal/seal"
)

// callbackAAD binds a sealed callback URL to its batch, so that it does not
// open in another batch's callback.
func urlAAD(batchID string) []byte { return []byte("zhimaq batch callback\x00" + batchID) }

// SealCallbackURL returns callbackURL as batch batchID keeps it in Redis:
// sealed under keys' sealing key and bound to the batch (a callback URL
// often carries a token), or as it is when keys is plaintext or the URL is
// "". The Deliverer opens it with its Keys.
func SealURL(keys *seal.Keyring, batchID, callbackURL string) (string, error) {
	if callbackURL == "" || keys.Plaintext() {
		return callbackURL, nil
	}
	s, err := keys.Seal([]byte(callbackURL), urlAAD(batchID))
	if err != nil {
		return "", fmt.Errorf("callback: seal the URL: %w", err)
	}
	return s, nil
}

// openCallbackURL reverses SealCallbackURL; a URL in clear (a plaintext
// keyring, or a batch from before URLs were sealed) comes back as it is.
// Errors wrap seal.ErrUnknownKey or seal.ErrCorrupt and quote nothing of
// the URL.
func openURL(keys *seal.Keyring, batchID, stored string) (string, error) {
	if !seal.IsSealed(stored) {
		return stored, nil
	}
	b, err := keys.Open(stored, urlAAD(batchID))
	if err != nil {
		return "", fmt.Errorf("callback: open the URL: %w", err)
	}
	return string(b), nil
}

// CallbackTaskType is the asynq task type that delivers a callback.
const TaskType = "zhimaq:batch_callback"

// CallbackMaxRetry bounds the deliveries of one callback after the first:
// with RETRY_BASE_DELAY 2s and RETRY_MAX_DELAY 10m, about three hours.
const MaxRetry = 20

// callbackPayload is what a callback task carries. URL is the batch's
// callback URL as its metadata holds it: sealed (SealCallbackURL), or in
// clear.
type callbackPayload struct {
	BatchID string          `json:"batch_id"`
	URL     string          `json:"url"`
	Body    json.RawMessage `json:"body"`
}

// CallbackTask returns the task that POSTs summary to callbackURL, the URL
// as the batch's metadata holds it (sealed or in clear: the Deliverer opens
// it). Its task id is derived from the batch, so a batch's callback is
// enqueued once, and it is kept for retention after it is done to hold
// that id.
func Task(callbackURL string, summary Summary, queue string, retention time.Duration) (*asynq.Task, error) {
	body, err := json.Marshal(summary)
	if err != nil {
		return nil, fmt.Errorf("callback: task: %w", err)
	}
	b, err := json.Marshal(callbackPayload{BatchID: summary.BatchID, URL: callbackURL, Body: body})
	if err != nil {
		return nil, fmt.Errorf("callback: task: %w", err)
	}
	return asynq.NewTask(TaskType, b, asynq.TaskID(TaskType+":"+summary.BatchID), asynq.Queue(queue),
		asynq.MaxRetry(MaxRetry), asynq.Retention(retention), asynq.Timeout(time.Minute)), nil
}

// Deliverer is the asynq handler of callback tasks: it opens the callback
// URL, checks it, POSTs the summary, signed, and returns an error (so asynq
// tries again with backoff) on a network error or an answer other than
// 2xx. A task it can never deliver (unreadable, a host not allowed, an
// internal address) ends with asynq.SkipRetry.
//
// Where a callback may go: the host must be one Hosts allows, and the
// default client connects to public addresses only, checked on the address
// actually dialled (after DNS), unless an exact entry of Hosts, a name or
// an IP address, names the URL's host: that is how an operator opts in to
// an internal receiver. A wildcard entry never opens internal addresses.
// Callbacks never go through an HTTP proxy (HTTP_PROXY is ignored) and
// never follow redirects.
//
// No log line or error of it holds the URL's path or query; logs show the
// host.
type Deliverer struct {
	// Hosts are the hosts callbacks may go to (CALLBACK_HOSTS); a task
	// for any other is dropped unsent. nil allows every host with a
	// public address.
	Hosts hosts.List
	// Keys open the callback URLs that producers sealed (DATA_KEYS). A URL
	// sealed with a key this worker lacks (or any sealed URL, when Keys is
	// nil or plaintext) is not sent: the task goes back to the queue for a
	// worker that holds the key. URLs in clear need no key.
	Keys *seal.Keyring
	// Secret signs the callbacks (CALLBACK_SECRET). Without one a task is
	// not sent: the worker logs an error and hands the task back, for a
	// worker that holds the secret.
	Secret []byte
	// Client, when set, sends the callbacks in place of the default one,
	// and with it goes the dial-time check of the address: it is for
	// tests. The default has a 10s timeout, uses no proxy and follows no
	// redirects (a 3xx answer counts as a failure).
	Client *http.Client
	// Log defaults to a no-op logger.
	Log *zap.Logger
	// Now is the clock of the signatures; default time.Now.
	Now func() time.Time

	// resolver, when set, resolves the names the default client dials (tests).
	resolver *net.Resolver
}

// ErrNoSecret is returned for a callback task on a worker without CALLBACK_SECRET.
var ErrNoSecret = errors.New("callback: not sent: CALLBACK_SECRET is not set on this worker")

// ProcessTask implements asynq.Handler.
func (d *Deliverer) ProcessTask(ctx context.Context, t *asynq.Task) error {
	log := d.Log
	if log == nil {
		log = zap.NewNop()
	}
	var p callbackPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil || !batches.ValidID(p.BatchID) || p.URL == "" || len(p.Body) == 0 {
		log.Error("batch callback task cannot be read; dropping it")
		return fmt.Errorf("callback:: bad task payload: %w", asynq.SkipRetry)
	}
	log = log.With(zap.String("batch_id", p.BatchID))
	callbackURL, err := openURL(d.Keys, p.BatchID, p.URL)
	switch {
	case errors.Is(err, seal.ErrUnknownKey):
		// Another worker may hold the key (a rotation under way): try again later.
		log.Error("batch callback URL sealed with a data key this worker lacks; add it to DATA_KEYS", zap.Error(err))
		return fmt.Errorf("callback: %s: %w", p.BatchID, err)
	case err != nil:
		log.Error("batch callback URL cannot be opened; dropping it", zap.Error(err))
		return fmt.Errorf("callback: %s: %w: %w", p.BatchID, err, asynq.SkipRetry)
	}
	tgt, err := hosts.ParseTarget(callbackURL)
	if err != nil {
		log.Error("batch callback URL is not one a callback may go to; dropping it", zap.String("reason", err.Error()))
		return fmt.Errorf("callback: %s: bad URL: %w: %w", p.BatchID, err, asynq.SkipRetry)
	}
	log = log.With(zap.String("callback_host", net.JoinHostPort(tgt.Host, tgt.Port)))
	listed, err := d.Hosts.Check(tgt)
	if err != nil {
		log.Error("batch callback not sent: its host is not allowed; dropping it", zap.String("reason", err.Error()))
		return fmt.Errorf("callback: %s: %w: %w", p.BatchID, err, asynq.SkipRetry)
	}
	if len(d.Secret) == 0 {
		log.Error("batch callback not sent: set CALLBACK_SECRET on the workers; the task goes back to the queue")
		return ErrNoSecret
	}
	now := time.Now
	if d.Now != nil {
		now = d.Now
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, callbackURL, bytes.NewReader(p.Body))
	if err != nil {
		return fmt.Errorf("callback: %s: %w", p.BatchID, asynq.SkipRetry)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "zhimaq-callback/1")
	req.Header.Set(SignatureHeader, Sign(d.Secret, now(), p.Body))
	client := d.Client
	if client == nil {
		client = hosts.NewClient(!listed, d.resolver)
		defer client.CloseIdleConnections()
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL may hold a token: never in logs
		}
		if errors.Is(err, hosts.ErrNonPublic) {
			log.Error("batch callback not sent: its host has an address that is not public; list the host in CALLBACK_HOSTS to allow it; dropping it", zap.Error(err))
			return fmt.Errorf("callback: %s: %w: %w", p.BatchID, err, asynq.SkipRetry)
		}
		log.Warn("batch callback failed; will retry", zap.Error(err))
		return fmt.Errorf("callback: %s: %w", p.BatchID, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		log.Warn("batch callback refused; will retry", zap.Int("status", resp.StatusCode))
		return fmt.Errorf("callback: %s: HTTP %d", p.BatchID, resp.StatusCode)
	}
	log.Info("batch callback delivered", zap.Int("status", resp.StatusCode))
	return nil
}
