/**
 * The shared (L2) cache tier in Redis, and the channel on which replicas tell
 * each other of admin evictions.
 *
 * Redis is never on the critical path for correctness: every lookup is bounded
 * by a short timeout and guarded by a circuit breaker, and any failure reads as
 * a miss, so the Check goes on to the endpoint exactly as without this tier.
 * Writes and evictions are sent without waiting.
 */
import { Redis, type RedisOptions } from 'ioredis';
import { CircuitBreaker } from './circuit-breaker.js';
import type { Clock } from './endpoint-client.js';
import type { SharedCache } from './introspector.js';
import { open, seal, sharedKey, type SharedEntry } from './sealed-entry.js';

export type SharedLookup = 'hit' | 'miss' | 'error' | 'skipped';
export type SharedOperation = 'get' | 'set' | 'evict' | 'subscribe';

export interface RedisCacheOptions {
  /** redis:// or rediss:// (TLS). */
  url: string;
  username?: string | null;
  password?: string | null;
  /** Deployment secret keying the HMAC of store keys (>= 32 bytes). */
  keySecret: string;
  /** Prefix of every key and of the eviction channel. */
  keyPrefix: string;
  /** Milliseconds a lookup may take before it counts as a miss. */
  timeout: number;
  /** Consecutive failed lookups that open the circuit (default 5). */
  breakerFailures?: number;
  /** Milliseconds the circuit stays open before one probe (default 1000). */
  breakerResetTimeout?: number;
  clock?: Clock;
  /** Told of every lookup, with its duration in seconds. */
  onLookup?: (result: SharedLookup, seconds: number) => void;
  /** Told of every failed command. */
  onError?: (operation: SharedOperation, error: Error) => void;
}

/** What another replica asked to drop. */
export interface EvictionListener {
  /** Drop these keys. */
  evict(keys: readonly string[]): void;
  /** Drop everything: an eviction of all, or the subscription was lost and evictions may have been missed. */
  clear(): void;
}

const ALL = '*';
const KEY = /^[0-9a-f]{64}$/;

export class RedisSharedCache implements SharedCache {
  readonly #client: Redis;
  readonly #subscriber: Redis;
  readonly #secret: Buffer;
  readonly #prefix: string;
  readonly #channel: string;
  readonly #timeout: number;
  readonly #breaker: CircuitBreaker;
  readonly #clock: Clock;
  readonly #onLookup: RedisCacheOptions['onLookup'];
  readonly #onError: RedisCacheOptions['onError'];
  #listener: EvictionListener | undefined;
  #subscribed = false;
  #closed = false;

