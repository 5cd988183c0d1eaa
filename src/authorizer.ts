/**
 * Everything a configuration builds for request time: endpoint clients, the
 * cache, compiled policies. One instance per loaded configuration.
 */
import type { AuthRequest } from './auth-request.js';
import type { Config } from './config/load.js';
import { decide, type DecideContext, type DecisionNote } from './decide.js';
import type { Decision } from './decision.js';
import { IntrospectionCache } from './introspection/cache.js';
import type { CircuitState } from './introspection/circuit-breaker.js';
import { EndpointClient, endpointCacheId, type Clock } from './introspection/endpoint-client.js';
import { JsonFetcher, KeySet } from './introspection/jwks.js';
import { permittedUrl } from './config/endpoint.js';
import { JwtEndpoint } from './validation/jwt-endpoint.js';
import type { IntrospectionResult } from './introspection/result.js';
import { Introspector, type Answer, type CallerSignal, type Endpoint, type SharedEviction } from './introspection/introspector.js';
import type { Metrics } from './observability/metrics.js';
import { RedisSharedCache } from './introspection/redis-cache.js';
import { sharedKeys } from './introspection/sealed-entry.js';
import { createHash } from 'node:crypto';
import { compilePolicies, routeTable } from './policy/compile.js';
import type { Logger } from './observability/logger.js';
import type { FlightTrace, RequestTrace, Tracing } from './observability/tracing.js';

/** Least time between two warnings that an endpoint is being answered for from stale answers. */
export const STALE_WARNING_MS = 60_000;
import { DpopVerifier } from './credentials/dpop.js';
import { DpopNonces } from './credentials/dpop-nonce.js';
import { randomBytes } from 'node:crypto';
import { MemoryReplayStore, RedisReplayStore } from './credentials/replay-store.js';
import type { SenderContext } from './decide.js';

export interface AuthorizerOptions {
  clock?: Clock;
  metrics?: Metrics;
  /** Where the warning of stale answers goes (at most once per STALE_WARNING_MS and endpoint). */
  logger?: Pick<Logger, 'warn'>;
  /**
   * The authorizer this one replaces on a reload: its cache and in-flight calls
   * are kept when the cache settings did not change, less the answers of
   * endpoints whose settings did.
   */
  previous?: Authorizer;
  /** undefined: tracing is off. */
  tracing?: Tracing;
}

/** An admin eviction's outcome: answers dropped, and whether the shared tier (every replica) has it. */
export interface EvictionReport {
  readonly evicted: number;
  readonly shared: SharedEviction;
}

export class Authorizer {
  readonly #clients: EndpointClient[];
  /** Every endpoint, by configuration order: introspection clients and JWT validators alike. */
  readonly #endpoints: Endpoint[];
  readonly #keySets: Array<{ keys: KeySet; fetcher: JsonFetcher; source: string }>;
  readonly #context: DecideContext;
  readonly #cacheSettings: string;
  /** Some endpoint takes its client id from a request header: introspection then needs the request's headers. */
  readonly #needsHeaders: boolean;
  readonly introspector: Introspector;
  /** Key sets of the authorizer this one replaces, to start from (see #keySet). */
  #previousKeySets: ReadonlyArray<{ keys: KeySet; source: string }>;
  readonly cache: IntrospectionCache;
  /** The shared cache tier, when configured; passed on to the next authorizer with the introspector. */
  readonly shared: RedisSharedCache | null;
  /** DPoP verification and replay records: kept across reloads that leave their settings, so no jti is forgotten. */
  readonly sender: SenderContext;
  readonly #senderSettings: string;
  #senderHandedOver = false;
  #handedOver = false;

