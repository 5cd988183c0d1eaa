/**
 * Cache of introspection answers. It holds what the endpoint said, never a
 * decision: each Check evaluates its own policy on the cached claims.
 *
 * Active answers and inactive ones live in two separate LRUs: a flood of
 * random or revoked tokens fills only the small negative one, and can never
 * push a valid token's answer out.
 */
import { hash } from 'node:crypto';
import type { Claims } from './result.js';
import type { Clock } from './endpoint-client.js';
import { Lru } from './lru.js';

export interface CacheEntry {
  readonly claims: Claims;
  /** Epoch ms after which the entry must not be used. */
  readonly expiresAt: number;
  /** The token's own expiry (exp, epoch ms), if the answer gave one. */
  readonly tokenExpiresAt: number | null;
  /** Cache identity of the endpoint that answered (see Endpoint.cacheId). */
  readonly endpoint: string;
  /** The client id the endpoint was asked with, when it came from a request header (clientIdHeader). */
  readonly clientId: string | null;
}

interface NegativeEntry {
  readonly expiresAt: number;
  readonly endpoint: string;
  readonly clientId: string | null;
}

export interface CacheOptions {
  /** Upper bound on active answers held (MuleSoft: maxCacheEntries); 0 disables caching them. */
  maxEntries: number;
  /** Seconds an active answer is reused at most (MuleSoft: validatedTokenTTL); 0 disables caching them. */
  ttlSeconds: number;
  /** Upper bound on inactive answers held; 0 disables negative caching. */
  maxNegativeEntries?: number;
  /** Seconds an inactive answer is reused; 0 (the default here) disables negative caching. */
  negativeTtlSeconds?: number;
  clock?: Clock;
  /** Called for each active answer pushed out by the size bound. */
  onEviction?: () => void;
}

/**
 * Key of a token at an endpoint: SHA-256 over both, so the raw token is never
 * held as a key and one endpoint's answer never serves another endpoint.
 */
export function cacheKey(endpoint: string, token: string): string {
  // One-shot hash: no Hash object per Check.
  return hash('sha256', `${endpoint}\0${token}`, 'binary');
}

/** Exactly maxEntries items held, once that many were set: the number users configure is the number kept. */
function lru<V>(maxEntries: number, ttlSeconds: number, onEviction?: () => void): Lru<string, V> | null {
  if (maxEntries <= 0 || ttlSeconds <= 0) return null;
  return new Lru<string, V>({ maxSize: maxEntries, onEviction });
}

/** The end of an entry's stale window: never past the token's own expiry. */
function staleUntil(entry: CacheEntry, staleMs: number): number {
  return Math.min(entry.expiresAt + staleMs, entry.tokenExpiresAt ?? Infinity);
}

export class IntrospectionCache {
  readonly #lru: Lru<string, CacheEntry> | null;
  readonly #negative: Lru<string, NegativeEntry> | null;
  readonly #ttlMs: number;
  readonly #negativeTtlMs: number;
  readonly #clock: Clock;

  constructor(options: CacheOptions) {
    this.#ttlMs = options.ttlSeconds * 1000;
    this.#negativeTtlMs = (options.negativeTtlSeconds ?? 0) * 1000;
    this.#clock = options.clock ?? Date;
    this.#lru = lru(options.maxEntries, options.ttlSeconds, options.onEviction);
    this.#negative = lru(options.maxNegativeEntries ?? 0, options.negativeTtlSeconds ?? 0);
  }

  /** Whether active answers are cached. */
  get enabled(): boolean {
    return this.#lru !== null;
  }

  /** Whether inactive answers are cached. */
  get negativeEnabled(): boolean {
    return this.#negative !== null;
  }