  constructor(options: RedisCacheOptions) {
    this.#secret = Buffer.from(options.keySecret, 'utf8');
    this.#prefix = options.keyPrefix;
    this.#channel = `${options.keyPrefix}evictions`;
    this.#timeout = options.timeout;
    this.#clock = options.clock ?? Date;
    this.#onLookup = options.onLookup;
    this.#onError = options.onError;
    this.#breaker = new CircuitBreaker({
      failures: options.breakerFailures ?? 5,
      resetTimeout: options.breakerResetTimeout ?? 1000,
      clock: this.#clock,
    });
    const common: RedisOptions = {
      username: options.username ?? undefined,
      password: options.password ?? undefined,
      connectTimeout: 1000,
      // Reconnect for ever, at most once a second: the service works meanwhile, only without this tier.
      retryStrategy: (times) => Math.min(times * 50, 1000),
      lazyConnect: false,
    };
    this.#client = new Redis(options.url, {
      ...common,
      // Fail at once while disconnected instead of queueing: a queued lookup is a delayed Check.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: options.timeout,
    });
    this.#subscriber = new Redis(options.url, { ...common, autoResubscribe: false, maxRetriesPerRequest: null });
    this.#client.on('error', () => {});
    this.#subscriber.on('error', () => {});
    this.#subscriber.on('ready', () => {
      this.#subscribe().catch((error: Error) => this.#onError?.('subscribe', error));
    });
    this.#subscriber.on('message', (_channel: string, message: string) => this.#message(message));
  }

  /** Where other replicas' evictions go. */
  listen(listener: EvictionListener): void {
    this.#listener = listener;
  }

  key(cacheId: string, token: string): string {
    return sharedKey(this.#secret, cacheId, token);
  }

  async get(key: string, cacheId: string, token: string): Promise<SharedEntry | undefined> {
    const permit = this.#breaker.admit();
    if (permit === null) {
      this.#onLookup?.('skipped', 0);
      return undefined;
    }
    const started = performance.now();
    const name = this.#prefix + key;
    let value: Buffer | null;
    try {
      value = await bounded(this.#client.getBuffer(name), this.#timeout);
    } catch (error) {
      this.#breaker.failed(permit);
      this.#onLookup?.('error', (performance.now() - started) / 1000);
      this.#onError?.('get', error as Error);
      return undefined;
    }
    this.#breaker.succeeded(permit);
    // A value that does not open (another token's, altered, another version's) is a miss.
    const entry = value === null ? undefined : open(value, cacheId, token, name);
    const live = entry !== undefined && entry.expiresAt > this.#clock.now() ? entry : undefined;
    this.#onLookup?.(live ? 'hit' : 'miss', (performance.now() - started) / 1000);
    return live;
  }

  set(key: string, cacheId: string, token: string, entry: SharedEntry): void {
    const ttl = Math.ceil(entry.expiresAt - this.#clock.now());
    if (ttl <= 0 || this.#breaker.state === 'open') return;
    const name = this.#prefix + key;
    let value: Buffer;
    try {
      value = seal(entry, cacheId, token, name);
    } catch (error) {
      // Claims JSON cannot encode (too deep for JSON.stringify, say): counted, and the answer is just not shared.
      this.#onError?.('set', error as Error);
      return;
    }
    this.#client.set(name, value, 'PX', ttl).catch((error: Error) => this.#onError?.('set', error));
  }

  evict(keys: readonly string[]): void {
    if (keys.length === 0) return;
    // Not behind the breaker: an eviction is worth a try even while lookups are skipped. Deleted
    // before it is published, so no replica refills its in-process tier from the old entry.
    void this.#client
      .del(...keys.map((key) => this.#prefix + key))
      .catch((error: Error) => this.#onError?.('evict', error))
      .finally(() => this.#publish(keys.join(',')));
  }

  evictAll(): void {
    void this.#deleteAll()
      .catch((error: Error) => this.#onError?.('evict', error))
      .finally(() => this.#publish(ALL));
  }

  /** Every key under the prefix, by SCAN: never a KEYS that would stall a shared Redis. */
  async #deleteAll(): Promise<void> {
    let cursor = '0';
    // Bounded: a million rounds of up to 1000 keys.
    for (let round = 0; round < 1_000_000; round++) {
      const [next, names] = await this.#client.scan(cursor, 'MATCH', `${escapeGlob(this.#prefix)}*`, 'COUNT', 1000);
      const entries = names.filter((name) => KEY.test(name.slice(this.#prefix.length)));
      if (entries.length > 0) await this.#client.unlink(...entries);
      cursor = next;
      if (cursor === '0') return;
    }
  }

  /** Whether both connections are up and the eviction channel subscribed. */
  get connected(): boolean {
    return this.#client.status === 'ready' && this.#subscribed && this.#subscriber.status === 'ready';
  }

  /** Whether lookups are currently skipped (the circuit is open). */
  get circuitState(): CircuitBreaker['state'] {
    return this.#breaker.state;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#client.disconnect();
    this.#subscriber.disconnect();
  }

  #publish(message: string): void {
    this.#client.publish(this.#channel, message).catch((error: Error) => this.#onError?.('evict', error));
  }

  async #subscribe(): Promise<void> {
    try {
      await this.#subscriber.subscribe(this.#channel);
    } catch (error) {
      this.#onError?.('subscribe', error as Error);
      // The connection went away again; its next 'ready' retries.
      return;
    }
    if (this.#closed) return;
    // Evictions published while the subscription was down were missed: the whole local tier may be stale.
    if (this.#subscribed) this.#listener?.clear();
    this.#subscribed = true;
  }

  #message(message: string): void {
    if (message === ALL) {
      this.#listener?.clear();
      return;
    }
    const keys = message.split(',').filter((key) => KEY.test(key));
    if (keys.length > 0) this.#listener?.evict(keys);
  }
}

function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

/** The promise, or a rejection once `ms` have passed, whichever comes first. */
function bounded<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer from Redis within ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
