/**
 * Answers "is this token active at that endpoint?" from the cache when it can
 * (active answers, and for a short while inactive ones), otherwise with one
 * call shared by every concurrent Check of the same token.
 */
import type { CacheResult } from '../decision.js';
import { cacheKey, type IntrospectionCache } from './cache.js';
import { INACTIVE, type IntrospectionResult } from './result.js';
import type { SharedEntry } from './sealed-entry.js';
import { Cancellation, DEADLINE_REACHED, type CallerSignal } from './cancellation.js';
import type { FlightTrace, RequestTrace } from '../observability/tracing.js';

/**
 * A second cache tier shared by replicas (Redis), asked on a miss of the
 * in-process cache before the endpoint. Best effort: a failure reads as a
 * miss and never as an answer.
 */
export interface SharedCache {
  /** The key of a token at an endpoint; with a shared tier, the in-process cache uses it too. */
  key(cacheId: string, token: string): string;
  get(key: string, cacheId: string, token: string): Promise<SharedEntry | undefined>;
  /** Store an answer; returns at once, and never throws: a failed write is the tier's to count. */
  set(key: string, cacheId: string, token: string, entry: SharedEntry): void;
  /**
   * Remember here that the keys were evicted (refusing older shared entries),
   * and when `announce` (the default), drop them in the shared tier and tell
   * every replica. Resolves with whether the shared tier took it; false: not
   * yet, it is sent again once the tier answers. Never rejects.
   */
  evict(keys: readonly string[], announce?: boolean): Promise<boolean>;
  /** Like evict, for every answer. */
  evictAll(announce?: boolean): Promise<boolean>;
}

/**
 * What became of an eviction beyond this process: `none`, no shared tier;
 * `done`, the shared tier dropped it and told every replica (or another worker
 * of this replica does); `pending`, the shared tier did not take it: dropped
 * here and refused from the shared tier here, sent again once it answers.
 */
export type SharedEviction = 'none' | 'done' | 'pending';

export interface Eviction {
  /** Endpoints that held an answer for the token here (for all: answers dropped here). */
  readonly evicted: number;
  readonly shared: Promise<SharedEviction>;
}

export interface IntrospectorOptions {
  shared?: SharedCache;
  clock?: { now(): number };
  /** Told of every Check answered from an expired answer under staleIfError, with the endpoint's name. */
  onStale?: (endpoint: string) => void;
}

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
  /** The issuer whose tokens this endpoint judges: a policy with several endpoints sends a JWT by its iss. */
  readonly issuer?: string | null;
  /** The issuer's key set, when the endpoint verifies signatures (readiness asks whether it is loaded). */
  readonly keys?: { readonly loaded: boolean; readonly lastProblem: string | null };
  /**
   * Seconds an expired active answer may still be served while the endpoint
   * fails (error, timeout, circuit open, bad response); 0 or absent: never.
   */
  readonly staleIfError?: number;
  /** The span of the Check this view of the endpoint belongs to (tracing on): the shared cache lookup's parent. */
  readonly trace?: RequestTrace;
  /**
   * @param signal the call's cancellation, shared by every Check waiting on it: fires (with
   *   DEADLINE_REACHED when the last of them ran out of time) once none waits any more
   * @param trace the call's span (tracing on), parent of each HTTP attempt
   */
  introspect(token: string, signal?: CallerSignal, clientId?: string | null, trace?: FlightTrace): Promise<IntrospectionResult>;
}

/** The request headers, as the pipeline holds them (lower-case names, one value a line). */
export type RequestHeaders = ReadonlyMap<string, readonly string[]>;

export { CANCELLED, DEADLINE_REACHED, type CallerSignal } from './cancellation.js';

export interface Answer {
  readonly result: IntrospectionResult;
  readonly cache: CacheResult;
}

/** One Check waiting on a flight. */
interface Waiter {
  readonly signal: CallerSignal;
  readonly onAbort: () => void;
  /** Hands the Check its answer from the flight's result (the stale answer applied). */
  readonly answer: (result: IntrospectionResult) => void;
}

