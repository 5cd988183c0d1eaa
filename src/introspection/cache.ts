/**
 * Cache of active introspection answers. It holds what the endpoint said,
 * never a decision: each Check evaluates its own policy on the cached claims.
 */
import { createHash } from 'node:crypto';
import QuickLRU from 'quick-lru';
import type { Claims } from './result.js';
import type { Clock } from './endpoint-client.js';

export interface CacheEntry {
  readonly claims: Claims;
  /** Epoch ms after which the entry must not be used. */
  readonly expiresAt: number;
  /** The token's own expiry (exp, epoch ms), if the answer gave one. */
  readonly tokenExpiresAt: number | null;
  /** Cache identity of the endpoint that answered (see Endpoint.cacheId). */
  readonly endpoint: string;
}

export interface CacheOptions {
  /** Upper bound on entries held (MuleSoft: maxCacheEntries); 0 disables the cache. */
  maxEntries: number;
  /** Seconds an answer is reused at most (MuleSoft: validatedTokenTTL); 0 disables the cache. */
  ttlSeconds: number;
  clock?: Clock;
  /** Called for each entry pushed out by the size bound. */
  onEviction?: () => void;
}

/**
 * Key of a token at an endpoint: SHA-256 over both, so the raw token is never
 * held as a key and one endpoint's answer never serves another endpoint.
 */
export function cacheKey(endpoint: string, token: string): string {
  return createHash('sha256').update(endpoint).update('\0').update(token).digest('binary');
}

export class IntrospectionCache {
  readonly #lru: QuickLRU<string, CacheEntry> | null;
  readonly #ttlMs: number;
  readonly #clock: Clock;

  constructor(options: CacheOptions) {
    this.#ttlMs = options.ttlSeconds * 1000;
    this.#clock = options.clock ?? Date;
    // quick-lru keeps between maxSize and 2 x maxSize items: halve it so maxEntries is a true upper bound.
    this.#lru =
      options.maxEntries > 0 && options.ttlSeconds > 0
        ? new QuickLRU({ maxSize: Math.max(1, Math.floor(options.maxEntries / 2)), onEviction: options.onEviction })
        : null;
  }

  get enabled(): boolean {
    return this.#lru !== null;
  }

  get(key: string): CacheEntry | undefined {
    if (!this.#lru) return undefined;
    const entry = this.#lru.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= this.#clock.now()) {
      this.#lru.delete(key);
      return undefined;
    }
    return entry;
  }

  /**
   * Remember an active answer until the earlier of the configured TTL and the
   * token's own expiry.
   */
  set(key: string, claims: Claims, tokenExpiresAt: number | null, endpoint = ''): void {
    if (!this.#lru) return;
    const now = this.#clock.now();
    const expiresAt = tokenExpiresAt === null ? now + this.#ttlMs : Math.min(now + this.#ttlMs, tokenExpiresAt);
    if (expiresAt <= now) return;
    // No quick-lru maxAge: it reads Date.now(), and expiry must follow the injected clock (checked in get).
    this.#lru.set(key, { claims, expiresAt, tokenExpiresAt, endpoint });
  }

  delete(key: string): boolean {
    return this.#lru?.delete(key) ?? false;
  }

  /** Drop every entry whose endpoint is not kept, e.g. after a reload changed its settings. */
  retainEndpoints(keep: ReadonlySet<string>): number {
    if (!this.#lru) return 0;
    const drop: string[] = [];
    for (const [key, entry] of this.#lru.entriesAscending()) if (!keep.has(entry.endpoint)) drop.push(key);
    for (const key of drop) this.#lru.delete(key);
    return drop.length;
  }

  clear(): void {
    this.#lru?.clear();
  }

  get size(): number {
    return this.#lru?.size ?? 0;
  }
}
