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
import { EndpointClient, type Clock } from './introspection/endpoint-client.js';
import { Introspector, type Answer, type CallerSignal, type Endpoint } from './introspection/introspector.js';
import type { Metrics } from './observability/metrics.js';
import { RedisSharedCache } from './introspection/redis-cache.js';
import { sharedKeys } from './introspection/sealed-entry.js';
import { createHash } from 'node:crypto';
import { compilePolicies, routeTable } from './policy/compile.js';
import { DpopVerifier } from './credentials/dpop.js';
import { DpopNonces } from './credentials/dpop-nonce.js';
import { randomBytes } from 'node:crypto';
import { MemoryReplayStore, RedisReplayStore } from './credentials/replay-store.js';
import type { SenderContext } from './decide.js';

export interface AuthorizerOptions {
  clock?: Clock;
  metrics?: Metrics;
  /**
   * The authorizer this one replaces on a reload: its cache and in-flight calls
   * are kept when the cache settings did not change, less the answers of
   * endpoints whose settings did.
   */
  previous?: Authorizer;
}

export class Authorizer {
  readonly #clients: EndpointClient[];
  readonly #context: DecideContext;
  readonly #cacheSettings: string;
  /** Some endpoint takes its client id from a request header: introspection then needs the request's headers. */
  readonly #needsHeaders: boolean;
  readonly introspector: Introspector;
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
    this.#clients = config.endpoints.map(
      (endpoint) =>
        new EndpointClient(endpoint, {
          clock,
          fingerprintKey,
          onRetry: metrics ? () => metrics.introspectionRetries.inc({ endpoint: endpoint.name }) : undefined,
        }),
    );
    this.#needsHeaders = this.#clients.some((client) => client.clientIdHeader !== null);
    const byName = new Map<string, Endpoint>(
      this.#clients.map((client) => [client.name, metrics ? instrumented(client, metrics) : client]),
    );

    this.#cacheSettings = JSON.stringify({ cache: config.cache, redis: redisSettings(config) });
    const previous = options.previous;
    if (previous && previous.#cacheSettings === this.#cacheSettings) {
      this.cache = previous.cache;
      this.introspector = previous.introspector;
      this.shared = previous.shared;
      previous.#handedOver = true;
      this.cache.retainEndpoints(new Set(this.#clients.map((client) => client.cacheId)));
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
      this.introspector = new Introspector(this.cache, { shared: this.shared ?? undefined, clock });
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

  check(request: AuthRequest, signal: CallerSignal, note?: DecisionNote): Promise<Decision> {
    if (!this.#needsHeaders) return decide(request, this.#context, signal, note);
    const introspector = this.introspector;
    const context: DecideContext = {
      ...this.#context,
      introspect: (endpoint, token, callSignal) => introspector.introspect(endpoint, token, callSignal, request.headers),
    };
    return decide(request, context, signal, note);
  }

  /** Drop a token's cached answers (active and inactive) at every endpoint; how many endpoints held one. */
  evictToken(token: string): number {
    return this.introspector.evict(
      this.#clients.map((client) => client.cacheId),
      token,
    );
  }

  /** Drop every cached answer; how many there were. */
  evictAll(): number {
    return this.introspector.clear();
  }

  /** Each endpoint's circuit breaker state, by endpoint name. */
  circuitStates(): Array<[string, CircuitState]> {
    return this.#clients.map((client) => [client.name, client.circuitState]);
  }

  /** Close at once, cutting calls under way (shutdown, after the drain). */
  async close(): Promise<void> {
    await Promise.all(this.#clients.map((client) => client.destroy()));
    if (!this.#handedOver) await this.shared?.close();
    if (!this.#senderHandedOver) await this.sender.replay.close();
  }

  /** Close once the calls under way have finished (a reload replaced this authorizer). */
  async retire(): Promise<void> {
    await Promise.all(this.#clients.map((client) => client.close()));
    if (!this.#handedOver) await this.shared?.close();
    if (!this.#senderHandedOver) await this.sender.replay.close();
  }
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
        url: redis.url,
        username: redis.username,
        password: redis.password?.reveal() ?? null,
        keySecret: redis.keySecret.reveal(),
        keyPrefix: redis.keyPrefix,
        timeout: redis.timeout,
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
  return { url: redis.url, username: redis.username, keyPrefix: redis.keyPrefix, timeout: redis.timeout, secrets };
}

function sharedCache(
  redis: NonNullable<Config['redis']>,
  retention: number,
  clock: Clock,
  metrics: Metrics | undefined,
): RedisSharedCache {
  return new RedisSharedCache({
    retention,
    url: redis.url,
    username: redis.username,
    password: redis.password?.reveal() ?? null,
    keySecret: redis.keySecret.reveal(),
    keyPrefix: redis.keyPrefix,
    timeout: redis.timeout,
    clock,
    onLookup: metrics
      ? (result, seconds) => {
          metrics.sharedCacheLookups.inc({ result });
          if (result !== 'skipped') metrics.sharedCacheDuration.observe(seconds);
        }
      : undefined,
    onError: metrics ? (operation) => metrics.sharedCacheErrors.inc({ operation }) : undefined,
  });
}

/** An endpoint whose calls are counted and timed. */
function instrumented(client: EndpointClient, metrics: Metrics): Endpoint {
  const labels = { endpoint: client.name };
  return {
    name: client.name,
    cacheId: client.cacheId,
    clientIdHeader: client.clientIdHeader,
    async introspect(token: string, signal?: AbortSignal, clientId?: string | null) {
      const started = performance.now();
      metrics.introspectionsInFlight.inc(labels);
      try {
        const result = await client.introspect(token, signal, clientId);
        metrics.recordIntrospection(client.name, result.outcome, (performance.now() - started) / 1000);
        return result;
      } finally {
        metrics.introspectionsInFlight.dec(labels);
      }
    },
  };
}
