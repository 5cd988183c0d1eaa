/**
 * The shared (L2) cache tier in Redis, and the channel on which replicas tell
 * each other of admin evictions.
 *
 * Redis is never on the critical path for correctness: every lookup is bounded
 * by a short timeout and guarded by a circuit breaker, and any failure reads as
 * a miss, so the Check goes on to the endpoint exactly as without this tier.
 * Writes and evictions are sent without waiting.
 *
 * Entries are sealed (sealed-entry.ts) under keys derived from the deployment
 * secret, so writing Redis is not enough to make one. An entry written before
 * an eviction this replica knows of (its own, or one heard on the channel) is
 * refused (eviction-journal.ts), so writing an old value back does not undo
 * the eviction.
 */
import { Cluster, type Redis, type RedisOptions } from 'ioredis';
import { connectRedis, type RedisTarget } from './redis-connection.js';
import { CircuitBreaker } from './circuit-breaker.js';
import type { Clock } from './endpoint-client.js';
import type { SharedCache } from './introspector.js';
import { EvictionJournal } from './eviction-journal.js';
import { open, seal, sharedKey, sharedKeys, type SharedEntry, type SharedKeys } from './sealed-entry.js';

/** `refused`: a value was there but is not used: it does not open (forged, altered, another secret or version) or predates an eviction. */
export type SharedLookup = 'hit' | 'miss' | 'refused' | 'error' | 'skipped';
export type SharedOperation = 'get' | 'set' | 'evict' | 'subscribe';

/** Where Redis is (see RedisTarget: url, or the Sentinels' master, or a Cluster; Sentinels are asked without credentials). */
export interface RedisCacheOptions extends RedisTarget {
  /** Deployment secret the keys of store names, entries and endpoint fingerprints derive from (>= 32 bytes). */
  keySecret: string;
  /**
   * Milliseconds an entry may live after it was written (the longest
   * in-process lifetime: max of validatedTokenTTL and negativeTTL): entries
   * are cut to it, and evictions are remembered that long.
   */
  retention: number;
  /** Most evicted keys remembered one by one (default 100 000); beyond, older evictions widen into an evict-all. */
  journalKeys?: number;
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
/**
 * Milliseconds the clocks of replicas may differ by: an entry is refused when
 * written up to this long after an eviction, since its writer's clock may run
 * ahead. Replicas with clocks further apart (no NTP) may accept an entry
 * written just before an eviction.
 */
export const CLOCK_SKEW_MS = 2000;
const KEY = /^[0-9a-f]{64}$/;
/** Keys per DEL and per eviction message: bounded commands and messages however many keys are deferred. */
const PUBLISH_BATCH = 1000;
/** Milliseconds between two tries of deferred evictions while Redis fails them (besides each reconnection). */
const RESEND_INTERVAL_MS = 1000;

export class RedisSharedCache implements SharedCache {
  readonly #client: Redis | Cluster;
  readonly #subscriber: Redis | Cluster;
  readonly #keys: SharedKeys;
  readonly #retention: number;
  readonly #journal: EvictionJournal;
  readonly #prefix: string;
  readonly #channel: string;
  readonly #timeout: number;
  readonly #breaker: CircuitBreaker;
  readonly #clock: Clock;
  readonly #onLookup: RedisCacheOptions['onLookup'];
  readonly #onError: RedisCacheOptions['onError'];
  /** A Redis Cluster: no command may name keys of two hash slots. */
  readonly #cluster: boolean;
  #listener: EvictionListener | undefined;
  #subscribed = false;
  #closed = false;
  readonly #journalKeys: number;
  /** Keys whose eviction Redis did not take (delete or publish failed): sent again until it does. */
  readonly #pending = new Set<string>();
  #pendingAll = false;
  #resending = false;
  #retry: NodeJS.Timeout | undefined;