interface Flight {
  /** Fired when every waiter has left before the answer: the endpoint call is torn down. */
  readonly cancellation: Cancellation;
  /** The cache key the answer goes under (the flight's own key adds the client id). */
  readonly cacheKey: string;
  /** The Checks waiting now; each leaves when its answer is given or its signal fires. */
  readonly waiters: Waiter[];
  /** Cleared by an admin eviction while the call was under way: its answer may predate a revocation. */
  cacheable: boolean;
}

const TIMED_OUT: IntrospectionResult = Object.freeze({ outcome: 'timeout', detail: 'no answer before the deadline' });
const FAILED: IntrospectionResult = Object.freeze({ outcome: 'error', detail: 'introspection failed unexpectedly' });

/** Longest client id taken from a request header; RFC 6749 client ids are printable ASCII (VSCHAR). */
const CLIENT_ID = /^[\x20-\x7e]{1,256}$/;

export class Introspector {
  readonly #cache: IntrospectionCache;
  readonly #flights = new Map<string, Flight>();
  readonly #shared: SharedCache | undefined;
  readonly #clock: { now(): number };
  readonly #onStale: ((endpoint: string) => void) | undefined;

  constructor(cache: IntrospectionCache, options: IntrospectorOptions = {}) {
    this.#cache = cache;
    this.#shared = options.shared;
    this.#clock = options.clock ?? Date;
    this.#onStale = options.onStale;
  }

