package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// ParseRedisURL reads REDIS_URL: redis://[user:password@]host[:port][/db],
// rediss:// for TLS, redis-sentinel://[user:password@]host1[:port][,hostN[:port]][/db]?master=NAME,
// or redis-cluster://[user:password@]host1[:port][,hostN[:port]][?tls=true]
// (a Redis Cluster: no database number; the hosts are seeds, the client
// finds the other nodes). Errors never quote the URL, which may hold a
// password.
func ParseRedisURL(raw string) (asynq.RedisConnOpt, error) {
	raw, hosts := splitHosts(raw)
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("config: REDIS_URL is not a URL")
	}
	if hosts != "" {
		u.Host = hosts
	}
	var user, pass string
	if u.User != nil {
		user = u.User.Username()
		pass, _ = u.User.Password()
	}
	db := 0
	if p := strings.Trim(u.Path, "/"); p != "" {
		if db, err = strconv.Atoi(p); err != nil || db < 0 {
			return nil, errors.New("config: REDIS_URL: the path must be a database number such as /0")
		}
	}
	if n := u.Query().Get("db"); n != "" {
		if db, err = strconv.Atoi(n); err != nil || db < 0 {
			return nil, errors.New("config: REDIS_URL: db must be a database number")
		}
	}
	switch u.Scheme {
	case "redis", "rediss":
		if u.Host == "" {
			return nil, errors.New("config: REDIS_URL has no host")
		}
		opt := asynq.RedisClientOpt{Addr: withPort(u.Host, "6379"), Username: user, Password: pass, DB: db}
		if u.Scheme == "rediss" {
			opt.TLSConfig = &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
		}
		return opt, nil
	case "redis-sentinel":
		master := u.Query().Get("master")
		if u.Host == "" || master == "" {
			return nil, errors.New("config: REDIS_URL: redis-sentinel:// needs hosts and ?master=NAME")
		}
		var addrs []string
		for _, h := range strings.Split(u.Host, ",") {
			addrs = append(addrs, withPort(h, "26379"))
		}
		return asynq.RedisFailoverClientOpt{MasterName: master, SentinelAddrs: addrs,
			Username: user, Password: pass, SentinelPassword: pass, DB: db}, nil
	case "redis-cluster":
		if u.Host == "" {
			return nil, errors.New("config: REDIS_URL: redis-cluster:// needs hosts")
		}
		if db != 0 {
			return nil, errors.New("config: REDIS_URL: a Redis Cluster has no database number: leave out /db")
		}
		var addrs []string
		for _, h := range strings.Split(u.Host, ",") {
			addrs = append(addrs, withPort(h, "6379"))
		}
		opt := asynq.RedisClusterClientOpt{Addrs: addrs, Username: user, Password: pass}
		switch t := u.Query().Get("tls"); t {
		case "", "false", "0":
		case "true", "1":
			host := strings.Split(u.Host, ",")[0]
			if i := strings.LastIndex(host, ":"); i > 0 && !strings.HasSuffix(host, "]") {
				host = host[:i]
			}
			opt.TLSConfig = &tls.Config{ServerName: strings.Trim(host, "[]"), MinVersion: tls.VersionTLS12}
		default:
			return nil, errors.New("config: REDIS_URL: tls must be true or false")
		}
		return opt, nil
	}
	return nil, fmt.Errorf("config: REDIS_URL: scheme %q: want redis, rediss, redis-sentinel or redis-cluster", u.Scheme)
}

// RedisClient opens a go-redis client for REDIS_URL, shared by zhimaq's
// stores and asynq.
func RedisClient(raw string) (redis.UniversalClient, error) {
	opt, err := ParseRedisURL(raw)
	if err != nil {
		return nil, err
	}
	if c, ok := opt.(asynq.RedisClusterClientOpt); ok {
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs, Username: c.Username, Password: c.Password,
			TLSConfig: c.TLSConfig, ClusterStateReloadInterval: clusterReload}), nil
	}
	return opt.MakeRedisClient().(redis.UniversalClient), nil
}

// clusterReload is how old a cluster client's map of slots to nodes may
// grow before it reads it again. go-redis's 60 s would keep a client
// sending a dead master's slots to it for up to a minute after a replica
// took them over; the cost is one CLUSTER SLOTS a second per busy client.
const clusterReload = time.Second

// splitHosts takes the comma-separated hosts out of a sentinel or cluster
// URL, which url.Parse refuses when a host but the last has a port: it
// returns the URL with one placeholder host, and the hosts ("" for any
// other URL).
func splitHosts(raw string) (string, string) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok || !strings.Contains(rest, ",") {
		return raw, ""
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	auth := strings.LastIndex(rest[:end], "@") + 1
	hosts := rest[auth:end]
	return scheme + "://" + rest[:auth] + "hosts" + rest[end:], hosts
}

// withPort adds port to a host that names none.
func withPort(host, port string) string {
	if strings.Contains(host, ":") && !strings.HasSuffix(host, "]") {
		return host
	}
	return host + ":" + port
}