  constructor(options: RedisCacheOptions) {
    this.#keys = sharedKeys(options.keySecret);
    this.#retention = options.retention;
    this.#journalKeys = options.journalKeys ?? 100_000;
    this.#journal = new EvictionJournal({ retention: options.retention, skew: CLOCK_SKEW_MS, maxKeys: this.#journalKeys });
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
    const connect = (extra: RedisOptions): Redis | Cluster => connectRedis(options, extra);
    this.#cluster = options.cluster ? true : false;
    this.#client = connect({
      // Fail at once while disconnected instead of queueing: a queued lookup is a delayed Check.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: options.timeout,
    });
    this.#subscriber = connect({ autoResubscribe: false, maxRetriesPerRequest: null });
    this.#client.on('error', () => {});
    // Back after an outage: the evictions it missed go out first thing.
    this.#client.on('ready', () => void this.#resend());
    this.#subscriber.on('error', () => {});
    this.#subscriber.on('ready', () => {
      this.#subscribe().catch((error: Error) => this.#onError?.('subscribe', error));
    });
    this.#subscriber.on('message', (_channel: string, message: string) => this.#message(message));
    if (this.#subscriber instanceof Cluster) {
      // A Cluster moves its subscription to another node by itself when one fails, with no new
      // 'ready': what was published meanwhile is lost. Any node lost counts as a subscription lost.
      this.#subscriber.on('-node', () => this.#missedEvictions());
      this.#subscriber.on('node error', () => this.#missedEvictions());
    }
  }

  /** Where other replicas' evictions go. */
  listen(listener: EvictionListener): void {
    this.#listener = listener;
  }

  key(cacheId: string, token: string): string {
    return sharedKey(this.#keys, cacheId, token);
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
    // A value that does not open (another token's, altered, another version's, forged) is refused;
    // so is one written before an eviction (replayed, or filled by a call that began before it).
    const entry = value === null ? undefined : open(value, this.#keys, cacheId, token, name);
    const usable = entry !== undefined && this.#journal.admits(key, entry.writtenAt) ? this.#bounded(entry) : undefined;
    const live = usable !== undefined && usable.expiresAt > this.#clock.now() ? usable : undefined;
    const result = live ? 'hit' : value !== null && usable === undefined ? 'refused' : 'miss';
    this.#onLookup?.(result, (performance.now() - started) / 1000);
    return live;
  }

  set(key: string, cacheId: string, token: string, written: SharedEntry): void {
    const entry = this.#bounded(written);
    const ttl = Math.ceil(entry.expiresAt - this.#clock.now());
    if (ttl <= 0 || this.#breaker.state === 'open') return;
    const name = this.#prefix + key;
    let value: Buffer;
    try {
      value = seal(entry, this.#keys, cacheId, token, name);
    } catch (error) {
      // Claims JSON cannot encode (too deep for JSON.stringify, say): counted, and the answer is just not shared.
      this.#onError?.('set', error as Error);
      return;
    }
    void this.#settled('set', this.#client.set(name, value, 'PX', ttl));
  }

  /**
   * Remember the eviction here (the journal is this replica's tombstone: it
   * refuses older entries whatever Redis holds), then, when `announce`,
   * delete the entries and tell every replica. Resolves with whether Redis
   * took both; when not, the eviction is kept and sent again once Redis
   * answers. Never rejects.
   */
  evict(keys: readonly string[], announce = true): Promise<boolean> {
    if (keys.length === 0) return Promise.resolve(true);
    this.#journal.evicted(keys, this.#clock.now());
    if (!announce) return Promise.resolve(true);
    return this.#announce(keys).then((done) => {
      if (!done) this.#defer(keys);
      return done;
    });
  }

  /** Like evict, for every entry. */
  evictAll(announce = true): Promise<boolean> {
    this.#journal.evictedAll(this.#clock.now());
    if (!announce) return Promise.resolve(true);
    const covered = [...this.#pending];
    return this.#announceAll().then((done) => {
      if (done) for (const key of covered) this.#pending.delete(key);
      else this.#deferAll();
      return done;
    });
  }

  /** Evictions Redis has not taken yet (keys one by one, and whether an eviction of all is among them). */
  get pendingEvictions(): { keys: number; all: boolean } {
    return { keys: this.#pending.size, all: this.#pendingAll };
  }

  /** Not behind the breaker: an eviction is worth a try even while lookups are skipped. */
  async #announce(keys: readonly string[]): Promise<boolean> {
    for (let i = 0; i < keys.length; i += PUBLISH_BATCH) {
      const batch = keys.slice(i, i + PUBLISH_BATCH);
      // Deleted before it is published, so no replica refills its in-process tier from the old entry.
      if (!(await this.#attempt('evict', this.#delete(batch.map((key) => this.#prefix + key))))) return false;
      if (!(await this.#attempt('evict', this.#client.publish(this.#channel, batch.join(','))))) return false;
    }
    return true;
  }

  async #announceAll(): Promise<boolean> {
    return (await this.#attempt('evict', this.#deleteAll())) && this.#attempt('evict', this.#client.publish(this.#channel, ALL));
  }

  #defer(keys: readonly string[]): void {
    if (this.#pendingAll) return;
    for (const key of keys) this.#pending.add(key);
    // Beyond what the journal holds one by one, an eviction of all says the same, more widely.
    if (this.#pending.size > this.#journalKeys) this.#deferAll();
    this.#scheduleRetry();
  }

  #deferAll(): void {
    this.#pendingAll = true;
    this.#pending.clear();
    this.#scheduleRetry();
  }

  #scheduleRetry(): void {
    if (this.#retry !== undefined || this.#closed) return;
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      void this.#resend();
    }, RESEND_INTERVAL_MS);
    this.#retry.unref();
  }

  /** Send the deferred evictions again (Redis is back, or the retry timer fired); what still fails stays deferred. */
  async #resend(): Promise<void> {
    if (this.#resending || this.#closed || (!this.#pendingAll && this.#pending.size === 0)) return;
    this.#resending = true;
    try {
      if (this.#pendingAll) {
        this.#pendingAll = false;
        const covered = [...this.#pending];
        if (await this.#announceAll()) for (const key of covered) this.#pending.delete(key);
        else this.#deferAll();
        return;
      }
      const keys = [...this.#pending];
      this.#pending.clear();
      if (!(await this.#announce(keys))) this.#defer(keys);
    } catch (error) {
      // Started without waiting (a timer, a reconnection): it must never reject. What failed is sent again.
      this.#deferAll();
      try {
        this.#onError?.('evict', error as Error);
      } catch {
        // A failure listener that throws changes nothing.
      }
    } finally {
      this.#resending = false;
      if (this.#pendingAll || this.#pending.size > 0) this.#scheduleRetry();
    }
  }

  /** One DEL, or in a Cluster one per key: the keys of a token at several endpoints lie in different slots. */
  async #delete(names: string[]): Promise<void> {
    if (!this.#cluster) {
      await this.#client.del(...names);
      return;
    }
    await Promise.all(names.map((name) => this.#client.del(name)));
  }

  /** Every key under the prefix, by SCAN (at each master of a Cluster): never a KEYS that would stall a shared Redis. */
  async #deleteAll(): Promise<void> {
    const nodes = this.#client instanceof Cluster ? this.#client.nodes('master') : [this.#client];
    if (nodes.length === 0) throw new Error('no Redis Cluster master known');
    for (const node of nodes) await this.#deleteAllAt(node);
  }

  async #deleteAllAt(node: Redis): Promise<void> {
    let cursor = '0';
    // Bounded: a million rounds of up to 1000 keys.
    for (let round = 0; round < 1_000_000; round++) {
      const [next, names] = await node.scan(cursor, 'MATCH', `${escapeGlob(this.#prefix)}*`, 'COUNT', 1000);
      const entries = names.filter((name) => KEY.test(name.slice(this.#prefix.length)));
      if (entries.length > 0) {
        if (this.#cluster) await Promise.all(entries.map((name) => node.unlink(name)));
        else await node.unlink(...entries);
      }
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
    clearTimeout(this.#retry);
    this.#client.disconnect();
    this.#subscriber.disconnect();
  }

  /** Resolves once the command is done, whatever became of it: a failure is only reported, never a rejection left unhandled. */
  #settled(operation: SharedOperation, command: Promise<unknown>): Promise<void> {
    return this.#attempt(operation, command).then(() => undefined);
  }

  /** Whether the command succeeded; a failure is reported, never left as a rejection. */
  #attempt(operation: SharedOperation, command: Promise<unknown>): Promise<boolean> {
    return command.then(
      () => true,
      (error: Error) => {
        try {
          this.#onError?.(operation, error);
        } catch {
          // A listener that throws must not turn a best-effort command into an unhandled rejection.
        }
        return false;
      },
    );
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
    if (this.#subscribed) this.#missedEvictions();
    this.#subscribed = true;
  }

  /**
   * Evictions published while the subscription was down were missed: the whole local tier may be
   * stale, and so may every shared entry written until now.
   */
  #missedEvictions(): void {
    if (this.#closed || !this.#subscribed) return;
    this.#journal.evictedAll(this.#clock.now());
    this.#listener?.clear();
  }

  #message(message: string): void {
    // Journalled at receipt, by our clock: never earlier than the eviction itself.
    if (message === ALL) {
      this.#journal.evictedAll(this.#clock.now());
      this.#listener?.clear();
      return;
    }
    const keys = message.split(',').filter((key) => KEY.test(key));
    if (keys.length === 0) return;
    this.#journal.evicted(keys, this.#clock.now());
    this.#listener?.evict(keys);
  }

  /** The entry, living no longer after it was written than the journal remembers evictions. */
  #bounded(entry: SharedEntry): SharedEntry {
    const limit = entry.writtenAt + this.#retention;
    return entry.expiresAt <= limit ? entry : { ...entry, expiresAt: limit };
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
