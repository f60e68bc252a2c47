// Package certcache keeps the Alipay certificates a worker downloaded in
// Redis, so every worker of an app downloads a rotated certificate at most
// once and most never do. It only stores: the client checks whatever it
// reads against the root file, as it checks a download.
package certcache

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/zhimaq/zhimaq/internal/keyspace"
)

// TTL is how long a certificate stays after its last Put. Alipay's
// certificates live for years; a worker that finds one gone downloads it
// again.
const TTL = 30 * 24 * time.Hour

// maxBytes bounds what Get reads: an Alipay certificate file is a few KB.
const maxBytes = 64 << 10

// snPattern is the form of an SN: hex MD5. Anything else is never a key.
var snPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// Cache is an app's certificates in Redis; it implements zhima.CertCache.
type Cache struct {
	rdb   redis.UniversalClient
	keys  keyspace.Space
	appID string
}

// New returns the cache of appID's certificates under prefix.
func New(rdb redis.UniversalClient, prefix, appID string) *Cache {
	return &Cache{rdb: rdb, keys: keyspace.New(prefix), appID: appID}
}

// Get returns the certificate file kept under sn, or nil when none is.
func (c *Cache) Get(ctx context.Context, sn string) ([]byte, error) {
	if !snPattern.MatchString(sn) {
		return nil, nil
	}
	key := c.keys.AlipayCert(c.appID, sn)
	n, err := c.rdb.StrLen(ctx, key).Result()
	if err != nil || n == 0 {
		return nil, err
	}
	if n > maxBytes {
		return nil, fmt.Errorf("certcache: %s holds %d bytes, more than a certificate file", key, n)
	}
	b, err := c.rdb.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	return b, err
}

// Put keeps a checked certificate file under sn.
func (c *Cache) Put(ctx context.Context, sn string, pemFile []byte) error {
	if !snPattern.MatchString(sn) {
		return fmt.Errorf("certcache: %q is not an SN", sn)
	}
	return c.rdb.Set(ctx, c.keys.AlipayCert(c.appID, sn), pemFile, TTL).Err()
}
