/**
 * One introspection endpoint as a client sees it: the request (endpoint-request),
 * the connections (transport), and around each call the safeguards a remote
 * dependency on the hot path needs: a circuit breaker, a bound on calls in
 * flight, retries of transient failures, one overall timeout, and a
 * size-limited read of the answer.
 */
import { createHmac, randomBytes } from 'node:crypto';
import type { Dispatcher } from 'undici';
import type { EndpointConfig } from '../config/load.js';
import { CircuitBreaker, type CircuitState, type Permit } from './circuit-breaker.js';
import { RequestTemplate } from './endpoint-request.js';
import { Cancellation, DEADLINE_REACHED, type CallerSignal } from './cancellation.js';
import { InFlightLimit, type Acquired } from './in-flight-limit.js';
import { readIntrospectionResponse, type IntrospectionResult, type ReadOptions } from './result.js';
import type { KeySet } from './jwks.js';
import type { AttemptTrace, FlightTrace } from '../observability/tracing.js';
import { readSignedAnswer, type SignedAnswerRules } from './jwt-answer.js';
import { createDispatcher } from './transport.js';

export interface Clock {
  now(): number;
}

export interface EndpointClientOptions {
  /** Time for token expiry and the circuit breaker (not for timeouts, which use real timers). */
  clock?: Clock;
  /** Told of each retry (for metrics). */
  onRetry?: () => void;
  /** Told when the endpoint asks for a pause (429, or 503 with Retry-After) and calls stop for `ms`. */
  onPause?: (status: number, ms: number) => void;
  /** Random number in [0, 1) for retry jitter. */
  random?: () => number;
  /**
   * Key of the settings fingerprint in cacheId. Replicas sharing a cache tier
   * must pass the same one (derived from redis.keySecret); alone, a process
   * uses its own random key, since its cache ids never leave it.
   */
  fingerprintKey?: Buffer;
  /** The issuer's key set, for signed (responseFormat jwt) answers. */
  keys?: KeySet;
}

/** The fingerprint key of a process without a shared tier. */
const PROCESS_FINGERPRINT_KEY = randomBytes(32);

/** HTTP statuses that say "try again" about an idempotent request: retried. */
const RETRY_STATUSES = new Set([502, 503, 504]);

/** Transport failures worth one more try: the connection failed or broke, nothing wrong with the request. */
const RETRY_ERRORS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_CONNECT_TIMEOUT',
]);

/** Jitter before a retry: a short random pause, so retries of many calls do not arrive together. */
const BACKOFF_MIN_MS = 10;
const BACKOFF_MAX_MS = 50;

const NO_TIME: IntrospectionResult = Object.freeze({ outcome: 'timeout', detail: 'no answer in time' });
const CIRCUIT_OPEN: IntrospectionResult = Object.freeze({
  outcome: 'circuit_open',
  detail: 'not asked: the endpoint failed repeatedly and its circuit breaker is open',
});

/**
 * What one attempt said about the endpoint: answered (ok), failed (unreachable,
 * too slow, server error: counts towards opening the circuit), asked us to
 * slow down (throttled: HTTP 429, a pause and no failure: anyone sending
 * random tokens could otherwise open the circuit for everyone), or nothing
 * (the caller left first).
 */
type Verdict = 'ok' | 'failed' | 'throttled' | 'abandoned';

/**
 * A caller's deadline that ends an attempt still waiting for its answer is a
 * failure of the endpoint only when the endpoint had a fair time to answer:
 * at least this long, and several times its usual answer time. Otherwise a
 * client sending Checks with tiny deadlines could open the circuit for
 * everyone.
 */
const HANG_FLOOR_MS = 50;
const HANG_FACTOR = 3;

interface Attempt {
  readonly result: IntrospectionResult;
  readonly verdict: Verdict;
  readonly retry: boolean;
}

