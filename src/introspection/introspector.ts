/**
 * Answers "is this token active at that endpoint?" from the cache when it can
 * (active answers, and for a short while inactive ones), otherwise with one
 * call shared by every concurrent Check of the same token.
 */
import type { CacheResult } from '../decision.js';
import { cacheKey, type IntrospectionCache } from './cache.js';
import { INACTIVE, type IntrospectionResult } from './result.js';

/** The part of EndpointClient the introspector needs. */
export interface Endpoint {
  readonly name: string;
  /**
   * What the cache keys answers by: the name plus a fingerprint of the settings
   * that shape an answer, so a reload that changes them never reuses old
   * answers. Defaults to the name.
   */
  readonly cacheId?: string;
  /**
   * Request header holding the client id the endpoint is asked with (IBM:
   * client_id_hdr). The answer then depends on that header as well as on the
   * token: it is part of what makes two calls the same, and of what a cached
   * answer must match.
   */
  readonly clientIdHeader?: string | null;
  introspect(token: string, signal?: AbortSignal, clientId?: string | null): Promise<IntrospectionResult>;
}

/** The request headers, as the pipeline holds them (lower-case names, one value a line). */
export type RequestHeaders = ReadonlyMap<string, readonly string[]>;

export interface Answer {
  readonly result: IntrospectionResult;
  readonly cache: CacheResult;
}

interface Flight {
  readonly promise: Promise<IntrospectionResult>;
  readonly controller: AbortController;
  /** The cache key the answer goes under (the flight's own key adds the client id). */
  readonly cacheKey: string;
  waiters: number;
  /** Cleared by an admin eviction while the call was under way: its answer may predate a revocation. */
  cacheable: boolean;
}

const TIMED_OUT: IntrospectionResult = Object.freeze({ outcome: 'timeout', detail: 'no answer before the deadline' });

/** Longest client id taken from a request header; RFC 6749 client ids are printable ASCII (VSCHAR). */
const CLIENT_ID = /^[\x20-\x7e]{1,256}$/;

export class Introspector {
  readonly #cache: IntrospectionCache;
  readonly #flights = new Map<string, Flight>();

  constructor(cache: IntrospectionCache) {
    this.#cache = cache;
  }

  /**
   * @param signal the caller's deadline: when it fires the caller gets a
   *   timeout result at once, and the shared call is aborted if nobody else waits.
   * @param headers the request's headers; read only for an endpoint with a clientIdHeader
   */
  async introspect(endpoint: Endpoint, token: string, signal: AbortSignal, headers?: RequestHeaders): Promise<Answer> {
    let clientId: string | null = null;
    if (endpoint.clientIdHeader) {
      clientId = clientIdFrom(headers, endpoint.clientIdHeader);
      if (clientId === null) {
        return {
          result: { outcome: 'error', detail: `the request has no usable ${endpoint.clientIdHeader} header to take the client id from` },
          cache: 'none',
        };
      }
    }
    const key = cacheKey(endpoint.cacheId ?? endpoint.name, token);
    const cached = this.#cache.get(key, clientId);
    if (cached) {
      return { result: { outcome: 'active', claims: cached.claims, expiresAt: cached.tokenExpiresAt }, cache: 'hit' };
    }
    if (this.#cache.isInactive(key, clientId)) return { result: INACTIVE, cache: 'negative_hit' };
    if (signal.aborted) return { result: TIMED_OUT, cache: 'miss' };

    // Calls are the same when token, endpoint and client id are: only then may they share an answer.
    const flightKey = clientId === null ? key : `${key}\0${clientId}`;
    let flight = this.#flights.get(flightKey);
    const cache: CacheResult = flight ? 'coalesced' : 'miss';
    if (!flight) flight = this.#start(flightKey, key, endpoint, token, clientId);
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
        if (this.#flights.get(flightKey) === current) this.#flights.delete(flightKey);
      }
    }
  }

  /**
   * Forget a token's answers (active and inactive) at every endpoint given (by
   * cacheId, or name when it has none); calls under way for it will not be
   * cached. Returns how many endpoints held an answer.
   */
  evict(endpoints: readonly string[], token: string): number {
    let dropped = 0;
    for (const name of endpoints) {
      const key = cacheKey(name, token);
      if (this.#cache.delete(key)) dropped += 1;
      this.#detach((flight) => flight.cacheKey === key);
    }
    return dropped;
  }

  /** Forget every answer; calls under way will not be cached. Returns how many entries went. */
  clear(): number {
    this.#detach(() => true);
    return this.#cache.clear();
  }

  /** Calls under way that match stop being shared by later Checks and are not cached. */
  #detach(matches: (flight: Flight) => boolean): void {
    for (const [key, flight] of this.#flights) {
      if (!matches(flight)) continue;
      flight.cacheable = false;
      this.#flights.delete(key);
    }
  }

  #start(flightKey: string, key: string, endpoint: Endpoint, token: string, clientId: string | null): Flight {
    const controller = new AbortController();
    const cacheId = endpoint.cacheId ?? endpoint.name;
    let call: Promise<IntrospectionResult>;
    try {
      call = endpoint.introspect(token, controller.signal, clientId);
    } catch (error) {
      call = Promise.reject(error);
    }
    const promise = call.then(
      (result) => {
        if (!flight.cacheable) return result;
        // Only answers are kept; errors, timeouts and bad responses never are.
        if (result.outcome === 'active') this.#cache.set(key, result.claims, result.expiresAt, cacheId, clientId);
        else if (result.outcome === 'inactive') this.#cache.setInactive(key, cacheId, clientId, result.validFrom);
        return result;
      },
      (): IntrospectionResult => ({ outcome: 'error', detail: 'introspection failed unexpectedly' }),
    );
    const flight: Flight = { promise, controller, cacheKey: key, waiters: 0, cacheable: true };
    this.#flights.set(flightKey, flight);
    // Leave the map as soon as the call settles, so the next Check reads the cache or asks again.
    void promise.finally(() => {
      if (this.#flights.get(flightKey) === flight) this.#flights.delete(flightKey);
    });
    return flight;
  }
}

/** The one value of the header, if it is a plausible client id; null otherwise (absent, repeated, odd). */
function clientIdFrom(headers: RequestHeaders | undefined, name: string): string | null {
  const values = headers?.get(name);
  if (!values || values.length !== 1) return null;
  const value = values[0]!.trim();
  // Envoy joins repeated headers with ",": a comma means several values, or one we cannot tell apart.
  if (!CLIENT_ID.test(value) || value.includes(',')) return null;
  return value;
}
