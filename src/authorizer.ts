/**
 * Everything a configuration builds for request time: endpoint clients, the
 * cache, compiled policies. One instance per loaded configuration.
 */
import type { AuthRequest } from './auth-request.js';
import type { Config } from './config/load.js';
import { decide, type CompiledPolicy, type DecideContext, type DecisionNote } from './decide.js';
import type { Decision } from './decision.js';
import { IntrospectionCache } from './introspection/cache.js';
import { EndpointClient, type Clock } from './introspection/endpoint-client.js';
import { Introspector, type Answer, type Endpoint } from './introspection/introspector.js';
import type { Metrics } from './observability/metrics.js';

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
  readonly introspector: Introspector;
  readonly cache: IntrospectionCache;

  constructor(config: Config, options: AuthorizerOptions = {}) {
    const clock = options.clock ?? Date;
    const metrics = options.metrics;
    this.#clients = config.endpoints.map((endpoint) => new EndpointClient(endpoint, clock));
    const byName = new Map<string, Endpoint>(
      this.#clients.map((client) => [client.name, metrics ? instrumented(client, metrics) : client]),
    );

    this.#cacheSettings = JSON.stringify(config.cache);
    const previous = options.previous;
    if (previous && previous.#cacheSettings === this.#cacheSettings) {
      this.cache = previous.cache;
      this.introspector = previous.introspector;
      this.cache.retainEndpoints(new Set(this.#clients.map((client) => client.cacheId)));
    } else {
      this.cache = new IntrospectionCache({
        maxEntries: config.cache.maxCacheEntries,
        ttlSeconds: config.cache.validatedTokenTTL,
        clock,
        onEviction: metrics ? () => metrics.cacheEvictions.inc() : undefined,
      });
      this.introspector = new Introspector(this.cache);
    }

    const policies = new Map<string, CompiledPolicy>();
    for (const policy of config.policies) {
      policies.set(policy.name, {
        config: policy,
        endpoint: byName.get(policy.endpoint)!,
        ownHeaders: new Set([policy.identityHeader]),
      });
    }
    const introspector = this.introspector;
    this.#context = {
      policies,
      defaultPolicy: policies.get(config.defaultPolicy)!,
      policySelector: config.policySelector,
      maxTokenLength: config.server.maxTokenLength,
      introspect(endpoint: Endpoint, token: string, signal: AbortSignal): Promise<Answer> {
        return introspector.introspect(endpoint, token, signal);
      },
    };
  }

  check(request: AuthRequest, signal: AbortSignal, note?: DecisionNote): Promise<Decision> {
    return decide(request, this.#context, signal, note);
  }

  /** Close at once, cutting calls under way (shutdown, after the drain). */
  async close(): Promise<void> {
    await Promise.all(this.#clients.map((client) => client.destroy()));
  }

  /** Close once the calls under way have finished (a reload replaced this authorizer). */
  async retire(): Promise<void> {
    await Promise.all(this.#clients.map((client) => client.close()));
  }
}

/** An endpoint whose calls are counted and timed. */
function instrumented(client: EndpointClient, metrics: Metrics): Endpoint {
  const labels = { endpoint: client.name };
  return {
    name: client.name,
    cacheId: client.cacheId,
    async introspect(token: string, signal?: AbortSignal) {
      const started = performance.now();
      metrics.introspectionsInFlight.inc(labels);
      try {
        const result = await client.introspect(token, signal);
        metrics.recordIntrospection(client.name, result.outcome, (performance.now() - started) / 1000);
        return result;
      } finally {
        metrics.introspectionsInFlight.dec(labels);
      }
    },
  };
}
