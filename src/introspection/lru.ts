/**
 * A least-recently-used map holding at most `maxSize` items, exactly: a Map
 * kept in use order (a read moves the item to the end), the first item going
 * when a new one would exceed the bound. quick-lru's two generations hold
 * anywhere between maxSize and twice it, so a user's maxCacheEntries would be
 * either a lie or, halved, only half used.
 */
export interface LruOptions {
  maxSize: number;
  /** Called for each item pushed out by the bound (never for delete or clear). */
  onEviction?: () => void;
}

export class Lru<K, V> {
  readonly #items = new Map<K, V>();
  readonly #maxSize: number;
  readonly #onEviction: (() => void) | undefined;

  constructor(options: LruOptions) {
    if (!Number.isInteger(options.maxSize) || options.maxSize < 1) throw new TypeError('maxSize must be a whole number >= 1');
    this.#maxSize = options.maxSize;
    this.#onEviction = options.onEviction;
  }

  /** The item, now the most recently used. */
  get(key: K): V | undefined {
    const value = this.#items.get(key);
    if (value === undefined) return undefined;
    this.#items.delete(key);
    this.#items.set(key, value);
    return value;
  }

  /** The item, its place in the order unchanged. */
  peek(key: K): V | undefined {
    return this.#items.get(key);
  }

  set(key: K, value: V): void {
    this.#items.delete(key);
    this.#items.set(key, value);
    if (this.#items.size > this.#maxSize) {
      this.#items.delete(this.#items.keys().next().value as K);
      this.#onEviction?.();
    }
  }

  delete(key: K): boolean {
    return this.#items.delete(key);
  }

  clear(): void {
    this.#items.clear();
  }

  /** Least recently used first. */
  entriesAscending(): IterableIterator<[K, V]> {
    return this.#items.entries();
  }

  get size(): number {
    return this.#items.size;
  }
}
