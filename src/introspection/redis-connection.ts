/**
 * One way to reach the configured Redis, whatever its shape: a single server
 * (url), a Sentinel-managed master, or a Cluster. Every user of Redis (the
 * shared cache tier, the DPoP replay records) connects through here, so each
 * follows a failover the same way.
 */
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';

export interface RedisTarget {
  /** redis:// or rediss:// (TLS): a single Redis. One of url, sentinel and cluster. */
  url?: string | null;
  /** A Sentinel-managed master: the sentinels to ask, and the master's name. */
  sentinel?: { nodes: ReadonlyArray<{ host: string; port: number }>; masterName: string } | null;
  /** A Redis Cluster: seed nodes (the rest is discovered). */
  cluster?: { nodes: ReadonlyArray<{ host: string; port: number }> } | null;
  username?: string | null;
  password?: string | null;
}

/** A connection (or, for a Cluster, a set of them) with `extra` on top of the shared reconnect rules. */
export function connectRedis(target: RedisTarget, extra: RedisOptions): Redis | Cluster {
  const common: RedisOptions = {
    username: target.username ?? undefined,
    password: target.password ?? undefined,
    connectTimeout: 1000,
    // Reconnect for ever, at most once a second: the service works meanwhile, only without Redis.
    retryStrategy: (times) => Math.min(times * 50, 1000),
    lazyConnect: false,
  };
  if (target.cluster) {
    const { enableOfflineQueue, ...node } = { ...common, ...extra };
    const cluster: ClusterOptions = {
      redisOptions: node,
      enableOfflineQueue: enableOfflineQueue ?? true,
      clusterRetryStrategy: (times) => Math.min(times * 50, 1000),
      // Slots move on a failover: follow the redirection at once rather than fail the command.
      retryDelayOnMoved: 0,
    };
    return new Cluster(target.cluster.nodes.map(({ host, port }) => ({ host, port })), cluster);
  }
  if (target.sentinel) {
    return new Redis({
      ...common,
      ...extra,
      sentinels: target.sentinel.nodes.map(({ host, port }) => ({ host, port })),
      name: target.sentinel.masterName,
      sentinelRetryStrategy: (times) => Math.min(times * 50, 1000),
    });
  }
  if (!target.url) throw new TypeError('one of url, sentinel and cluster is required');
  return new Redis(target.url, { ...common, ...extra });
}
