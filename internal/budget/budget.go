// Package budget holds each app to a daily budget of billed gateway calls
// per method, counted per Beijing calendar day (UTC+8, whatever the host's
// zone) in Redis and shared by every worker process of the app.
//
// The worker reserves a unit before each gateway call and refunds it when
// the call turned out not billed. A reservation is one Lua script that
// reads the day's counter and refuses at the limit or increments it, so
// racing reservers never take more than the limit between them. The day
// comes from the caller's clock, not Redis's: a key is named by its day
// (keyspace.Budget) and expires a little more than a day after that day
// ends, so late refunds and status reads still find it.
package budget

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq/internal/keyspace"
	"github.com/zhimaq/zhimaq/internal/zhima"
)

// keepAfterDay is how long a day's key outlives the day.
const keepAfterDay = 25 * time.Hour

// Budget counts one app's billed calls per method per Beijing day. A nil
// *Budget allows everything.
type Budget struct {
	rdb    redis.UniversalClient
	keys   keyspace.Space
	appID  string
	limits map[string]int // positive entries only
}

// New returns the budget of appID with limits per method (method → calls a
// day; a method absent or with limit 0 or less has no budget). It is nil
// when limits has no positive entry. Keys are keyspace.New(prefix).Budget.
func New(rdb redis.UniversalClient, prefix, appID string, limits map[string]int) *Budget {
	pos := make(map[string]int)
	for m, n := range limits {
		if n > 0 {
			pos[m] = n
		}
	}
	if len(pos) == 0 {
		return nil
	}
	return &Budget{rdb: rdb, keys: keyspace.New(prefix), appID: appID, limits: pos}
}

// Reservation is what Reserve did.
type Reservation struct {
	Method  string    // the method reserved for
	Granted bool      // false: the day's budget is spent; nothing was taken
	Day     string    // "20261206", the Beijing day the unit was taken from (or refused on)
	Used    int       // units taken that day, this one included when granted
	Limit   int       // the day's limit; 0 = no budget for this method (Granted true, nothing stored, no Redis call)
	Resumes time.Time // when refused: the next Beijing midnight, when the budget renews
}

// Reserve takes one unit of method's budget for the Beijing day of now, in
// one Redis round trip (two when Redis must first be sent the script).
// Redis errors are returned wrapped, with Granted false; the unit may then
// have been taken or not.
func (b *Budget) Reserve(ctx context.Context, method string, now time.Time) (Reservation, error) {
	r := Reservation{Method: method, Day: Day(now), Granted: true}
	if b == nil || b.limits[method] == 0 {
		return r, nil
	}
	r.Limit = b.limits[method]
	next := NextDay(now)
	ttl := next.Sub(now) + keepAfterDay
	res, err := reserve.Run(ctx, b.rdb, []string{b.keys.Budget(b.appID, method, r.Day)}, r.Limit, ttl.Milliseconds()).Int64Slice()
	if err != nil {
		return Reservation{Method: method, Day: r.Day, Limit: r.Limit}, fmt.Errorf("budget: reserve %s: %w", method, err)
	}
	if len(res) != 2 {
		return Reservation{Method: method, Day: r.Day, Limit: r.Limit}, fmt.Errorf("budget: reserve %s: script returned %v", method, res)
	}
	r.Granted, r.Used = res[0] == 1, int(res[1])
	if !r.Granted {
		r.Resumes = next
	}
	return r, nil
}

// Refund gives back a unit r took, on r's day even when that day is over
// (harmless: nothing reads a past day's count but status). The count never
// goes below 0, and a key that has expired is not recreated. It does
// nothing for an ungranted or unlimited reservation, or a nil b. r must
// come from b's Reserve.
func (b *Budget) Refund(ctx context.Context, r Reservation) error {
	if b == nil || !r.Granted || r.Limit == 0 {
		return nil
	}
	if _, err := refund.Run(ctx, b.rdb, []string{b.keys.Budget(b.appID, r.Method, r.Day)}).Int64Slice(); err != nil {
		return fmt.Errorf("budget: refund %s: %w", r.Method, err)
	}
	return nil
}

// Used reports units taken for method on now's Beijing day; 0, without a
// Redis call, for a method without a budget.
func (b *Budget) Used(ctx context.Context, method string, now time.Time) (int, error) {
	if b == nil || b.limits[method] == 0 {
		return 0, nil
	}
	n, err := b.rdb.Get(ctx, b.keys.Budget(b.appID, method, Day(now))).Int()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("budget: used %s: %w", method, err)
	}
	return n, nil
}

// Limits returns a copy of the limits (method → calls a day), positive
// entries only; nil for a nil b.
func (b *Budget) Limits() map[string]int {
	if b == nil {
		return nil
	}
	return maps.Clone(b.limits)
}

// Day is t's Beijing calendar day as yyyymmdd.
func Day(t time.Time) string { return t.In(zhima.Beijing).Format("20060102") }

// NextDay is the Beijing midnight after t (t itself excluded: the midnight
// after 00:00 is the next one).
func NextDay(t time.Time) time.Time {
	y, m, d := t.In(zhima.Beijing).Date()
	return time.Date(y, m, d+1, 0, 0, 0, 0, zhima.Beijing)
}

// reserve takes a unit unless the day's count is at the limit.
//
// KEYS[1]  the day's key (keyspace.Budget)
// ARGV[1]  the limit
// ARGV[2]  the key's expiry, ms from now
//
// It returns {1, count} when it took the unit (count includes it), or
// {0, count} when it refused and stored nothing. A value that is not a
// number is an error, never reset: resetting would grant a spent day anew.
var reserve = redis.NewScript(`
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local v = redis.call('GET', key)
local used = 0
if v then
  used = tonumber(v)
  if not used then
    return redis.error_reply('ERR budget counter ' .. key .. ' is not a number')
  end
end
if used >= limit then
  return {0, used}
end
used = redis.call('INCR', key)
redis.call('PEXPIRE', key, ARGV[2])
return {1, used}
`)

// refund gives back a unit unless the count is 0 or the key is gone.
//
// KEYS[1]  the day's key (keyspace.Budget)
//
// It returns {count} after the refund. The key keeps its expiry.
var refund = redis.NewScript(`
local key = KEYS[1]
local used = tonumber(redis.call('GET', key))
if used and used > 0 then
  return {redis.call('DECR', key)}
end
return {used or 0}
`)