export class EndpointClient {
  readonly name: string;
  readonly cacheId: string;
  /** Request header whose value is the client id sent to the endpoint (IBM: client_id_hdr), or null. */
  readonly clientIdHeader: string | null;
  readonly issuer: string | null;
  readonly keys: KeySet | undefined;
  readonly #signed: SignedAnswerRules | null;
  readonly #config: EndpointConfig;
  readonly #dispatcher: Dispatcher;
  readonly #origin: string;
  readonly #template: RequestTemplate;
  readonly #clock: Clock;
  readonly #breaker: CircuitBreaker;
  readonly #limit: InFlightLimit;
  readonly #readOptions: Omit<ReadOptions, 'now'>;
  readonly #onRetry: () => void;
  readonly #onPause: ((status: number, ms: number) => void) | undefined;
  readonly #random: () => number;
  /** The status that asked for the pause in force (429, or 503 with Retry-After). */
  #pausedBy = 429;
  /** Until when (clock ms) calls are not made, after an HTTP 429 (or a 503 with Retry-After). */
  #pausedUntil = 0;
  /** Moving average of how long answered attempts took (ms): what "usual" means for HANG_FACTOR. */
  #usualMs = 0;

  constructor(config: EndpointConfig, options: EndpointClientOptions = {}) {
    this.name = config.name;
    this.cacheId = endpointCacheId(config, options.fingerprintKey);
    this.clientIdHeader = config.clientIdHeader;
    this.issuer = config.issuer;
    this.#config = config;
    if (config.responseFormat === 'jwt' && (options.keys === undefined || config.issuer === null || config.clientId === null)) {
      throw new TypeError(`endpoint ${config.name}: responseFormat jwt needs keys, an issuer and a clientId`);
    }
    this.keys = options.keys;
    this.#signed =
      config.responseFormat === 'jwt'
        ? { issuer: config.issuer!, clientId: config.clientId!, algorithms: config.algorithms, maxAnswerAge: config.maxAnswerAge }
        : null;
    this.#clock = options.clock ?? Date;
    this.#onRetry = options.onRetry ?? (() => {});
    this.#onPause = options.onPause;
    this.#random = options.random ?? Math.random;
    this.#origin = new URL(config.url!).origin;
    this.#dispatcher = createDispatcher(config);
    this.#template = new RequestTemplate(config);
    this.#breaker = new CircuitBreaker({
      failures: config.circuitBreaker.failures,
      resetTimeout: config.circuitBreaker.resetTimeout,
      clock: this.#clock,
    });
    this.#limit = new InFlightLimit(config.maxInFlight, config.queueTimeout);
    this.#readOptions = {
      clockSkew: config.clockSkew,
      issuer: config.issuer,
      audience: config.audience,
      multiValuedScope: config.multiValuedScope,
    };
  }

  /** The circuit breaker's state now. */
  get circuitState(): CircuitState {
    return this.#breaker.state;
  }

  /**
   * Ask the endpoint about a token. Never throws: every failure is a result.
   * @param signal aborts the call when the caller is gone or out of time
   * @param clientId the client id from the request's clientIdHeader (required when the endpoint has one)
   * @param trace the call's span when tracing is on: each attempt is a child, and sends its traceparent
   */
  introspect(token: string, signal?: CallerSignal, clientId: string | null = null, trace?: FlightTrace): Promise<IntrospectionResult> {
    if (signal?.aborted) return Promise.resolve(NO_TIME);
    if (this.clientIdHeader !== null && clientId === null) {
      return Promise.resolve({ outcome: 'error', detail: `no client id: the request has no usable ${this.clientIdHeader} header` });
    }
    const pause = this.#pausedUntil - this.#clock.now();
    if (pause > 0) {
      return Promise.resolve({
        outcome: 'error',
        detail: `not asked: the endpoint answered HTTP ${this.#pausedBy}; calls pause for ${Math.ceil(pause)} ms more`,
      });
    }
    const permit = this.#breaker.admit();
    if (permit === null) return Promise.resolve(CIRCUIT_OPEN);

    // One budget for everything: waiting for a slot, every attempt, the pauses between them.
    const budget = new CallBudget(this.#config.authenticationTimeout, signal);
    const slot = this.#limit.acquire(budget);
    // A free slot is there at once: only a queued call waits a turn for it.
    return slot instanceof Promise
      ? slot.then((acquired) => this.#run(acquired, permit, token, clientId, budget, trace))
      : this.#run(slot, permit, token, clientId, budget, trace);
  }

  #run(
    slot: Acquired,
    permit: Permit,
    token: string,
    clientId: string | null,
    budget: CallBudget,
    trace: FlightTrace | undefined,
  ): Promise<IntrospectionResult> {
    if (!slot.ok) {
      budget.finish();
      this.#breaker.abandoned(permit);
      if (slot.reason === 'aborted') return Promise.resolve(NO_TIME);
      return Promise.resolve({
        outcome: 'error',
        detail: `${this.#config.maxInFlight} introspections already in flight; no slot within queueTimeout`,
      });
    }
    const { release } = slot;
    return this.#attempts(token, clientId, budget, trace).then(
      (attempt) => {
        release();
        budget.finish();
        this.#settle(permit, attempt.verdict);
        return attempt.result;
      },
      (error: unknown) => {
        release();
        budget.finish();
        this.#breaker.abandoned(permit);
        throw error;
      },
    );
  }

  close(): Promise<void> {
    return this.#dispatcher.close();
  }

  /** Abort in-flight requests and close at once. */
  destroy(): Promise<void> {
    return this.#dispatcher.destroy();
  }

  /** The attempts of one call: the first, and retries while they are worth it. Never rejects. */
  #attempts(
    token: string,
    clientId: string | null,
    budget: Cancellation,
    trace: FlightTrace | undefined,
    retriesLeft = this.#config.retries,
  ): Promise<Attempt> {
    const span = trace?.attempt(this.#config.method, this.#config.retries - retriesLeft);
    let attempt = this.#once(token, clientId, budget, span);
    if (span !== undefined) {
      attempt = attempt.then((done) => {
        span.end(done.result);
        return done;
      });
    }
    // Chained only when a retry may follow: the usual call takes no hop here.
    if (retriesLeft <= 0) return attempt;
    return attempt.then((done) => {
      if (!done.retry) return done;
      this.#onRetry();
      const pause = BACKOFF_MIN_MS + this.#random() * (BACKOFF_MAX_MS - BACKOFF_MIN_MS);
      return sleep(pause, budget).then((slept) =>
        slept
          ? this.#attempts(token, clientId, budget, trace, retriesLeft - 1)
          : // The attempt before the pause already failed: running out of time now does not excuse it.
            { result: NO_TIME, verdict: budget.reason === CALLER_GONE ? 'abandoned' : 'failed', retry: false },
      );
    });
  }

  /** One request and what its answer says; never rejects. */
  #once(token: string, clientId: string | null, budget: Cancellation, span: AttemptTrace | undefined): Promise<Attempt> {
    const request = this.#template.build(token, clientId);
    const traceparent = span?.traceparent;
    const headers = traceparent === undefined ? request.headers : { ...request.headers, traceparent };
    const started = performance.now();
    return new Promise<Attempt>((resolve) => {
      // Judged as the handler hands it over: no promise of the raw response in between.
      const reader = new ResponseReader(
        this.#config.maxResponseBytes,
        budget,
        (received) => {
          this.#usualMs += ((received.headersAt - started) - this.#usualMs) / (this.#usualMs === 0 ? 1 : 16);
          span?.status(received.status);
          try {
            resolve(this.#judge(received));
          } catch (error) {
            resolve(this.#failed(error, budget, started));
          }
        },
        (error) => resolve(this.#failed(error, budget, started)),
      );
      this.#dispatcher.dispatch(
        { origin: this.#origin, method: request.method, path: request.path, headers, body: request.body },
        reader,
      );
    });
  }

  /** An attempt that got no answer: aborted by us (out of time, or nobody waits), or failed on the way. */
  #failed(error: unknown, budget: Cancellation, started: number): Attempt {
    if (budget.aborted) return { result: NO_TIME, verdict: this.#verdictOfAbort(budget, performance.now() - started), retry: false };
    const code = errorCode(error);
    return { result: { outcome: 'error', detail: `request failed: ${code}` }, verdict: 'failed', retry: RETRY_ERRORS.has(code) };
  }

  /** What an answer received in full (or cut at the size limit) says. */
  #judge({ status, retryAfter, body }: Received): Attempt | Promise<Attempt> {
    if (status === 429) {
      this.#pause(429, retryAfter);
      return { result: { outcome: 'error', detail: 'the endpoint answered HTTP 429 (rate limited)' }, verdict: 'throttled', retry: false };
    }
    // A 503 that says when to come back is heeded like a 429, but it is the endpoint's failure
    // (the breaker counts it), and a retry would only come back before the time it named.
    if (status === 503 && retryAfter !== undefined) {
      this.#pause(503, retryAfter);
      return { result: { outcome: 'bad_response', detail: 'the endpoint answered HTTP 503 with Retry-After' }, verdict: 'failed', retry: false };
    }
    if (status < 200 || status > 299) {
      const serverFailure = status >= 500;
      return {
        result: { outcome: 'bad_response', detail: `the endpoint answered HTTP ${status}` },
        verdict: serverFailure ? 'failed' : 'ok',
        retry: RETRY_STATUSES.has(status),
      };
    }
    if (body === null) {
      return {
        result: { outcome: 'bad_response', detail: `the answer is larger than ${this.#config.maxResponseBytes} bytes` },
        verdict: 'ok',
        retry: false,
      };
    }
    const options = { now: this.#clock.now(), ...this.#readOptions };
    if (this.#signed === null) return { result: readIntrospectionResponse(status, body, options), verdict: 'ok', retry: false };
    return readSignedAnswer(body, this.keys!.getKey, this.#signed, options).then(
      (result): Attempt => ({ result, verdict: 'ok', retry: false }),
      (error: unknown): Attempt => {
        const code = errorCode(error);
        return { result: { outcome: 'error', detail: `request failed: ${code}` }, verdict: 'failed', retry: RETRY_ERRORS.has(code) };
      },
    );
  }

  /**
   * Our own timeout firing is the endpoint's failure; the caller leaving says
   * nothing about it; the caller's deadline passing while the answer is
   * overdue (see HANG_FLOOR_MS) is the endpoint hanging.
   */
  #verdictOfAbort(signal: CallerSignal, waitedMs: number): Verdict {
    if (signal.reason === OUT_OF_TIME) return 'failed';
    if (signal.reason === CALLER_OUT_OF_TIME && waitedMs >= Math.max(HANG_FLOOR_MS, HANG_FACTOR * this.#usualMs)) return 'failed';
    return 'abandoned';
  }

  /** Honour Retry-After (seconds or an HTTP date), bounded by rateLimitPause; without one, pause that long. */
  #pause(status: number, retryAfter: string | string[] | undefined): void {
    const limit = this.#config.rateLimitPause;
    if (limit === 0) return;
    this.#pausedBy = status;
    const now = this.#clock.now();
    let ms = limit;
    if (typeof retryAfter === 'string') {
      const value = retryAfter.trim();
      const asked = /^\d{1,10}$/.test(value) ? Number(value) * 1000 : Date.parse(value) - now;
      if (Number.isFinite(asked)) ms = Math.min(limit, Math.max(0, asked));
    }
    this.#pausedUntil = Math.max(this.#pausedUntil, now + ms);
    if (ms > 0) this.#onPause?.(status, ms);
  }

  #settle(permit: Permit, verdict: Verdict): void {
    if (verdict === 'ok') this.#breaker.succeeded(permit);
    else if (verdict === 'failed') this.#breaker.failed(permit);
    else this.#breaker.abandoned(permit);
  }
}

/** Why an introspection's signal fired: authenticationTimeout ran out, the caller's deadline did, or the caller is gone. */
const OUT_OF_TIME = Symbol('authenticationTimeout');
const CALLER_OUT_OF_TIME = Symbol('caller out of time');
const CALLER_GONE = Symbol('caller gone');

/**
 * One call's budget: fires when authenticationTimeout runs out, or (a turn
 * later) when the caller's signal does. One Cancellation and one timer, no
 * AbortController: nothing on the normal path dispatches an event, and undici
 * is told only when something actually aborts (see ResponseReader). The timer
 * and the caller's listener are its own members, not closures of each call.
 */
class CallBudget extends Cancellation {
  readonly #timer: NodeJS.Timeout;
  readonly #signal: CallerSignal | undefined;
  // The caller already has its answer: tearing down the request (undici destroys the
  // socket) waits for the next turn, so a burst of callers leaving is answered first.
  readonly #onCallerGone = (): void => {
    setImmediate(() => this.abort(this.#signal?.reason === DEADLINE_REACHED ? CALLER_OUT_OF_TIME : CALLER_GONE));
  };

  constructor(timeoutMs: number, signal: CallerSignal | undefined) {
    super();
    // A closure rather than setTimeout's extra arguments, which cost the Timeout an array of them.
    this.#timer = setTimeout(() => this.abort(OUT_OF_TIME), timeoutMs);
    this.#signal = signal;
    signal?.addEventListener('abort', this.#onCallerGone, { once: true });
  }

  /** The call is over: neither the timer nor the caller may fire it any more. */
  finish(): void {
    clearTimeout(this.#timer);
    this.#signal?.removeEventListener('abort', this.#onCallerGone);
  }
}

/** Wait `ms`; false when the signal fires first. */
function sleep(ms: number, signal: CallerSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** What the cache keys an endpoint's answers by: its name and a fingerprint of its settings. */
export function endpointCacheId(config: EndpointConfig, fingerprintKey: Buffer = PROCESS_FINGERPRINT_KEY): string {
  return `${config.name}\0${fingerprint(config, fingerprintKey)}`;
}

/**
 * A MAC of every setting that shapes an endpoint's answers (where it is, who
 * asks and how, the client certificate included, how the answer is read),
 * secrets included, so a changed secret or URL means a different cache
 * identity. Other transport settings (trusted CAs, proxy, timeouts, limits) do
 * not change what an answer says and are left out. Keyed, so that nobody
 * without the key can test guesses of the secrets against it; only the MAC is
 * kept.
 */
function fingerprint(config: EndpointConfig, key: Buffer): string {
  const shape = JSON.stringify([
    config.url,
    config.method,
    config.tokenParameter,
    Object.entries(config.headers).map(([name, value]) => [name, value.reveal()]),
    config.authMethod,
    config.clientId,
    config.clientIdHeader,
    config.clientSecret?.reveal() ?? null,
    config.authorizationValue?.reveal() ?? null,
    config.tokenTypeHint,
    config.clockSkew,
    config.issuer,
    config.audience,
    config.multiValuedScope,
    config.tls.cert,
    config.kind,
    config.responseFormat,
    config.maxAnswerAge,
    config.jwksUri,
    config.algorithms,
    config.tokenTypes,
    config.introspect,
  ]);
  return createHmac('sha256', key).update(shape).digest('base64url');
}

/** An answer as one attempt received it. */
interface Received {
  readonly status: number;
  readonly retryAfter: string | string[] | undefined;
  /** The body as text; null when it was larger than maxResponseBytes (and was not read further). */
  readonly body: string | null;
  /** performance.now() when the status and headers came. */
  readonly headersAt: number;
}

/** Stands for the request being torn down by us: never reported, only handed to undici. */
class Cut extends Error {
  constructor(why: string) {
    super(why);
    this.name = 'AbortError';
  }
}

/**
 * One request's handler for undici's dispatch(): keeps the status, Retry-After
 * and the body up to `limit` bytes, and settles once. It listens to the call's
 * budget, and only when that fires is undici told to abort (through the
 * controller it hands us when the request starts, or at once when it starts
 * later): a request answered in time costs no abort machinery at all.
 */
class ResponseReader implements Dispatcher.DispatchHandler {
  readonly #limit: number;
  readonly #budget: Cancellation;
  readonly #resolve: (received: Received) => void;
  readonly #reject: (error: unknown) => void;
  readonly #onAbort = (): void => this.#cut(new Cut('aborted'), true);
  #controller: Dispatcher.DispatchController | undefined;
  /** Why undici is to abort the request, once it is; set before the request started, it is aborted as it does. */
  #cutBy: Error | undefined;
  #settled = false;
  #status = 0;
  #retryAfter: string | string[] | undefined;
  #headersAt = 0;
  /** The body so far: its first chunk alone (most answers come in one), then a list once a second comes. */
  #first: Buffer | undefined;
  #chunks: Buffer[] | undefined;
  #size = 0;

  constructor(limit: number, budget: Cancellation, resolve: (received: Received) => void, reject: (error: unknown) => void) {
    this.#limit = limit;
    this.#budget = budget;
    this.#resolve = resolve;
    this.#reject = reject;
    budget.addEventListener('abort', this.#onAbort);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#cutBy !== undefined) controller.abort(this.#cutBy);
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    // 1xx answers are interim: the real one follows.
    if (statusCode < 200) return;
    this.#status = statusCode;
    this.#retryAfter = headers['retry-after'];
    this.#headersAt = performance.now();
    const length = headers['content-length'];
    if (typeof length === 'string' && Number(length) > this.#limit) this.#tooLarge();
  }

  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#settled) return;
    this.#size += chunk.length;
    if (this.#size > this.#limit) {
      this.#tooLarge();
      return;
    }
    if (this.#first === undefined) this.#first = chunk;
    else if (this.#chunks === undefined) this.#chunks = [this.#first, chunk];
    else this.#chunks.push(chunk);
  }

  onResponseEnd(): void {
    if (this.#settled) return;
    const body =
      this.#chunks !== undefined ? Buffer.concat(this.#chunks, this.#size).toString('utf8') : (this.#first?.toString('utf8') ?? '');
    this.#settle();
    this.#resolve({ status: this.#status, retryAfter: this.#retryAfter, body, headersAt: this.#headersAt });
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    if (this.#settled) return;
    this.#settle();
    this.#reject(error);
  }

  /** An answer too large to read: what came is the answer (a null body), the rest is not waited for. */
  #tooLarge(): void {
    this.#cut(new Cut('the answer is too large'), false);
    this.#resolve({ status: this.#status, retryAfter: this.#retryAfter, body: null, headersAt: this.#headersAt });
  }

  /** Stop: settle now (rejecting, when the budget fired) and have undici tear the request down. */
  #cut(why: Error, reject: boolean): void {
    if (this.#settled) return;
    this.#settle();
    this.#cutBy = why;
    if (reject) this.#reject(why);
    this.#controller?.abort(why);
  }

  #settle(): void {
    this.#settled = true;
    this.#first = undefined;
    this.#chunks = undefined;
    this.#budget.removeEventListener('abort', this.#onAbort);
  }
}

type Body = AsyncIterable<Buffer> & {
  destroy(error?: Error): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
};

/**
 * Drop an unread body. undici's body emits 'error' (RequestAbortedError) when
 * destroyed before its end; with nobody listening, that is an uncaught exception.
 */
function discard(body: Body): void {
  body.on('error', () => {});
  body.destroy();
}

/** Read a body up to `limit` bytes; null (and the body destroyed) when it is larger. */
export async function readLimited(body: Body, limit: number, contentLength: string | string[] | undefined): Promise<string | null> {
  if (typeof contentLength === 'string' && Number(contentLength) > limit) {
    discard(body);
    return null;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > limit) {
      discard(body);
      return null;
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size).toString('utf8');
}

/** The code of a transport failure; never anything from the request (it holds the token). */
function errorCode(error: unknown): string {
  const e = error as { code?: unknown; name?: unknown; message?: unknown; cause?: { code?: unknown } };
  const code = typeof e?.code === 'string' ? e.code : typeof e?.cause?.code === 'string' ? e.cause.code : undefined;
  // undici's proxy failures share generic codes; their messages are fixed sentences with the proxy's status.
  const proxy = typeof e?.message === 'string' ? /^Proxy (?:Authentication Required \(407\)|response \(\d{3}\))/.exec(e.message) : null;
  if (code !== undefined) return proxy ? `${code} (${proxy[0]})` : code;
  return typeof e?.name === 'string' ? e.name : 'unknown error';
}
