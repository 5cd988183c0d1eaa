/**
 * What a replica remembers of admin evictions, so that a shared-cache entry
 * written before an eviction is refused even when it comes back: replayed by
 * someone who can write Redis, or written by a call that was under way on
 * another replica when the eviction happened.
 *
 * Pure: times are given by the caller (epoch ms, this replica's clock).
 *
 * - One time per evicted key, and one watermark for "everything" (an eviction
 *   of all, or evictions possibly missed). An entry is refused when it was
 *   written before the latest of the two, plus the clock skew allowed between
 *   replicas (the writer's clock may run ahead of ours).
 * - A key's time is kept for `retention` (the longest an entry may live after
 *   it was written) plus the skew: by then every entry it could refuse has
 *   expired on its own.
 * - At most `maxKeys` times are kept. When full the oldest goes, and the
 *   watermark rises to its time: more entries are refused (more
 *   introspections), never fewer.
 */
export interface EvictionJournalOptions {
  /** Milliseconds an entry may live after it was written: how long an eviction matters. */
  retention: number;
  /** Milliseconds the clocks of replicas may differ by. */
  skew: number;
  /** Most keys remembered one by one (default 100 000). */
  maxKeys?: number;
}

export class EvictionJournal {
  readonly #retention: number;
  readonly #skew: number;
  readonly #maxKeys: number;
  /** Key -> eviction time, oldest first (a key evicted again moves to the end). */
  readonly #keys = new Map<string, number>();
  #watermark = -Infinity;

  constructor(options: EvictionJournalOptions) {
    if (!(options.retention >= 0)) throw new TypeError('retention must be a number of milliseconds >= 0');
    if (!(options.skew >= 0)) throw new TypeError('skew must be a number of milliseconds >= 0');
    const maxKeys = options.maxKeys ?? 100_000;
    if (!Number.isInteger(maxKeys) || maxKeys < 1) throw new TypeError('maxKeys must be a whole number >= 1');
    this.#retention = options.retention;
    this.#skew = options.skew;
    this.#maxKeys = maxKeys;
  }

  /** These keys were evicted at `at`. */
  evicted(keys: Iterable<string>, at: number): void {
    this.#prune(at);
    for (const key of keys) {
      const previous = this.#keys.get(key);
      this.#keys.delete(key);
      this.#keys.set(key, Math.max(at, previous ?? -Infinity));
      if (this.#keys.size > this.#maxKeys) this.#dropOldest();
    }
  }

  /** Everything was evicted at `at` (or evictions up to `at` may have been missed). */
  evictedAll(at: number): void {
    this.#watermark = Math.max(this.#watermark, at);
    // Keys evicted before the watermark say nothing more than it does.
    for (const [key, time] of this.#keys) {
      if (time > this.#watermark) break;
      this.#keys.delete(key);
    }
  }

  /** Whether an entry under `key` written at `writtenAt` (its writer's clock) may be used. */
  admits(key: string, writtenAt: number): boolean {
    const evictedAt = Math.max(this.#watermark, this.#keys.get(key) ?? -Infinity);
    return writtenAt > evictedAt + this.#skew;
  }

  /** Keys remembered one by one. */
  get size(): number {
    return this.#keys.size;
  }

  /** Forget times that can no longer refuse a live entry. */
  #prune(now: number): void {
    const horizon = now - this.#retention - this.#skew;
    for (const [key, time] of this.#keys) {
      if (time >= horizon) break;
      this.#keys.delete(key);
    }
  }

  #dropOldest(): void {
    const [key, time] = this.#keys.entries().next().value as [string, number];
    this.#keys.delete(key);
    this.#watermark = Math.max(this.#watermark, time);
  }
}
