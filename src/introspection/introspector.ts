/**
 * Answers "is this token active at that endpoint?" from the cache when it can,
 * otherwise with one call shared by every concurrent Check of the same token.
 */
import type { CacheResult } from '../decision.js';
import { cacheKey, type IntrospectionCache } from './cache.js';
import type { IntrospectionResult } from './result.js';

/** The part of EndpointClient the introspector needs. */
export interface Endpoint {
  readonly name: string;
  /**
   * What the cache keys answers by: the name plus a fingerprint of the settings
   * that shape an answer, so a reload that changes them never reuses old
   * answers. Defaults to the name.
   */
  readonly cacheId?: string;
  introspect(token: string, signal?: AbortSignal): Promise<IntrospectionResult>;
}

export interface Answer {
  readonly result: IntrospectionResult;
  readonly cache: CacheResult;
}

interface Flight {
  readonly promise: Promise<IntrospectionResult>;
  readonly controller: AbortController;
  waiters: number;
}

const TIMED_OUT: IntrospectionResult = Object.freeze({ outcome: 'timeout', detail: 'no answer before the deadline' });

export class Introspector {
  readonly #cache: IntrospectionCache;
  readonly #flights = new Map<string, Flight>();

  constructor(cache: IntrospectionCache) {
    this.#cache = cache;
  }

  /**
   * @param signal the caller's deadline: when it fires the caller gets a
   *   timeout result at once, and the shared call is aborted if nobody else waits.
   */
  async introspect(endpoint: Endpoint, token: string, signal: AbortSignal): Promise<Answer> {
    const key = cacheKey(endpoint.cacheId ?? endpoint.name, token);
    const cached = this.#cache.get(key);
    if (cached) {
      return { result: { outcome: 'active', claims: cached.claims, expiresAt: cached.tokenExpiresAt }, cache: 'hit' };
    }
    if (signal.aborted) return { result: TIMED_OUT, cache: 'miss' };

    let flight = this.#flights.get(key);
    const cache: CacheResult = flight ? 'coalesced' : 'miss';
    if (!flight) flight = this.#start(key, endpoint, token);
    flight.waiters += 1;
    const current = flight;

    let onAbort: (() => void) | undefined;
    const abandoned = new Promise<IntrospectionResult>((resolve) => {
      onAbort = () => resolve(TIMED_OUT);
      signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      return { result: await Promise.race([current.promise, abandoned]), cache };
    } finally {
      signal.removeEventListener('abort', onAbort!);
      current.waiters -= 1;
      if (current.waiters === 0 && signal.aborted) {
        current.controller.abort();
        // A later Check must start its own call, not join one that is being torn down.
        if (this.#flights.get(key) === current) this.#flights.delete(key);
      }
    }
  }

  /** Forget a token's cached answer at every endpoint given (by cacheId, or name when it has none). */
  evict(endpoints: readonly string[], token: string): number {
    let dropped = 0;
    for (const name of endpoints) if (this.#cache.delete(cacheKey(name, token))) dropped += 1;
    return dropped;
  }

  #start(key: string, endpoint: Endpoint, token: string): Flight {
    const controller = new AbortController();
    let call: Promise<IntrospectionResult>;
    try {
      call = endpoint.introspect(token, controller.signal);
    } catch (error) {
      call = Promise.reject(error);
    }
    const promise = call.then(
      (result) => {
        if (result.outcome === 'active') this.#cache.set(key, result.claims, result.expiresAt, endpoint.cacheId ?? endpoint.name);
        return result;
      },
      (): IntrospectionResult => ({ outcome: 'error', detail: 'introspection failed unexpectedly' }),
    );
    const flight: Flight = { promise, controller, waiters: 0 };
    this.#flights.set(key, flight);
    // Leave the map as soon as the call settles, so the next Check reads the cache or asks again.
    void promise.finally(() => {
      if (this.#flights.get(key) === flight) this.#flights.delete(key);
    });
    return flight;
  }
}