  #key(cacheId: string, token: string): string {
    return this.#shared ? this.#shared.key(cacheId, token) : cacheKey(cacheId, token);
  }

  /**
   * @param signal the caller's deadline: when it fires the caller gets a
   *   timeout result at once, and the shared call is aborted if nobody else waits.
   * @param headers the request's headers; read only for an endpoint with a clientIdHeader
   */
  introspect(endpoint: Endpoint, token: string, signal: CallerSignal, headers?: RequestHeaders): Promise<Answer> {
    // Not async: an answer at hand is a settled promise, and the endpoint's path adds no hop of its own.
    try {
      return this.#introspect(endpoint, token, signal, headers);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  #introspect(endpoint: Endpoint, token: string, signal: CallerSignal, headers: RequestHeaders | undefined): Promise<Answer> {
    let clientId: string | null = null;
    if (endpoint.clientIdHeader) {
      clientId = clientIdFrom(headers, endpoint.clientIdHeader);
      if (clientId === null) {
        return Promise.resolve({
          result: { outcome: 'error', detail: `the request has no usable ${endpoint.clientIdHeader} header to take the client id from` },
          cache: 'none',
        });
      }
    }
    const key = this.#key(endpoint.cacheId ?? endpoint.name, token);
    const staleMs = (endpoint.staleIfError ?? 0) * 1000;
    const cached = this.#cache.get(key, clientId, staleMs);
    if (cached) {
      return Promise.resolve({ result: { outcome: 'active', claims: cached.claims, expiresAt: cached.tokenExpiresAt }, cache: 'hit' });
    }
    if (this.#cache.isInactive(key, clientId)) return Promise.resolve({ result: INACTIVE, cache: 'negative_hit' });
    if (signal.aborted) return Promise.resolve(this.#orStale(endpoint, key, clientId, staleMs, { result: TIMED_OUT, cache: 'miss' }));

    // Calls are the same when token, endpoint and client id are: only then may they share an answer.
    const flightKey = clientId === null ? key : `${key}\0${clientId}`;
    let flight = this.#flights.get(flightKey);
    const cache: CacheResult = flight ? 'coalesced' : 'miss';
    if (!flight) flight = this.#start(flightKey, key, endpoint, token, clientId);
    return this.#wait(flight, flightKey, signal, (result) => this.#orStale(endpoint, key, clientId, staleMs, { result, cache }));
  }

  /**
   * Join a flight: answered when it lands, or with a timeout as soon as the
   * caller's signal fires. No promise per waiter beyond its own: the flight
   * answers its waiters from a list.
   */
  #wait(flight: Flight, flightKey: string, signal: CallerSignal, answerOf: (result: IntrospectionResult) => Answer): Promise<Answer> {
    return new Promise<Answer>((resolve) => {
      const waiter: Waiter = {
        signal,
        onAbort: () => {
          const at = flight.waiters.indexOf(waiter);
          if (at < 0) return;
          flight.waiters.splice(at, 1);
          resolve(answerOf(TIMED_OUT));
          if (flight.waiters.length > 0) return;
          // The last one to leave decides what the abort says about the endpoint.
          flight.cancellation.abort(signal.reason === DEADLINE_REACHED ? DEADLINE_REACHED : undefined);
          // A later Check must start its own call, not join one that is being torn down.
          if (this.#flights.get(flightKey) === flight) this.#flights.delete(flightKey);
        },
        answer: (result) => resolve(answerOf(result)),
      };
      flight.waiters.push(waiter);
      signal.addEventListener('abort', waiter.onAbort, { once: true });
    });
  }

  /**
   * The answer, or when it is a failure, the expired answer still inside its
   * staleIfError window. Looked up after the call, not before: an eviction
   * made meanwhile has deleted it.
   */
  #orStale(endpoint: Endpoint, key: string, clientId: string | null, staleMs: number, answer: Answer): Answer {
    const { outcome } = answer.result;
    if (staleMs <= 0 || outcome === 'active' || outcome === 'inactive') return answer;
    const stale = this.#cache.stale(key, clientId, staleMs);
    if (stale === undefined) return answer;
    try {
      this.#onStale?.(endpoint.name);
    } catch {
      // Counting and logging must not turn an answer into a failure.
    }
    return { result: { outcome: 'active', claims: stale.claims, expiresAt: stale.tokenExpiresAt }, cache: 'stale' };
  }

  /**
   * Forget a token's answers (active and inactive) at every endpoint given (by
   * cacheId, or name when it has none); calls under way for it will not be
   * cached. With a shared tier, at every replica when `announce`; without it
   * the shared tier only remembers the eviction here (another worker of the
   * replica announces it, once for all).
   */
  evict(endpoints: readonly string[], token: string, announce = true): Eviction {
    const keys = endpoints.map((name) => this.#key(name, token));
    const shared = this.#sharedEviction(this.#shared?.evict(keys, announce));
    return { evicted: this.dropKeys(keys), shared };
  }

  /** Forget every answer (at every replica, with a shared tier, when `announce`); calls under way will not be cached. */
  clear(announce = true): Eviction {
    const shared = this.#sharedEviction(this.#shared?.evictAll(announce));
    return { evicted: this.clearLocal(), shared };
  }

  #sharedEviction(sent: Promise<boolean> | undefined): Promise<SharedEviction> {
    if (sent === undefined) return Promise.resolve('none');
    return sent.then(
      (done): SharedEviction => (done ? 'done' : 'pending'),
      (): SharedEviction => 'pending',
    );
  }

  /** Forget the answers under these keys here only (another replica's eviction); how many were held. */
  dropKeys(keys: readonly string[]): number {
    let dropped = 0;
    for (const key of keys) {
      if (this.#cache.delete(key)) dropped += 1;
      this.#detach((flight) => flight.cacheKey === key);
    }
    return dropped;
  }

  /** Forget every answer here only (another replica's eviction, or evictions possibly missed). */
  clearLocal(): number {
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
    const cacheId = endpoint.cacheId ?? endpoint.name;
    // Taken before asking anyone: an answer is never newer than the call that got it, so an
    // eviction after this moment must refuse it (see eviction-journal.ts).
    const startedAt = this.#clock.now();
    // The shared tier holds answers that depend on the token alone: not those asked with a client id.
    const shared = clientId === null ? this.#shared : undefined;
    const flight: Flight = { cancellation: new Cancellation(), cacheKey: key, waiters: [], cacheable: true };
    const ask = (): Promise<IntrospectionResult> => {
      try {
        return endpoint.introspect(token, flight.cancellation, clientId);
      } catch (error) {
        return Promise.reject(error);
      }
    };
    const land = (result: IntrospectionResult, notAfter?: number): void => {
      // Leave the map first, so a waiter's next Check reads the cache or asks again.
      if (this.#flights.get(flightKey) === flight) this.#flights.delete(flightKey);
      if (flight.cacheable) {
        try {
          // Only answers are kept; errors, timeouts and bad responses never are.
          if (result.outcome === 'active') this.#cache.set(key, result.claims, result.expiresAt, cacheId, clientId, notAfter);
          else if (result.outcome === 'inactive') this.#cache.setInactive(key, cacheId, clientId, notAfter ?? result.validFrom);
          if (shared && notAfter === undefined) this.#fillShared(shared, key, cacheId, token, result, startedAt);
        } catch {
          // A waiter is answered all the same: what it was told must not depend on the cache.
          result = FAILED;
        }
      }
      const waiters = flight.waiters.splice(0);
      for (const waiter of waiters) {
        waiter.signal.removeEventListener('abort', waiter.onAbort);
        waiter.answer(result);
      }
    };
    // Never rejects into nobody: a failure is an answer (FAILED) like any other.
    const failed = (): void => land(FAILED);
    if (shared) {
      this.#askShared(shared, key, cacheId, token, ask, endpoint.trace).then(({ result, notAfter }) => land(result, notAfter), failed);
    } else {
      ask().then((result) => land(result), failed);
    }
    this.#flights.set(flightKey, flight);
    return flight;
  }

  /** The shared tier's answer if it has one, else the endpoint's. */
  async #askShared(
    shared: SharedCache,
    key: string,
    cacheId: string,
    token: string,
    ask: () => Promise<IntrospectionResult>,
    trace: RequestTrace | undefined,
  ): Promise<Fetched> {
    const lookup = () => shared.get(key, cacheId, token);
    const entry = await (trace ? trace.lookup(lookup) : lookup()).catch(() => undefined);
    if (entry === undefined || entry.expiresAt <= this.#clock.now()) return { result: await ask() };
    const result: IntrospectionResult = entry.active
      ? { outcome: 'active', claims: entry.claims, expiresAt: entry.tokenExpiresAt }
      : INACTIVE;
    return { result, notAfter: entry.expiresAt };
  }

  #fillShared(shared: SharedCache, key: string, cacheId: string, token: string, result: IntrospectionResult, writtenAt: number): void {
    const expiresAt =
      result.outcome === 'active'
        ? this.#cache.activeExpiry(result.expiresAt)
        : result.outcome === 'inactive'
          ? this.#cache.inactiveExpiry(result.validFrom)
          : null;
    if (expiresAt === null || expiresAt <= this.#clock.now()) return;
    const entry: SharedEntry =
      result.outcome === 'active'
        ? { active: true, claims: result.claims, tokenExpiresAt: result.expiresAt, expiresAt, writtenAt }
        : { active: false, expiresAt, writtenAt };
    try {
      shared.set(key, cacheId, token, entry);
    } catch {
      // Best effort, like every use of the shared tier (the tier counts its own failures): the answer
      // stands, it is only not shared.
    }
  }
}

/** A result, and when it came from the shared tier, the end of its lifetime there (no tier may keep it longer). */
interface Fetched {
  readonly result: IntrospectionResult;
  readonly notAfter?: number;
}

/** The one value of the header, if it is a plausible client id; null otherwise (absent, repeated, odd). */
function clientIdFrom(headers: RequestHeaders | undefined, name: string): string | null {
  const values = headers?.get(name);
  if (!values || values.length !== 1) return null;
  const value = values[0]!.trim();
  // Envoy joins repeated headers with ",": a comma means several values, or one we cannot tell apart.
  if (!CLIENT_ID.test(value) || value.includes(',')) return null;
  // A copy of its own: the cache keeps it, and the request's strings may be slices of the whole CheckRequest.
  return Buffer.from(value, 'latin1').toString('latin1');
}