  constructor(config: Config, options: AuthorizerOptions = {}) {
    const clock = options.clock ?? Date;
    const metrics = options.metrics;
    // Replicas sharing a tier must agree on cache ids; its secret keeps them from being guessed at.
    const fingerprintKey = config.redis ? sharedKeys(config.redis.keySecret.reveal()).fingerprint : undefined;
    this.#clients = [];
    this.#keySets = [];
    this.#previousKeySets = options.previous ? options.previous.#keySets : [];
    this.#endpoints = config.endpoints.map((endpoint) => {
      const keys = endpoint.kind === 'jwt' || endpoint.responseFormat === 'jwt' ? this.#keySet(endpoint, clock, metrics, options.tracing) : undefined;
      const cacheId = endpointCacheId(endpoint, fingerprintKey);
      const client =
        endpoint.url === null
          ? undefined
          : new EndpointClient(endpoint, {
              clock,
              fingerprintKey,
              keys,
              onRetry: metrics ? () => metrics.introspectionRetries.inc({ endpoint: endpoint.name }) : undefined,
              onPause: (status, ms) => {
                metrics?.introspectionPauses.inc({ endpoint: endpoint.name, status: String(status) });
                options.logger?.warn({ endpoint: endpoint.name, status, ms }, 'the endpoint asked for a pause: no calls to it until it ends');
              },
            });
      if (client) this.#clients.push(client);
      const introspection = client ? endpointOf(client, endpoint.staleIfError, metrics) : undefined;
      if (endpoint.kind === 'jwt') return new JwtEndpoint(endpoint, { cacheId, keys: keys!, introspection, clock });
      return introspection!;
    });
    this.#needsHeaders = this.#clients.some((client) => client.clientIdHeader !== null);
    const byName = new Map<string, Endpoint>(this.#endpoints.map((endpoint) => [endpoint.name, endpoint]));

    this.#cacheSettings = JSON.stringify({ cache: config.cache, redis: redisSettings(config) });
    const previous = options.previous;
    if (previous && previous.#cacheSettings === this.#cacheSettings) {
      this.cache = previous.cache;
      this.introspector = previous.introspector;
      this.shared = previous.shared;
      previous.#handedOver = true;
      this.cache.retainEndpoints(new Set(this.#endpoints.map((endpoint) => endpoint.cacheId ?? endpoint.name)));
    } else {
      this.cache = new IntrospectionCache({
        maxEntries: config.cache.maxCacheEntries,
        ttlSeconds: config.cache.validatedTokenTTL,
        maxNegativeEntries: config.cache.maxNegativeEntries,
        negativeTtlSeconds: config.cache.negativeTTL,
        clock,
        onEviction: metrics ? () => metrics.cacheEvictions.inc() : undefined,
      });
      // Evictions matter as long as the longest-lived answer written before them.
      const retention = Math.max(config.cache.validatedTokenTTL, config.cache.negativeTTL) * 1000;
      this.shared = config.redis ? sharedCache(config.redis, retention, clock, metrics) : null;
      this.introspector = new Introspector(this.cache, {
        shared: this.shared ?? undefined,
        clock,
        onStale: staleReporter(clock, metrics, options.logger),
      });
      const introspector = this.introspector;
      this.shared?.listen({ evict: (keys) => introspector.dropKeys(keys), clear: () => introspector.clearLocal() });
    }

    this.#senderSettings = JSON.stringify({ dpop: config.dpop, redis: redisSettings(config) });
    if (previous && previous.#senderSettings === this.#senderSettings) {
      this.sender = previous.sender;
      previous.#senderHandedOver = true;
    } else {
      this.sender = senderContext(config, clock, metrics);
    }

    const policies = compilePolicies(config.policies, byName);
    const introspector = this.introspector;
    this.#context = {
      policies,
      defaultPolicy: policies.get(config.defaultPolicy)!,
      policySelector: config.policySelector,
      routes: routeTable(config.policies),
      maxTokenLength: config.server.maxTokenLength,
      sender: this.sender,
      introspect(endpoint: Endpoint, token: string, signal: CallerSignal): Promise<Answer> {
        return introspector.introspect(endpoint, token, signal);
      },
    };
  }

  /** @param trace the request's span, when tracing is on: introspection calls become its children */
  check(request: AuthRequest, signal: CallerSignal, note?: DecisionNote, trace?: RequestTrace): Promise<Decision> {
    if (trace === undefined && !this.#needsHeaders) return decide(request, this.#context, signal, note);
    const introspector = this.introspector;
    const context: DecideContext = {
      ...this.#context,
      introspect: (endpoint, token, callSignal) =>
        introspector.introspect(trace ? tracedEndpoint(endpoint, trace) : endpoint, token, callSignal, request.headers),
    };
    return decide(request, context, signal, note);
  }

  /**
   * Drop a token's cached answers (active and inactive) at every endpoint: how
   * many endpoints held one, and what became of it beyond this process.
   * @param announce whether this process tells the other replicas (with workers, one of them does)
   */
  async evictToken(token: string, announce = true): Promise<EvictionReport> {
    const { evicted, shared } = this.introspector.evict(
      this.#endpoints.map((endpoint) => endpoint.cacheId ?? endpoint.name),
      token,
      announce,
    );
    return { evicted, shared: await shared };
  }

  /** Endpoints whose issuer's keys are not loaded yet, each with why (readiness). */
  keysMissing(): string[] {
    return this.#endpoints
      .filter((endpoint) => endpoint.keys !== undefined && !endpoint.keys.loaded)
      .map((endpoint) => `endpoint ${endpoint.name}: ${endpoint.keys!.lastProblem ?? 'keys not loaded yet'}`);
  }

  #keySet(endpoint: Config['endpoints'][number], clock: Clock, metrics: Metrics | undefined, tracing: Tracing | undefined): KeySet {
    const fetcher = new JsonFetcher(endpoint);
    const fetchJson: typeof fetcher.fetchJson = tracing ? (url) => tracing.keyFetch(endpoint.name, () => fetcher.fetchJson(url)) : fetcher.fetchJson;
    const keys = new KeySet({
      issuer: endpoint.issuer!,
      jwksUri: endpoint.jwksUri,
      cooldown: endpoint.jwksCooldown,
      maxAge: endpoint.jwksMaxAge,
      fetchJson,
      permitted: (url) => permittedUrl(endpoint, url),
      clock,
      onFetch: metrics ? (result) => metrics.jwksFetches.inc({ endpoint: endpoint.name, result }) : undefined,
    });
    // Keys fetched from the same place over the same transport carry over a reload.
    const source = JSON.stringify([endpoint.issuer, endpoint.jwksUri, endpoint.tls.ca, endpoint.tls.cert, endpoint.proxy?.url ?? null, endpoint.allowInsecure]);
    const previous = this.#previousKeySets.find((set) => set.source === source);
    if (previous) keys.adopt(previous.keys);
    this.#keySets.push({ keys, fetcher, source });
    if (!keys.loaded) void keys.refresh();
    return keys;
  }

  async #closeKeySets(): Promise<void> {
    await Promise.all(
      this.#keySets.map(({ keys, fetcher }) => {
        keys.close();
        return fetcher.close();
      }),
    );
  }

  /** Drop every cached answer: how many there were here, and what became of it beyond this process. */
  async evictAll(announce = true): Promise<EvictionReport> {
    const { evicted, shared } = this.introspector.clear(announce);
    return { evicted, shared: await shared };
  }

  /** Each endpoint's circuit breaker state, by endpoint name. */
  circuitStates(): Array<[string, CircuitState]> {
    return this.#clients.map((client) => [client.name, client.circuitState]);
  }

  /** Close at once, cutting calls under way (shutdown, after the drain). */
  async close(): Promise<void> {
    await Promise.all([...this.#clients.map((client) => client.destroy()), this.#closeKeySets()]);
    if (!this.#handedOver) await this.shared?.close();
    if (!this.#senderHandedOver) await this.sender.replay.close();
  }

  /** Close once the calls under way have finished (a reload replaced this authorizer). */
  async retire(): Promise<void> {
    await Promise.all([...this.#clients.map((client) => client.close()), this.#closeKeySets()]);
    if (!this.#handedOver) await this.shared?.close();
    if (!this.#senderHandedOver) await this.sender.replay.close();
  }
}

/** Where Redis is and how its keys are named: the same for every user of it (shared tier, DPoP replay records). */
function redisTarget(redis: NonNullable<Config['redis']>) {
  return {
    url: redis.url,
    sentinel: redis.sentinel,
    cluster: redis.cluster,
    username: redis.username,
    password: redis.password?.reveal() ?? null,
    keySecret: redis.keySecret.reveal(),
    keyPrefix: redis.keyPrefix,
    timeout: redis.timeout,
  };
}

function senderContext(config: Config, clock: Clock, metrics: Metrics | undefined): SenderContext {
  const local = new MemoryReplayStore({
    maxEntries: config.dpop.replayEntries,
    clock,
    onOverflow: metrics ? () => metrics.dpopReplayOverflows.inc() : undefined,
  });
  const redis = config.redis;
  const replay = redis
    ? new RedisReplayStore({
        ...redisTarget(redis),
        local,
        clock,
        onError: metrics ? () => metrics.dpopReplayErrors.inc() : undefined,
      })
    : local;
  return {
    verifier: new DpopVerifier({ clock, keyCacheEntries: config.dpop.keyCacheEntries }),
    replay,
    maxProofLength: config.dpop.maxProofLength,
    nonces: new DpopNonces({
      // Shared by replicas of one deployment when they share a tier; else this process's own.
      secret: redis ? sharedKeys(redis.keySecret.reveal()).nonce : randomBytes(32),
      lifetimeSeconds: config.dpop.nonceLifetime,
      clock,
    }),
  };
}

/** What identifies a shared tier, secrets as fingerprints: a reload that changes any of it starts a new one. */
function redisSettings(config: Config): object | null {
  const redis = config.redis;
  if (redis === null) return null;
  const secrets = createHash('sha256')
    .update(redis.keySecret.reveal())
    .update('\0')
    .update(redis.password?.reveal() ?? '')
    .digest('hex');
  return {
    url: redis.url,
    sentinel: redis.sentinel,
    cluster: redis.cluster,
    username: redis.username,
    keyPrefix: redis.keyPrefix,
    timeout: redis.timeout,
    secrets,
  };
}

function sharedCache(
  redis: NonNullable<Config['redis']>,
  retention: number,
  clock: Clock,
  metrics: Metrics | undefined,
): RedisSharedCache {
  return new RedisSharedCache({
    retention,
    ...redisTarget(redis),
    clock,
    onLookup: metrics
      ? (result, seconds) => metrics.recordSharedLookup(result, seconds)
      : undefined,
    onError: metrics ? (operation) => metrics.sharedCacheErrors.inc({ operation }) : undefined,
  });
}

/**
 * Counts stale serves, and warns at most once per STALE_WARNING_MS and
 * endpoint: while an endpoint is down every Check would log otherwise.
 */
function staleReporter(clock: Clock, metrics: Metrics | undefined, logger: Pick<Logger, 'warn'> | undefined): (endpoint: string) => void {
  const warned = new Map<string, number>();
  return (endpoint) => {
    metrics?.staleAnswers.inc({ endpoint });
    const now = clock.now();
    const last = warned.get(endpoint);
    if (last !== undefined && now - last < STALE_WARNING_MS) return;
    warned.set(endpoint, now);
    logger?.warn({ endpoint }, 'the endpoint is failing: serving expired answers within staleIfError');
  };
}

/** The endpoint as the introspector sees it: with its stale window, and with metrics, its calls counted and timed. */
function endpointOf(client: EndpointClient, staleIfError: number, metrics: Metrics | undefined): Endpoint {
  if (!metrics) {
    return {
      name: client.name,
      cacheId: client.cacheId,
      clientIdHeader: client.clientIdHeader,
      issuer: client.issuer,
      keys: client.keys,
      staleIfError,
      introspect: (token, signal, clientId, trace) => client.introspect(token, signal, clientId, trace),
    };
  }
  const counts = metrics.endpoint(client.name);
  return {
    name: client.name,
    cacheId: client.cacheId,
    clientIdHeader: client.clientIdHeader,
    issuer: client.issuer,
    keys: client.keys,
    staleIfError,
    introspect(token: string, signal?: CallerSignal, clientId?: string | null, trace?: FlightTrace) {
      const started = performance.now();
      counts.started();
      // A reaction, not an async wrapper: one hop fewer on every cold Check.
      return client.introspect(token, signal, clientId, trace).then(
        (result) => {
          counts.ended();
          counts.finished(result.outcome, (performance.now() - started) / 1000, trace?.traceId);
          return result;
        },
        (error: unknown) => {
          counts.ended();
          throw error;
        },
      );
    },
  };
}

/**
 * The endpoint as one traced Check sees it: the call it may start is a child
 * of the Check's span (a Check that joins a call under way, or reads the
 * cache, starts none), and its shared cache lookups are too.
 */
function tracedEndpoint(endpoint: Endpoint, trace: RequestTrace): Endpoint {
  return {
    name: endpoint.name,
    cacheId: endpoint.cacheId,
    clientIdHeader: endpoint.clientIdHeader,
    issuer: endpoint.issuer,
    keys: endpoint.keys,
    staleIfError: endpoint.staleIfError,
    trace,
    async introspect(token, signal, clientId) {
      const flight = trace.introspection(endpoint.name);
      let result: IntrospectionResult | undefined;
      try {
        result = await endpoint.introspect(token, signal, clientId, flight);
        return result;
      } finally {
        flight.end(result);
      }
    },
  };
}