  /**
   * The active answer for a key, if held, unexpired, and obtained with the same client id.
   * @param staleMs how long past its lifetime an expired answer is still kept for stale() (staleIfError)
   */
  get(key: string, clientId: string | null = null, staleMs = 0): CacheEntry | undefined {
    if (!this.#lru) return undefined;
    const entry = this.#lru.get(key);
    if (entry === undefined || entry.clientId !== clientId) return undefined;
    const now = this.#clock.now();
    if (entry.expiresAt <= now) {
      if (staleUntil(entry, staleMs) <= now) this.#lru.delete(key);
      return undefined;
    }
    return entry;
  }

  /**
   * An active answer whose lifetime has ended less than `staleMs` ago, and
   * whose token has not expired: what staleIfError may serve while the
   * endpoint fails. An evicted answer is gone and never comes back here.
   */
  stale(key: string, clientId: string | null, staleMs: number): CacheEntry | undefined {
    if (!this.#lru || staleMs <= 0) return undefined;
    const entry = this.#lru.peek(key);
    if (entry === undefined || entry.clientId !== clientId) return undefined;
    const now = this.#clock.now();
    return entry.expiresAt <= now && now < staleUntil(entry, staleMs) ? entry : undefined;
  }

  /**
   * Remember an active answer until the earlier of the configured TTL and the
   * token's own expiry.
   */
  set(
    key: string,
    claims: Claims,
    tokenExpiresAt: number | null,
    endpoint = '',
    clientId: string | null = null,
    notAfter = Infinity,
  ): void {
    if (!this.#lru) return;
    const now = this.#clock.now();
    const expiresAt = Math.min(this.activeExpiry(tokenExpiresAt) ?? now, notAfter);
    if (expiresAt <= now) return;
    // Expiry follows the injected clock, checked in get.
    this.#lru.set(key, { claims, expiresAt, tokenExpiresAt, endpoint, clientId });
    // An active answer supersedes an older inactive one (e.g. a token whose nbf has come).
    this.#negative?.delete(key);
  }

  /** Until when an active answer would be kept (the earlier of the TTL and exp); null when active answers are not cached. */
  activeExpiry(tokenExpiresAt: number | null): number | null {
    if (!this.#lru) return null;
    return Math.min(this.#clock.now() + this.#ttlMs, tokenExpiresAt ?? Infinity);
  }

  /** Until when an inactive answer would be kept; null when inactive answers are not cached. */
  inactiveExpiry(validFrom?: number): number | null {
    if (!this.#negative) return null;
    return Math.min(this.#clock.now() + this.#negativeTtlMs, validFrom ?? Infinity);
  }

  /** Whether an unexpired inactive answer is held for the key and client id. */
  isInactive(key: string, clientId: string | null = null): boolean {
    if (!this.#negative) return false;
    const entry = this.#negative.get(key);
    if (entry === undefined || entry.clientId !== clientId) return false;
    if (entry.expiresAt <= this.#clock.now()) {
      this.#negative.delete(key);
      return false;
    }
    return true;
  }

  /**
   * Remember an inactive answer for the negative TTL, or until `validFrom`
   * (the moment the token may become active) when that comes first.
   */
  setInactive(key: string, endpoint = '', clientId: string | null = null, validFrom?: number): void {
    if (!this.#negative) return;
    const now = this.#clock.now();
    const expiresAt = this.inactiveExpiry(validFrom) ?? now;
    if (expiresAt <= now) return;
    this.#negative.set(key, { expiresAt, endpoint, clientId });
  }

  /** Drop a key's active and inactive answers; whether there was one. */
  delete(key: string): boolean {
    const active = this.#lru?.delete(key) ?? false;
    const inactive = this.#negative?.delete(key) ?? false;
    return active || inactive;
  }

  /** Drop every entry whose endpoint is not kept, e.g. after a reload changed its settings. */
  retainEndpoints(keep: ReadonlySet<string>): number {
    let dropped = 0;
    for (const map of [this.#lru, this.#negative]) {
      if (!map) continue;
      const drop: string[] = [];
      for (const [key, entry] of map.entriesAscending()) if (!keep.has(entry.endpoint)) drop.push(key);
      for (const key of drop) map.delete(key);
      dropped += drop.length;
    }
    return dropped;
  }

  /** Drop everything; how many entries went. */
  clear(): number {
    const count = this.size + this.negativeSize;
    this.#lru?.clear();
    this.#negative?.clear();
    return count;
  }

  /** Active answers held (expired ones included until they are next looked at). */
  get size(): number {
    return this.#lru?.size ?? 0;
  }

  /** Inactive answers held. */
  get negativeSize(): number {
    return this.#negative?.size ?? 0;
  }
}
